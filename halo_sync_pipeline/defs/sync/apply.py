"""The final apply step: writes the plan to Halo and records the outcome of every action."""

import dataclasses
import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pandas as pd

from halo_sync_pipeline.apply import (
    ApplyToggles,
    PrepareBody,
    apply_writes,
    merge_tenant_entries,
    partner_connection_id,
    planned_writes,
)
from halo_sync_pipeline.defs.checks import schema_check
from halo_sync_pipeline.defs.metadata import OWNER, counts_markdown, frame_metadata, markdown_table, request_metadata
from halo_sync_pipeline.defs.resources import HaloResource
from halo_sync_pipeline.schemas import plan

APPLY_JOB_NAME = "halo_sync_apply"
# Everything the plan is computed from: all of it must come from this very run.
PLAN_INPUTS = (
    "halo_companies", "halo_contacts", "halo_sites", "halo_tenant_mappings",
    "m365_tenants", "m365_domains", "m365_users", "company_mappings", "contact_changes",
)  # fmt: skip


class ApplyConfig(dg.Config):
    """Run config of the apply. Live writes need an explicit `dry_run: false`."""

    dry_run: bool = True
    create_contacts: bool = True
    pair_contacts: bool = True
    reactivate_contacts: bool = True
    update_contacts: bool = True
    deactivate_contacts: bool = True
    set_halo_tenant_ids: bool = True
    check_matches_only: bool = False
    max_plan_age_minutes: float = 15.0

    def toggles(self) -> ApplyToggles:
        return ApplyToggles(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ApplyToggles)})


def _refuse_stale_plan(context: dg.AssetExecutionContext, max_age_minutes: float) -> None:
    """A live apply only writes a plan computed, from both sources read afresh, in this very run.

    That is what makes a re-run after a crash safe: it re-reads Halo, so work already done is
    seen (created contacts are then linked) and never repeated. Re-running only the plan assets
    on stored source data (e.g. "re-execute from failure") is refused for the same reason. This
    run's own events are read, not the assets' latest materialisations, which a scheduled plan run
    going on at the same time may have written.
    """
    materialised_at = {
        event.dagster_event.asset_key.to_user_string(): event.timestamp
        for event in context.instance.all_logs(context.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    }
    for name in PLAN_INPUTS:
        if name not in materialised_at:
            raise dg.Failure(
                f"refusing to apply: {name} was not materialised in this run ({context.run_id}); "
                f"run the whole {APPLY_JOB_NAME} job so the plan is computed from a fresh read of Halo"
            )
        age_minutes = (time.time() - materialised_at[name]) / 60
        if age_minutes > max_age_minutes:
            raise dg.Failure(
                f"refusing to apply: {name} is {age_minutes:.1f} minutes old (max_plan_age_minutes={max_age_minutes})"
            )


@contextmanager
def _exclusive_apply(context: dg.AssetExecutionContext) -> Iterator[None]:
    """Two live applies never overlap.

    dagster.yaml's tag concurrency limit queues overlapping runs launched from the UI or a schedule;
    runs started from the CLI bypass the queue, so the apply also takes an OS file lock in the
    instance's storage folder. The OS drops the lock when the process dies, so a killed run never
    blocks the next one (a "still STARTED" run record would).
    """
    lock_path = Path(context.instance.storage_directory()) / "halo_sync_apply.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a+") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise dg.Failure(f"refusing to apply: another {APPLY_JOB_NAME} run holds {lock_path}") from None
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _company_write_backs(client) -> PrepareBody:
    """Read-modify-write of a company's tenant list: Halo's current entries, as returned, plus the new one."""
    connection: list[int] = []

    def prepare(action: str, body: dict) -> dict | None:
        if action != "set_tenant_id":
            return body
        if not connection:
            connection.append(partner_connection_id(client.azure_connections(2)))
        return merge_tenant_entries(client.company_details(body["id"]), body, connection[0])

    return prepare


def _no_writes(endpoint: str, bodies: list[dict]) -> list[dict]:
    raise AssertionError("a dry run never writes")


@dg.asset(group_name="sync", kinds={"halo", "pandas"}, owners=[OWNER])
def applied_changes(
    context: dg.AssetExecutionContext,
    config: ApplyConfig,
    company_mappings: pd.DataFrame,
    contact_changes: pd.DataFrame,
    halo: HaloResource,
):
    """The apply op: writes the plan to Halo in batched array POSTs and records every action's outcome.

    Outcomes: `applied` (with the Halo id), `dry_run`, `held`, `skipped` (toggled off) or `failed` (with
    the error). A failing batch is retried by the client, then split so a bad record fails alone; the
    run fails after every other action is done if any action failed. Dry run unless `dry_run: false`.
    """
    writes = planned_writes(company_mappings, contact_changes)
    if config.dry_run:
        applied = apply_writes(writes, _no_writes, toggles=config.toggles(), dry_run=True)
        counts: dict[str, int] = {}
    else:
        _refuse_stale_plan(context, config.max_plan_age_minutes)
        with _exclusive_apply(context), halo.client() as client:
            applied = apply_writes(
                writes, client.upsert, toggles=config.toggles(), dry_run=False, batch_size=halo.write_batch_size,
                prepare=_company_write_backs(client),
            )
            counts = client.request_counts.snapshot()
    failed = applied[applied["outcome"] == "failed"]
    yield dg.Output(
        applied,
        metadata=frame_metadata(
            applied,
            {
                "dry_run": config.dry_run,
                "outcomes": counts_markdown(applied["action"] + ": " + applied["outcome"], "action: outcome"),
                "failed": dg.MetadataValue.md(markdown_table(failed[["tenant_name", "action", "contact_id", "error"]], 50)),
                **request_metadata(counts),
            },
        ),
    )
    if len(failed):
        raise dg.Failure(f"{len(failed)} of {len(applied)} actions failed; see applied_changes' failed table")


apply_checks = [schema_check(applied_changes, plan.AppliedChangesSchema)]
