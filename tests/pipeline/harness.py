"""Running the pipeline's jobs in-process against a running sandbox."""

from __future__ import annotations

from typing import Any

import dagster as dg
import httpx
import pytest

from halo_sync_pipeline.definitions import build_definitions
from halo_sync_pipeline.sandbox.server import RunningSandbox

LIVE = {"ops": {"applied_changes": {"config": {"dry_run": False}}}}


def run_job(
    sandbox: RunningSandbox,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    job_name: str = "halo_sync_apply",
    run_config: dict[str, Any] | None = None,
    extra_env: dict[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """Point the pipeline at the sandbox through the environment (as in production) and run a job."""
    for key, value in (sandbox.env | (extra_env or {})).items():
        monkeypatch.setenv(key, value)
    job = build_definitions().resolve_job_def(job_name)
    return job.execute_in_process(run_config=run_config or {}, instance=instance, raise_on_error=False)


def admin(sandbox: RunningSandbox, path: str, body: dict | None = None) -> Any:
    url = f"{sandbox.halo_url}/_sandbox/{path}"
    with httpx.Client(verify=str(sandbox.ca_bundle), timeout=30) as client:
        response = client.post(url, json=body) if body is not None else client.get(url)
    response.raise_for_status()
    return response.json()


def halo_writes(sandbox: RunningSandbox) -> int:
    """POSTs to the Halo API counted by the sandbox (report creation included)."""
    stats = admin(sandbox, "stats")
    return sum(
        row["count"]
        for row in stats["requests"]
        if row["server"] == "halo" and row["method"] == "POST" and row["path"].startswith("/api/")
    )
