"""Cross-tenant Graph concurrency: time `GraphClient.tenants()` + `load_all()` on a sandbox with latency.

    .venv/bin/python benchmarks/bench_graph_concurrency.py --tenants 500 --users-per-tenant 10 --latency-ms 100 \\
        --concurrency 8 16

Starts the sandbox in its own process (no Halo rate limit; Graph's per-tenant limits as usual) and reads
every tenant once per `--concurrency` value, printing the wall time, the Graph and identity requests and
the requests per tenant. Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sync import start_sandbox_process  # noqa: E402

from halo_sync_pipeline.defs.resources import M365Resource  # noqa: E402
from halo_sync_pipeline.sandbox.generator import generate_estate  # noqa: E402


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process so far (this one by default), from /proc."""
    fields = Path(f"/proc/{pid or os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def read_all(env: dict[str, str], concurrency: int) -> tuple[float, int, int, int, int]:
    # Built as the pipeline builds it: the resource's timeout and retry deadline, this run's concurrency.
    async with M365Resource(
        login_url=env["M365_LOGIN_URL"], graph_url=env["M365_GRAPH_URL"], partner_tenant_id=env["M365_PARTNER_TENANT_ID"],
        client_id=env["M365_CLIENT_ID"], client_secret=env["M365_CLIENT_SECRET"],
        refresh_token=env.get("M365_REFRESH_TOKEN") or None, ca_bundle=env["HALO_SYNC_CA_BUNDLE"], concurrency=concurrency,
    ).client() as graph:  # fmt: skip
        started = time.perf_counter()
        loads = await graph.load_all(await graph.tenants())
        seconds = time.perf_counter() - started
        graph_requests = sum(graph.request_counts.snapshot().values())
        identity_requests = sum(graph.token_request_counts.snapshot().values())
        loaded = sum(load.status == "loaded" for load in loads)
        return seconds, len(loads), loaded, graph_requests, identity_requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=500)
    parser.add_argument("--users-per-tenant", type=int, default=10)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 16])
    args = parser.parse_args()
    estate = generate_estate(args.tenants, args.users_per_tenant, 1)
    with tempfile.TemporaryDirectory() as tmp:
        estate_path = Path(tmp) / "estate.json"
        estate_path.write_text(json.dumps(estate))
        del estate
        sandbox, env = start_sandbox_process(estate_path, Path(tmp) / "sandbox", args.latency_ms)
        try:
            os.environ.update(env)
            for concurrency in args.concurrency:
                client_cpu, sandbox_cpu = cpu_seconds(), cpu_seconds(sandbox.pid)
                seconds, tenants, loaded, graph_n, identity_n = asyncio.run(read_all(env, concurrency))
                client_cpu, sandbox_cpu = cpu_seconds() - client_cpu, cpu_seconds(sandbox.pid) - sandbox_cpu
                print(
                    f"concurrency {concurrency:3d}: {tenants} tenants ({loaded} loaded) read in {seconds:5.1f} s at "
                    f"{args.latency_ms:.0f} ms/request; Graph {graph_n} + identity {identity_n} requests "
                    f"({(graph_n + identity_n) / max(tenants, 1):.1f} per tenant); CPU: client {client_cpu:.1f} s, "
                    f"sandbox {sandbox_cpu:.1f} s"
                )
        finally:
            sandbox.send_signal(signal.SIGTERM)
            sandbox.wait(timeout=60)


if __name__ == "__main__":
    main()
