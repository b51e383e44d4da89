"""Jobs and schedules (the run alert sensors are in `alerts.py`)."""

from collections.abc import Mapping
from functools import partial

import dagster as dg

from halo_sync_pipeline import environment
from halo_sync_pipeline.defs.sync.apply import APPLY_JOB_NAME, APPLY_TAG, LIVE, MODE_TAG

halo_sync_plan = dg.define_asset_job(
    "halo_sync_plan",
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets("applied_changes"),
    description="Read Halo and Microsoft 365, compute and check the plan. Writes nothing to Halo.",
)

halo_sync_apply = dg.define_asset_job(
    APPLY_JOB_NAME,
    selection=dg.AssetSelection.all(),
    description="Read, plan, check, then apply the plan to Halo (dry run unless `dry_run: false`). "
    "Blocking checks stop the apply in the same run. The run is tagged halo_sync/mode = live or dry_run.",
    tags={APPLY_TAG: "halo"},
)

DEFAULT_PLAN_CRON, DEFAULT_APPLY_CRON, DEFAULT_TIMEZONE = "0 6 * * *", "30 1 * * *", "UTC"


def schedules(env: Mapping[str, str]) -> list[dg.ScheduleDefinition]:
    """The two schedules, their cron and timezone read from `env` (the deployment's environment)."""
    # Both run in the deployment's timezone.
    schedule = partial(dg.ScheduleDefinition, execution_timezone=env.get(environment.TIMEZONE) or DEFAULT_TIMEZONE)
    daily_plan = schedule(
        name="halo_sync_plan_daily",
        job=halo_sync_plan,
        cron_schedule=env.get(environment.PLAN_CRON) or DEFAULT_PLAN_CRON,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Daily refresh of the plan (no writes), so the UI always shows what a sync would do.",
    )
    nightly_apply = schedule(
        name="halo_sync_apply_nightly",
        job=halo_sync_apply,
        cron_schedule=env.get(environment.APPLY_CRON) or DEFAULT_APPLY_CRON,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        run_config={"ops": {"applied_changes": {"config": {"dry_run": False}}}},
        tags={MODE_TAG: LIVE},  # visible from the moment the run is queued
        description="Nightly live sync. Off by default: turn it on once a dry run looks right. "
        "It writes only when every blocking check of the run passes.",
    )
    return [daily_plan, nightly_apply]
