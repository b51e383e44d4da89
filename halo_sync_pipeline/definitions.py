"""The Dagster code location: `dagster dev -w workspace.yaml` or `-m halo_sync_pipeline.definitions`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg

from halo_sync_pipeline.defs.alerts import halo_sync_failure_alert, halo_sync_review_alert
from halo_sync_pipeline.defs.halo.assets import halo_assets
from halo_sync_pipeline.defs.jobs import halo_sync_apply, halo_sync_plan, schedules
from halo_sync_pipeline.defs.m365.assets import m365_assets
from halo_sync_pipeline.defs.resources import production_resources
from halo_sync_pipeline.defs.storage import AssetValueStore
from halo_sync_pipeline.defs.sync.apply import applied_changes
from halo_sync_pipeline.defs.sync.assets import company_mappings, contact_changes, inactive_report, tenant_review


def build_definitions(resources: dict[str, Any] | None = None, env: Mapping[str, str] | None = None) -> dg.Definitions:
    """The code location, configured from `env` (default: this process's environment), read once here."""
    env = os.environ if env is None else env
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
        schedules=schedules(env),
        sensors=[halo_sync_failure_alert, halo_sync_review_alert],
        resources={
            "io_manager": AssetValueStore(),
            **(resources if resources is not None else production_resources(env)),
        },
        # One process, steps in order: the multiprocess executor costs seconds per step on small machines.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
