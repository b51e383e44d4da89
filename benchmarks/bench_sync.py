"""End-to-end benchmark on the sandbox: generate an estate, then time each stage of a live sync.

    .venv/bin/python benchmarks/bench_sync.py --tenants 200 --users-per-tenant 100

Prints the seconds of each step, the requests each sandbox server answered and the pipeline's peak memory:
overall (ru_maxrss of this process) and per step (the highest RSS sampled every 50 ms while the step ran).
The estate is generated and served by child processes, so this process's memory is the pipeline's.
Numbers, not assertions: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import dagster as dg
import httpx


class RssSampler:
    """This process's resident set size, sampled from /proc every `interval_s` in a thread."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.samples: list[tuple[float, int]] = []  # (time.time(), bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)

    def _run(self, interval_s: float) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.is_set():
            with open("/proc/self/statm") as statm:
                self.samples.append((time.time(), int(statm.read().split()[1]) * page))
            self._stop.wait(interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak_mib(self, start: float, end: float) -> float:
        inside = [rss for at, rss in self.samples if start <= at <= end]
        return max(inside, default=0) / 2**20


def generate_estate_file(path: Path, tenants: int, users_per_tenant: int, seed: int) -> None:
    """`halo-sync-sandbox generate` in a child process, so the estate never sits in this process's memory."""
    command = [sys.executable, "-m", "halo_sync_pipeline.sandbox.cli", "generate", "--tenants", str(tenants),
               "--users-per-tenant", str(users_per_tenant), "--seed", str(seed)]  # fmt: skip
    with path.open("w") as out:
        subprocess.run(command, stdout=out, check=True)


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

    with tempfile.TemporaryDirectory() as tmp:
        estate_path = Path(tmp) / "estate.json"
        started = time.perf_counter()
        generate_estate_file(estate_path, args.tenants, args.users_per_tenant, args.seed)
        print(
            f"generate: {time.perf_counter() - started:.1f}s, {args.tenants} tenants x {args.users_per_tenant} users "
            f"({estate_path.stat().st_size / 2**20:.0f} MiB of JSON)"
        )
        started = time.perf_counter()
        sandbox, env = start_sandbox_process(estate_path, Path(tmp) / "sandbox", args.latency_ms)
        try:
            print(f"sandbox ready: {time.perf_counter() - started:.1f}s")
            os.environ.update(env)
            os.environ["HALO_SYNC_STORAGE_DIR"] = tmp
            from halo_sync_pipeline.definitions import build_definitions

            job = build_definitions().resolve_job_def("halo_sync_apply")
            before_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"peak RSS before the run (imports, definitions): {before_mib:.0f} MiB")
            with dg.DagsterInstance.ephemeral() as instance, RssSampler() as rss:
                started = time.perf_counter()
                result = job.execute_in_process(
                    run_config={"ops": {"applied_changes": {"config": {"dry_run": False}}}},
                    instance=instance,
                    raise_on_error=False,
                )
                total = time.perf_counter() - started
                print(f"halo_sync_apply: {'ok' if result.success else 'FAILED'} in {total:.1f}s")
                starts: dict[str, float] = {}
                for event in instance.all_logs(result.run_id):
                    entry = event.dagster_event
                    if entry is None:
                        continue
                    if entry.event_type_value == "STEP_START":
                        starts[entry.step_key] = event.timestamp
                    elif entry.event_type_value == "STEP_SUCCESS":
                        peak = rss.peak_mib(starts.get(entry.step_key, event.timestamp), event.timestamp)
                        print(
                            f"  step {entry.step_key:<52} {entry.event_specific_data.duration_ms / 1000:6.1f}s  "
                            f"peak RSS {peak:6.0f} MiB"
                        )
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
