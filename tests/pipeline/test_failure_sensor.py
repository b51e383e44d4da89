"""The run-failure sensor turns a failed run into one line an alerting hook can forward."""

from __future__ import annotations

import dagster as dg

from halo_sync_pipeline.defs.alerts import failure_summary, halo_sync_failure_alert


@dg.op
def read_halo() -> None:
    raise RuntimeError("Halo /auth/token answered 401 invalid_client\nsecond line of detail")


@dg.job
def failing_sync() -> None:
    read_halo()


def test_failure_summary_is_one_line_with_job_run_and_first_line_of_the_reason():
    line = failure_summary("halo_sync_apply", "abc-123", "Execution failed.\nTraceback ...")
    assert line == "halo-sync run failed: job=halo_sync_apply run_id=abc-123 reason=Execution failed."
    assert failure_summary("halo_sync_plan", "r", None).endswith("reason=no message")
    assert failure_summary("halo_sync_plan", "r", "  \n").endswith("reason=no message")


def test_sensor_logs_the_summary_of_a_failed_run(tmp_path, capfd):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = failing_sync.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        context = dg.build_run_status_sensor_context(
            sensor_name="halo_sync_failure_alert",
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            dagster_event=result.get_run_failure_event(),
        ).for_run_failure()
        capfd.readouterr()
        halo_sync_failure_alert(context)
    lines = [line for line in capfd.readouterr().err.splitlines() if "halo-sync run failed" in line]
    assert len(lines) == 1
    assert f"job=failing_sync run_id={result.run_id}" in lines[0]
    assert lines[0].endswith("reason=step read_halo: RuntimeError: Halo /auth/token answered 401 invalid_client")
