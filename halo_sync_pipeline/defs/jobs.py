"""Jobs, schedules and the run-failure sensor."""

import os

import dagster as dg

from halo_sync_pipeline.defs.sync.apply import APPLY_JOB_NAME

APPLY_TAG = "halo_sync/apply"  # dagster.yaml limits runs with this tag to one at a time

halo_sync_plan = dg.define_asset_job(
    "halo_sync_plan",
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets("applied_changes"),
    description="Read Halo and Microsoft 365, compute and check the plan. Writes nothing to Halo.",
)

halo_sync_apply = dg.define_asset_job(
    APPLY_JOB_NAME,
    selection=dg.AssetSelection.all(),
    description="Read, plan, check, then apply the plan to Halo (dry run unless `dry_run: false`). "
    "Blocking checks stop the apply in the same run.",
    tags={APPLY_TAG: "halo"},
)

_TIMEZONE = os.environ.get("HALO_SYNC_TIMEZONE", "UTC")

daily_plan_schedule = dg.ScheduleDefinition(
    name="halo_sync_plan_daily",
    job=halo_sync_plan,
    cron_schedule=os.environ.get("HALO_SYNC_PLAN_CRON", "0 6 * * *"),
    execution_timezone=_TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily refresh of the plan (no writes), so the UI always shows what a sync would do.",
)

nightly_apply_schedule = dg.ScheduleDefinition(
    name="halo_sync_apply_nightly",
    job=halo_sync_apply,
    cron_schedule=os.environ.get("HALO_SYNC_APPLY_CRON", "30 1 * * *"),
    execution_timezone=_TIMEZONE,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    run_config={"ops": {"applied_changes": {"config": {"dry_run": False}}}},
    description="Nightly live sync. Off by default: turn it on once a dry run looks right. "
    "It writes only when every blocking check of the run passes.",
)


@dg.run_failure_sensor(
    name="halo_sync_failure_alert",
    monitored_jobs=[halo_sync_plan, halo_sync_apply],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Logs one line per failed sync run; the place to hook e-mail, Teams or PagerDuty alerts.",
)
def halo_sync_failure_alert(context: dg.RunFailureSensorContext) -> None:
    run = context.dagster_run
    # The run failure event only says which steps failed; the first step's error says why.
    step_failures = context.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    failed = next((e for e in step_failures if e.dagster_event.step_failure_data.error), None)
    if failed is not None:
        error = failed.dagster_event.step_failure_data.error
        while error.cause is not None:  # Dagster wraps the op's own exception
            error = error.cause
        reason = f"step {failed.step_key}: {error.message}"
    else:
        reason = context.failure_event.message
    context.log.error(failure_summary(run.job_name, run.run_id, reason))


def failure_summary(job_name: str, run_id: str, message: str | None) -> str:
    """One line an alerting hook can forward as is."""
    first_line = (message or "no message").strip().splitlines()[0] if (message or "").strip() else "no message"
    return f"halo-sync run failed: job={job_name} run_id={run_id} reason={first_line[:300]}"
