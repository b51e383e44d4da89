"""End-to-end benchmark on the sandbox: generate an estate, then time each stage of a live sync.

    .venv/bin/python benchmarks/bench_sync.py --tenants 200 --users-per-tenant 100

Prints the seconds of each step, the requests each sandbox server answered and the pipeline's peak memory. Numbers, not assertions:
these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import httpx

from halo_sync_pipeline.sandbox.generator import generate_estate


def start_sandbox_process(estate_path: Path, state_dir: Path, latency_ms: float) -> tuple[subprocess.Popen, dict]:
    """The sandbox in its own process (as in `make dev`), so it does not share this process's GIL."""
    env_file = state_dir / "sandbox.env"
    command = [sys.executable, "-m", "halo_sync_pipeline.sandbox.cli", "serve", "--estate", str(estate_path),
               "--state-dir", str(state_dir), "--env-file", str(env_file), "--halo-rate-limit", "off",
               "--latency-ms", str(latency_ms)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not env_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the sandbox did not start")
        time.sleep(0.1)
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    return process, {key: value.strip("'\"") for key, value in env.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--users-per-tenant", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()

    started = time.perf_counter()
    estate = generate_estate(args.tenants, args.users_per_tenant, args.seed)
    users = sum(len(t["users"]) for t in estate["m365"]["tenants"])
    print(f"generate: {time.perf_counter() - started:.1f}s, {len(estate['m365']['tenants'])} tenants, {users} users, "
          f"{len(estate['halo']['users'])} Halo contacts")

    with tempfile.TemporaryDirectory() as tmp:
        estate_path = Path(tmp) / "estate.json"
        estate_path.write_text(json.dumps(estate))
        started = time.perf_counter()
        sandbox, env = start_sandbox_process(estate_path, Path(tmp) / "sandbox", args.latency_ms)
        try:
            print(f"sandbox ready: {time.perf_counter() - started:.1f}s")
            os.environ.update(env)
            os.environ["HALO_SYNC_STORAGE_DIR"] = tmp
            from halo_sync_pipeline.definitions import build_definitions

            job = build_definitions().resolve_job_def("halo_sync_apply")
            with dg.DagsterInstance.ephemeral() as instance:
                started = time.perf_counter()
                result = job.execute_in_process(
                    run_config={"ops": {"applied_changes": {"config": {"dry_run": False}}}},
                    instance=instance,
                    raise_on_error=False,
                )
                total = time.perf_counter() - started
                print(f"halo_sync_apply: {'ok' if result.success else 'FAILED'} in {total:.1f}s")
                for event in instance.all_logs(result.run_id):
                    entry = event.dagster_event
                    if entry is not None and entry.event_type_value == "STEP_SUCCESS":
                        print(f"  step {entry.step_key:<52} {entry.event_specific_data.duration_ms / 1000:6.1f}s")
            stats = httpx.get(f"{env['HALO_URL']}/_sandbox/stats", verify=env["HALO_SYNC_CA_BUNDLE"]).json()
            by_server: dict[str, int] = {}
            for row in stats["requests"]:
                by_server[row["server"]] = by_server.get(row["server"], 0) + row["count"]
            print(f"requests: {by_server}")
        finally:
            sandbox.send_signal(signal.SIGTERM)
            sandbox.wait(timeout=60)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the pipeline process: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
