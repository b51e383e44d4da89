"""The Dagster code location: `dagster dev -w workspace.yaml` or `-m halo_sync_pipeline.definitions`."""

from __future__ import annotations

import dagster as dg

from halo_sync_pipeline.defs.alerts import halo_sync_failure_alert, halo_sync_review_alert
from halo_sync_pipeline.defs.halo.assets import halo_assets
from halo_sync_pipeline.defs.jobs import (
    daily_plan_schedule,
    halo_sync_apply,
    halo_sync_plan,
    nightly_apply_schedule,
)
from halo_sync_pipeline.defs.m365.assets import m365_assets
from halo_sync_pipeline.defs.resources import production_resources
from halo_sync_pipeline.defs.storage import AssetValueStore
from halo_sync_pipeline.defs.sync.apply import applied_changes
from halo_sync_pipeline.defs.sync.assets import company_mappings, contact_changes, inactive_report, tenant_review


def build_definitions(resources: dict | None = None) -> dg.Definitions:
    return dg.Definitions(
        assets=[
            *halo_assets,
            *m365_assets,
            company_mappings,
            contact_changes,
            tenant_review,
            inactive_report,
            applied_changes,
        ],
        # Every check is declared on its asset (check_specs) and runs in the asset's own step.
        jobs=[halo_sync_plan, halo_sync_apply],
        schedules=[daily_plan_schedule, nightly_apply_schedule],
        sensors=[halo_sync_failure_alert, halo_sync_review_alert],
        resources={"io_manager": AssetValueStore(), **(resources if resources is not None else production_resources())},
        # One process, steps in order: the multiprocess executor costs seconds per step on small machines.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
