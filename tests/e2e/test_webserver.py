"""End to end through the real webserver: `dagster dev` on workspace.yaml, a live apply over GraphQL.

A sandbox with the example estate runs in this process; `dagster dev` (webserver + daemon + code
server) runs as a subprocess in its own process group with a throw-away DAGSTER_HOME holding a copy
of the project's dagster.yaml, so the run takes the real path: queued, dequeued by the daemon under
the `halo_sync/apply` tag concurrency limit, launched in a run worker. Then the test checks the run's
status, its asset check evaluations (every blocking check of the job ran and passed) and the
sandbox's Halo state against what the run says it applied.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx
import pandas as pd
import pytest

from halo_sync_pipeline.sandbox import EXAMPLE_ESTATE

from .helpers import (
    LIVE_RUN_CONFIG,
    checks_of_job,
    dagster_dev,
    redact,
    run_events,
    wait_for_run,
)

pytestmark = pytest.mark.timeout(600)

APPLY_JOB = "halo_sync_apply"

RUN_QUERY = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId jobName status tags { key value } }
    ... on PythonError { message }
  }
}
"""


TENANT_REVIEW_QUERY = """
{
  assetOrError(assetKey: {path: ["tenant_review"]}) {
    __typename
    ... on Asset {
      assetMaterializations(limit: 1) {
        metadataEntries {
          label
          __typename
          ... on TableMetadataEntry { table { records schema { columns { name } } } }
        }
      }
    }
  }
}
"""


def _assert_tenant_review_tells_the_unmatched_story(dev) -> None:
    """What a person sees on the tenant_review page: every tenant, by name, with the full evidence."""
    asset = dev.graphql(TENANT_REVIEW_QUERY)["assetOrError"]
    assert asset["__typename"] == "Asset", asset
    entries = {e["label"]: e for e in asset["assetMaterializations"][0]["metadataEntries"]}
    assert entries["tenants"]["__typename"] == "TableMetadataEntry"
    rows = [json.loads(record) for record in entries["tenants"]["table"]["records"]]
    estate = json.loads(EXAMPLE_ESTATE.read_text())
    assert len(rows) == len(estate["m365"]["tenants"])
    unmatched = [r for r in rows if r["method"] == "unmatched"]
    assert unmatched and all(r["tenant_name"] and r["needs_review"] for r in unmatched)
    names = {t["customerId"].lower(): t["displayName"] for t in estate["m365"]["tenants"]}
    for row in unmatched:
        assert row["tenant_name"] == names[row["tenant_id"]]
        assert len(row["evidence"]) > 80, row  # the whole evidence, never cut at 80 characters


def _sandbox_estate(sandbox) -> dict[str, Any]:
    response = httpx.get(f"{sandbox.halo_url}/_sandbox/estate", verify=str(sandbox.ca_bundle), timeout=30)
    response.raise_for_status()
    return response.json()


def _users_by_id(estate: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {int(u["id"]): u for u in estate["halo"]["users"]}


def _client_of_site(estate: dict[str, Any]) -> dict[int, int]:
    return {int(s["id"]): int(s["client_id"]) for s in estate["halo"]["sites"]}


def _email(user: dict[str, Any]) -> str:
    return (user.get("emailaddress") or "").strip().lower()


def _active_email_duplicates(estate: dict[str, Any]) -> set[tuple[int, str]]:
    """(company id, email) pairs held by more than one active contact."""
    site_client = _client_of_site(estate)
    counts = Counter(
        (site_client[int(u["site_id"])], _email(u))
        for u in estate["halo"]["users"]
        if not u.get("inactive") and _email(u) and u.get("site_id") is not None
    )
    return {key for key, n in counts.items() if n > 1}


def _tenant_ids(client: dict[str, Any]) -> set[str]:
    return {t["azure_tenant_id"].lower() for t in client.get("azure_tenants") or []}


def _applied(frame: pd.DataFrame, action: str) -> pd.DataFrame:
    return frame[(frame["action"] == action) & (frame["outcome"] == "applied")]


def test_live_apply_through_the_webserver(sandbox_factory, tmp_path):
    sandbox = sandbox_factory(json.loads(EXAMPLE_ESTATE.read_text()), reset=True)
    before = _sandbox_estate(sandbox)

    # The daemon runs the schedules: keep the daily plan (on by default) from firing into this test's
    # apply run (it would materialise the plan in another run, and the apply would then refuse it).
    quiet_schedules = {"HALO_SYNC_PLAN_CRON": "0 0 29 2 *"}
    with dagster_dev(sandbox.env | quiet_schedules, workdir=tmp_path / "dagster") as dev:
        client = dev.client()
        run_id = client.submit_job_execution(APPLY_JOB, run_config=LIVE_RUN_CONFIG)
        status = wait_for_run(dev, run_id, timeout=360)
        events = run_events(dev, run_id)
        step_failures = [
            redact((e.get("error") or {}).get("message", "")[:800], dev.secrets)
            for e in events
            if e["__typename"] == "ExecutionStepFailureEvent"
        ]
        assert status == "SUCCESS", f"run {run_id} ended {status}; step failures: {step_failures}\n{dev.log_tail()}"

        run = dev.graphql(RUN_QUERY, {"runId": run_id})["runOrError"]
        assert run["__typename"] == "Run" and run["jobName"] == APPLY_JOB
        assert {"key": "halo_sync/apply", "value": "halo"} in run["tags"], run["tags"]
        # It went through the queued run coordinator (the tag concurrency path), not straight to a launch.
        typenames = [e["__typename"] for e in events]
        assert "RunEnqueuedEvent" in typenames and "RunStartingEvent" in typenames, sorted(set(typenames))
        assert typenames.index("RunEnqueuedEvent") < typenames.index("RunStartingEvent")

        # --- asset checks: every blocking check of the job was evaluated in this run; none failed with an error
        # (a blocking check may warn: m365_tenants_loaded lists the example estate's tenants that fail to load)
        job_checks = checks_of_job(dev, APPLY_JOB)
        blocking = {(tuple(c["assetKey"]["path"]), c["name"]) for c in job_checks if c["blocking"]}
        assert len(blocking) >= 11, f"expected a blocking schema check per asset at least, got {sorted(blocking)}"
        evaluations: dict[tuple[tuple[str, ...], str], tuple[bool, str]] = {}
        for event in events:
            if event["__typename"] == "AssetCheckEvaluationEvent":
                evaluation = event["evaluation"]
                key = (tuple(evaluation["assetKey"]["path"]), evaluation["checkName"])
                evaluations[key] = (evaluation["success"], evaluation["severity"])
        missing = blocking - evaluations.keys()
        assert not missing, f"blocking checks not evaluated in run {run_id}: {sorted(missing)}"
        failed = sorted(key for key in blocking if evaluations[key] == (False, "ERROR"))
        assert not failed, f"blocking checks failed in run {run_id}: {failed}"
        assert evaluations[(("m365_tenants",), "m365_tenants_loaded")] == (False, "WARN")

        materialised = {tuple(e["assetKey"]["path"]) for e in events if e["__typename"] == "MaterializationEvent"}
        assert ("applied_changes",) in materialised, sorted(materialised)

        assert {"key": "halo_sync/mode", "value": "live"} in dev.graphql(RUN_QUERY, {"runId": run_id})["runOrError"][
            "tags"
        ]
        _assert_tenant_review_tells_the_unmatched_story(dev)

        # The value the run's applied_changes step stored (default IO manager, under HALO_SYNC_STORAGE_DIR).
        applied_path = dev.storage_dir / "storage" / "applied_changes"
        assert applied_path.is_file(), f"no stored applied_changes under {dev.storage_dir}"
        applied: pd.DataFrame = pd.read_pickle(applied_path)

    after = _sandbox_estate(sandbox)

    # --- the run really wrote, and nothing failed
    assert (applied["outcome"] == "failed").sum() == 0, applied[applied["outcome"] == "failed"].to_string()
    assert not (applied["outcome"] == "dry_run").any(), "a live run must not record dry_run outcomes"
    creates, deactivations = _applied(applied, "create"), _applied(applied, "deactivate")
    assert len(creates) > 0 and len(deactivations) > 0, applied.groupby(["action", "outcome"]).size().to_string()

    users_before, users_after = _users_by_id(before), _users_by_id(after)
    site_client = _client_of_site(after)

    # --- contacts created == the applied creates, each in its company with the planned email
    new_ids = set(users_after) - set(users_before)
    assert new_ids == {int(x) for x in creates["halo_id"]}, (sorted(new_ids), creates[["email", "halo_id"]].to_string())
    for row in creates.itertuples():
        user = users_after[int(row.halo_id)]
        assert site_client[int(user["site_id"])] == int(row.company_id), (row, user)
        assert _email(user) == str(row.email).strip().lower(), (row, user)
        assert (user.get("azureoid") or "").lower() == str(row.user_id).lower()
        assert not user.get("inactive")

    # --- contacts deactivated == the applied deactivations (and were active before)
    deactivated = {i for i, u in users_before.items() if not u.get("inactive") and users_after[i].get("inactive")}
    assert deactivated == {int(x) for x in deactivations["contact_id"]}

    # --- reactivations and pairings landed
    reactivated = {i for i, u in users_before.items() if u.get("inactive") and not users_after[i].get("inactive")}
    reactivations, pairs = _applied(applied, "reactivate"), _applied(applied, "pair")
    assert {int(x) for x in reactivations["contact_id"]} <= reactivated
    assert reactivated <= {int(x) for x in pd.concat([reactivations["contact_id"], pairs["contact_id"]])}
    for row in pairs.itertuples():
        assert (users_after[int(row.contact_id)].get("azureoid") or "").lower() == str(row.user_id).lower(), row

    # --- contacts no applied action touched are exactly as before
    touched = {int(x) for x in applied.loc[applied["outcome"] == "applied", "contact_id"].dropna()}
    for contact_id, user in users_before.items():
        if contact_id not in touched:
            assert users_after[contact_id] == user, f"contact {contact_id} changed without an applied action"

    # --- company tenant ids: added (never replaced) exactly where the run says
    clients_before = {int(c["id"]): c for c in before["halo"]["clients"]}
    clients_after = {int(c["id"]): c for c in after["halo"]["clients"]}
    set_ids = _applied(applied, "set_tenant_id")
    for company_id, client_after in clients_after.items():
        added = _tenant_ids(client_after) - _tenant_ids(clients_before[company_id])
        expected = {str(t).lower() for t in set_ids.loc[set_ids["company_id"] == company_id, "tenant_id"]}
        assert added == expected, (company_id, added, expected)
        assert _tenant_ids(clients_before[company_id]) <= _tenant_ids(client_after), "a tenant id was removed"

    # --- no new duplicate contact email within a company
    assert _active_email_duplicates(after) <= _active_email_duplicates(before)

    # --- the writes were batched array POSTs using only field names Halo knows (real Halo drops the others)
    stats = httpx.get(f"{sandbox.halo_url}/_sandbox/stats", verify=str(sandbox.ca_bundle), timeout=30).json()
    user_posts = sum(
        r["count"] for r in stats["requests"] if r["method"] == "POST" and r["path"].lower() == "/api/users"
    )
    assert 0 < user_posts < len(creates) + len(deactivations), stats["requests"]
    assert stats["unknown_fields"] == [], stats["unknown_fields"]
