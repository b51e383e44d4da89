"""`make demo`: start the sandbox with the example estate, run a live `halo_sync_apply` on it, summarise, stop.

Runs in the Dagster instance of DAGSTER_HOME (the project's dagster.yaml), so the run is also
visible afterwards in `make dev`'s UI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import dagster as dg
import pandas as pd

from halo_sync_pipeline.rules.quarantine import quarantined_records
from halo_sync_pipeline.sandbox import EXAMPLE_ESTATE
from halo_sync_pipeline.sandbox.server import start_sandbox

LIVE_RUN_CONFIG = {
    "ops": {"applied_changes": {"config": {"dry_run": False}}},
    # Step-by-step DEBUG events stay in the run's event log (the UI); the terminal gets the summary.
    "loggers": {"console": {"config": {"log_level": "WARNING"}}},
}


def run_live_apply(env: dict[str, str], instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """Point the pipeline at `env` (a sandbox's or a real deployment's variables) and run a live apply."""
    os.environ.update(env)
    from halo_sync_pipeline.definitions import build_definitions  # reads the environment it was just given

    job = build_definitions().resolve_job_def("halo_sync_apply")
    return job.execute_in_process(run_config=LIVE_RUN_CONFIG, instance=instance, raise_on_error=False)


def summary(result: dg.ExecuteInProcessResult) -> str:
    if not result.success:
        failures = [e.message for e in result.all_events if e.is_failure and e.message]
        return f"run {result.run_id}: FAILED\n" + "\n".join(f"  {m.splitlines()[0]}" for m in failures)
    mappings: pd.DataFrame = result.output_for_node("company_mappings")
    applied: pd.DataFrame = result.output_for_node("applied_changes")
    report_path = next(
        (
            event.materialization.metadata["report_path"].value
            for event in result.get_asset_materialization_events()
            if event.asset_key == dg.AssetKey("inactive_report")
        ),
        "(not written)",
    )
    quarantined = quarantined_records(
        *(
            result.output_for_node(name)
            for name in ("halo_companies", "halo_contacts", "halo_sites", "halo_tenant_mappings")
        )
    )
    lines = [f"run {result.run_id}: succeeded", "", "tenants by match method:"]
    lines += [f"  {method:<26} {n}" for method, n in mappings["method"].value_counts().items()]
    conflicts = mappings[mappings["method"] == "conflict"]
    lines.append(
        f"  (conflicts: {len(conflicts)}{': ' + ', '.join(conflicts['tenant_name'].fillna('?')) if len(conflicts) else ''})"
    )
    failed = mappings[mappings["users_status"] == "failed"]
    lines.append(
        f"  (users failed to load: {len(failed)}{': ' + ', '.join(failed['tenant_name']) if len(failed) else ''})"
    )
    lines += ["", f"quarantined Halo records: {len(quarantined)}"]
    lines += [f"  {kind:<15} {n}" for kind, n in quarantined["kind"].value_counts().sort_index().items()]
    lines += ["", "actions (action / outcome):"]
    outcomes = applied.groupby(["action", "outcome"]).size()
    lines += [f"  {action:<14} {outcome:<8} {n}" for (action, outcome), n in outcomes.items()]
    lines += ["", f"inactive report: {report_path}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True, help="sandbox state folder (reset on every demo)")
    parser.add_argument("--estate", type=Path, default=EXAMPLE_ESTATE)
    args = parser.parse_args(argv)
    estate = json.loads(args.estate.read_text())
    with start_sandbox(args.state_dir, estate, reset=True) as sandbox:
        print(f"sandbox: Halo {sandbox.halo_url}, Microsoft {sandbox.ms_url}")
        with dg.DagsterInstance.get() as instance:
            result = run_live_apply(sandbox.env, instance)
            print(summary(result))
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
