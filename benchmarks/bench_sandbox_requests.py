"""Per-request latency of the sandbox servers on loopback: sequential GETs over one keep-alive connection.

    .venv/bin/python benchmarks/bench_sandbox_requests.py --requests 200

Starts the sandbox in this process on the example estate (latency 0, no rate limits), then times
`--requests` sequential GETs with httpx to one Halo endpoint (`/api/Client`) and one Graph endpoint
(`/v1.0/users` of a customer tenant) and prints p50/p90 per server. Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from halo_sync_pipeline.sandbox import EXAMPLE_ESTATE
from halo_sync_pipeline.sandbox.server import RunningSandbox, start_sandbox


def _halo_request(sandbox: RunningSandbox, http: httpx.Client) -> tuple[str, dict[str, str]]:
    env = sandbox.env
    answer = http.post(f"{env['HALO_URL']}/auth/token", params={"tenant": env["HALO_TENANT"]},
                       data={"grant_type": "client_credentials", "client_id": env["HALO_CLIENT_ID"],
                             "client_secret": env["HALO_CLIENT_SECRET"], "scope": "all"})  # fmt: skip
    answer.raise_for_status()
    return f"{env['HALO_URL']}/api/Client", {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _graph_request(sandbox: RunningSandbox, http: httpx.Client, tenant_id: str) -> tuple[str, dict[str, str]]:
    env = sandbox.env
    answer = http.post(f"{env['M365_LOGIN_URL']}/{tenant_id}/oauth2/v2.0/token",
                       data={"grant_type": "refresh_token", "client_id": env["M365_CLIENT_ID"],
                             "client_secret": env["M365_CLIENT_SECRET"], "refresh_token": env["M365_REFRESH_TOKEN"],
                             "scope": "https://graph.microsoft.com/.default"})  # fmt: skip
    answer.raise_for_status()
    return f"{env['M365_GRAPH_URL']}/v1.0/users", {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _timings_ms(http: httpx.Client, url: str, headers: dict[str, str], count: int) -> list[float]:
    http.get(url, headers=headers).raise_for_status()  # warm: TLS handshake and keep-alive connection
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        http.get(url, headers=headers).raise_for_status()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def _percentile(values: list[float], fraction: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    estate = json.loads(EXAMPLE_ESTATE.read_text())
    tenant = next(t for t in estate["m365"]["tenants"] if t.get("consented", True))
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_sandbox(Path(tmp), estate, halo_rate_limit=None, graph_rate=0) as sandbox,
        httpx.Client(verify=str(sandbox.ca_bundle), timeout=30) as http,
    ):
        targets = {
            "halo GET /api/Client": _halo_request(sandbox, http),
            "ms   GET /v1.0/users": _graph_request(sandbox, http, tenant["customerId"]),
        }
        for name, (url, headers) in targets.items():
            timings = _timings_ms(http, url, headers, args.requests)
            print(
                f"{name}: p50 {_percentile(timings, 0.5):6.2f} ms  p90 {_percentile(timings, 0.9):6.2f} ms  "
                f"({args.requests} sequential requests)"
            )


if __name__ == "__main__":
    main()
