"""The final apply step: writes the plan to Halo and records the outcome of every action."""

import fcntl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from halo_sync_pipeline.defs.checks import schema_result, schema_spec
from halo_sync_pipeline.defs.heap import inherited_objects_frozen
from halo_sync_pipeline.defs.metadata import OWNER, counts_markdown, frame_metadata, markdown_table, request_metadata
from halo_sync_pipeline.defs.resources import HaloResource
from halo_sync_pipeline.schemas import plan
from halo_sync_pipeline.schemas.plan import Outcome
from halo_sync_pipeline.write_engine import (
    ApplyToggles,
    PrepareWriteBack,
    apply_writes,
    merge_tenant_entries,
    partner_connection_id,
    planned_writes,
)

APPLY_JOB_NAME = "halo_sync_apply"
APPLY_TAG = "halo_sync/apply"  # dagster.yaml limits runs with this tag to one at a time
MODE_TAG = "halo_sync/mode"  # "live" or "dry_run", set on every apply run (visible in the run list)
LIVE, DRY_RUN = "live", "dry_run"
# Everything the plan is computed from: all of it must come from this very run.
PLAN_INPUTS = (
    "halo_companies", "halo_contacts", "halo_sites", "halo_tenant_mappings",
    "m365_tenants", "m365_domains", "m365_users", "company_mappings", "contact_changes",
)  # fmt: skip


class ApplyConfig(dg.Config, ApplyToggles):
    """Run config of the apply (`ops.applied_changes.config`): the `allow_*` toggles (`ApplyToggles`, one
    definition), plus the mode and the plan's age limit. Live writes need an explicit `dry_run: false`."""

    dry_run: bool = Field(
        default=True,
        description="true (default): write nothing, list what would be written. false: write to Halo (LIVE). "
        "The run is tagged halo_sync/mode = dry_run or live.",
    )
    max_plan_age_minutes: float = Field(
        default=15.0,
        description="A live apply refuses a plan not computed in this same run, or older than this: a re-run "
        "always re-reads Halo first, which is what makes a re-run after a crash create no duplicates.",
    )

    def toggles(self) -> ApplyToggles:
        return ApplyToggles(**{name: getattr(self, name) for name in ApplyToggles.model_fields})


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


def _company_write_backs(client) -> PrepareWriteBack:
    """Read-modify-write of a company's tenant list: Halo's current entries, as returned, plus the new one."""
    connection: list[int] = []
    connection_lock = threading.Lock()  # write-backs are prepared in several threads; ask Halo once

    def prepare(body: dict[str, Any]) -> dict[str, Any] | None:
        with connection_lock:
            if not connection:
                connection.append(partner_connection_id(client.azure_connections(2)))
        return merge_tenant_entries(client.company_details(body["id"]), body, connection[0])

    return prepare


def _no_writes(endpoint: str, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    raise AssertionError("a dry run never writes")


def _mark_mode(context: dg.AssetExecutionContext, dry_run: bool) -> None:
    """Tag the run live or dry_run, and refuse a launch whose declared mode or path does not match.

    A live apply must come from the `halo_sync_apply` job (its tag queues applies one at a time and its
    checks gate the write); from an asset page (`__ASSET_JOB`) only a dry run goes ahead. A run launched
    with a `halo_sync/mode` tag (the nightly schedule, or `--tags`) must have the matching config."""
    mode = DRY_RUN if dry_run else LIVE
    declared = context.run.tags.get(MODE_TAG)
    if declared and declared != mode:
        raise dg.Failure(
            f"refusing to apply: the run is tagged {MODE_TAG}={declared} but its config says dry_run: {str(dry_run).lower()}"
        )
    if not dry_run and context.run.job_name != APPLY_JOB_NAME:
        raise dg.Failure(
            f"refusing a live apply launched from {context.run.job_name} (an asset page): launch the "
            f"{APPLY_JOB_NAME} job, which reads afresh, checks and queues applies one at a time"
        )
    context.instance.add_run_tags(context.run_id, {MODE_TAG: mode})


def apply_summary(applied: pd.DataFrame, dry_run: bool) -> str:
    """The one line that says what this apply did: LIVE or DRY RUN first."""
    outcome = applied["outcome"].value_counts()
    if dry_run:
        would, held = int(outcome.get(Outcome.DRY_RUN, 0)), int(outcome.get(Outcome.HELD, 0))
        return f"DRY RUN: nothing written; {would} writes would be applied, {held} held"
    return (
        f"LIVE: {int(outcome.get(Outcome.APPLIED, 0))} writes applied, {int(outcome.get(Outcome.HELD, 0))} held, "
        f"{int(outcome.get(Outcome.FAILED, 0))} failed"
    )


@dg.asset(
    group_name="sync",
    kinds={"halo", "pandas"},
    owners=[OWNER],
    check_specs=[schema_spec("applied_changes", plan.AppliedChangesSchema)],
)
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
    run fails after every other action is done if any action failed. Dry run unless `dry_run: false`;
    the run is tagged `halo_sync/mode` = `live` or `dry_run`, and the first metadata entry says which.
    A live apply runs only from the halo_sync_apply job (from an asset page it is refused).
    """
    _mark_mode(context, config.dry_run)
    writes = planned_writes(company_mappings, contact_changes)
    if config.dry_run:
        applied = apply_writes(writes, _no_writes, toggles=config.toggles(), dry_run=True)
        counts: dict[str, int] = {}
    else:
        _refuse_stale_plan(context, config.max_plan_age_minutes)
        with _exclusive_apply(context), halo.client() as client, inherited_objects_frozen():
            applied = apply_writes(
                writes,
                client.upsert,
                toggles=config.toggles(),
                dry_run=False,
                batch_size=halo.write_batch_size,
                prepare_write_back=_company_write_backs(client),
                connections=halo.max_connections,
            )
            counts = client.request_counts.snapshot()
    failed = applied[applied["outcome"] == Outcome.FAILED]
    summary = apply_summary(applied, config.dry_run)
    context.log.info(summary)
    details = {
        "dry_run": config.dry_run,
        "outcomes": counts_markdown(applied["action"] + ": " + applied["outcome"], "action: outcome"),
        "failed": dg.MetadataValue.md(markdown_table(failed[["tenant_name", "action", "contact_id", "error"]], 50)),
        **request_metadata(counts),
    }
    # The summary first: the UI lists metadata in order, and LIVE or DRY RUN is what matters most.
    yield dg.Output(applied, metadata={"summary": dg.MetadataValue.text(summary), **frame_metadata(applied, details)})
    yield schema_result("applied_changes", plan.AppliedChangesSchema, applied)
    if len(failed):
        raise dg.Failure(f"{len(failed)} of {len(applied)} actions failed; see applied_changes' failed table")
