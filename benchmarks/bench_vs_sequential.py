"""Side by side on one sandbox: the pipeline as a user runs it vs a sequential client with the seed's request pattern.

    .venv/bin/python benchmarks/bench_vs_sequential.py --tenants 200 --users-per-tenant 50 --latency-ms 30 --mode both

One sandbox (this process, `start_sandbox`, `--latency-ms` on every request, Halo's rate limit off so both
sides run unthrottled; the Halo request counts are then compared with Halo's 300 per 5 minutes). Per mode:

- **pipeline**: the CLI, `dagster job execute -m halo_sync_pipeline.definitions -j halo_sync_plan` (reads) or
  `-j halo_sync_apply -c config/apply_live.yaml` (live), in a subprocess with the sandbox's environment and
  DAGSTER_HOME a temporary folder holding a copy of the repo's dagster.yaml; wall time includes Python start,
  the import of the definitions and the run.
- `POST /_sandbox/reset`: the estate as it was, request counters at zero.
- **seed pattern** (`SeedPatternClient`, one request after the other, one connection per server):
  Halo token, the three saved reports (looked up by name, created when missing, loaded), the mapping reads
  (Microsoft Partner connections, then each one's mappings); partner token, `beta/contracts`; per tenant:
  two token requests, `beta/domains`, `beta/users` in pages of 100 without `$select`; live only: each write
  as one GET of the record (the contact, the company with its details, or a search by email for a create),
  then a one-element POST.
  The writes are the pipeline's own: the rows of its `applied_changes` with outcome `applied` (read from
  the run's asset storage), so both sides make exactly the same changes to Halo and differ only in how
  they talk to the APIs. (The seed wrote more: it re-wrote unchanged contacts; that is not counted here.)

Prints both wall times, both request counts (from `/_sandbox/stats`), the ratio and each side's Halo requests
against Halo's limit of 300 per 5 minutes. Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from halo_sync_pipeline.clients.halo import SavedReport, companies_report_sql, contacts_report_sql, sites_report_sql
from halo_sync_pipeline.sandbox.generator import generate_estate
from halo_sync_pipeline.sandbox.server import RunningSandbox, start_sandbox

REPO = Path(__file__).resolve().parents[1]
DAGSTER = REPO / ".venv" / "bin" / "dagster"
HALO_LIMIT, HALO_WINDOW_S = 300, 300.0  # Halo's hosted rate limit: requests per 5 minutes
KEEP_ACTIVE_FIELD = "CFM365SyncKeepActive"
SEED_PAGE_SIZE = 100


@dataclass
class Side:
    name: str
    seconds: float
    requests: dict[str, int]  # server -> count
    writes: int = 0

    @property
    def total(self) -> int:
        return sum(self.requests.values())


# --- the pipeline, as a user runs it ------------------------------------------------------------


def run_pipeline(sandbox: RunningSandbox, home: Path, mode: str) -> tuple[float, Path]:
    """The CLI in a subprocess; the seconds it took and the storage folder of the run."""
    storage = home / f"storage-{mode}-{time.monotonic_ns()}"
    env = os.environ | sandbox.env | {"DAGSTER_HOME": str(home), "HALO_SYNC_STORAGE_DIR": str(storage)}
    job = ["-j", "halo_sync_plan"] if mode == "reads" else ["-j", "halo_sync_apply", "-c", str(REPO / "config/apply_live.yaml")]
    command = [str(DAGSTER), "job", "execute", "-m", "halo_sync_pipeline.definitions", *job]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return seconds, storage


def applied_writes(storage: Path) -> list[dict[str, Any]]:
    """The rows the live run wrote (outcome `applied`), from the run's asset storage."""
    path = storage / "storage" / "applied_changes"
    with path.open("rb") as handle:
        applied = pickle.load(handle)
    rows = applied.loc[applied["outcome"] == "applied"]
    return rows.astype(object).where(rows.notna(), None).to_dict("records")


# --- the seed's request pattern ---------------------------------------------------------------------


class SeedPatternClient:
    """One request after the other, as the seed script makes them (Invoke-RestMethod in loops)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.http = httpx.Client(verify=env["HALO_SYNC_CA_BUNDLE"], timeout=60)
        self.halo_headers: dict[str, str] = {}

    def close(self) -> None:
        self.http.close()

    def _ok(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise SystemExit(f"seed pattern: {response.request.method} {response.request.url.path} answered "
                             f"{response.status_code}: {response.text[:300]}")  # fmt: skip
        return response.json()

    # Halo
    def halo_token(self) -> None:
        env = self.env
        answer = self._ok(self.http.post(
            f"{env['HALO_URL']}/auth/token", params={"tenant": env["HALO_TENANT"]},
            data={"grant_type": "client_credentials", "client_id": env["HALO_CLIENT_ID"],
                  "client_secret": env["HALO_CLIENT_SECRET"], "scope": "all"},
        ))  # fmt: skip
        self.halo_headers = {"Authorization": f"Bearer {answer['access_token']}"}

    def halo_get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._ok(self.http.get(f"{self.env['HALO_URL']}{path}", params=params, headers=self.halo_headers))

    def halo_post(self, path: str, element: dict[str, Any]) -> Any:
        return self._ok(self.http.post(f"{self.env['HALO_URL']}{path}", json=[element], headers=self.halo_headers))

    def report(self, report: SavedReport) -> list[dict[str, Any]]:
        found = self.halo_get("/api/Report", {"search": report.name})
        listed = found.get("reports", []) if isinstance(found, dict) else found
        ids = [r["id"] for r in listed or [] if r.get("name") == report.name]
        if not ids:
            created = self.halo_post("/api/Report", {"name": report.name, "sql": report.sql})
            ids = [(created[0] if isinstance(created, list) else created)["id"]]
        return self.halo_get(f"/api/Report/{ids[0]}", {"loadreport": "true"})["report"]["rows"]

    def halo_reads(self) -> None:
        self.halo_token()
        for report in (SavedReport("companies", companies_report_sql()), SavedReport("sites", sites_report_sql()),
                       SavedReport(f"contacts {KEEP_ACTIVE_FIELD}", contacts_report_sql(KEEP_ACTIVE_FIELD))):  # fmt: skip
            self.report(report)
        connections = self.halo_get("/api/azureadconnection", {"type": 2})
        for connection in connections if isinstance(connections, list) else connections.get("connections", []):
            self.halo_get(f"/api/azureadconnection/{connection['id']}", {"includedetails": "true", "includetenants": "true"})

    # Microsoft
    def ms_token(self, tenant_id: str) -> dict[str, str]:
        env = self.env
        answer = self._ok(self.http.post(
            f"{env['M365_LOGIN_URL']}/{tenant_id}/oauth2/v2.0/token",
            data={"grant_type": "refresh_token", "client_id": env["M365_CLIENT_ID"], "client_secret": env["M365_CLIENT_SECRET"],
                  "refresh_token": env["M365_REFRESH_TOKEN"], "scope": "https://graph.microsoft.com/.default"},
        ))  # fmt: skip
        return {"Authorization": f"Bearer {answer['access_token']}"}

    def graph_pages(self, path: str, headers: dict[str, str], params: dict[str, str] | None = None) -> list[Any]:
        url: str | None = f"{self.env['M365_GRAPH_URL']}{path}"
        records: list[Any] = []
        while url:
            body = self._ok(self.http.get(url, params=params, headers=headers))
            records.extend(body.get("value", []))
            url, params = body.get("@odata.nextLink"), None
        return records

    def microsoft_reads(self) -> None:
        partner = self.env["M365_PARTNER_TENANT_ID"]
        contracts = self.graph_pages("/beta/contracts", self.ms_token(partner))
        for contract in contracts:
            tenant = contract["customerId"]
            try:
                self.ms_token(tenant)  # the seed asked for a token twice per tenant (two API scopes)
                headers = self.ms_token(tenant)
            except SystemExit:
                continue  # no consent: the seed logged it and went on
            try:
                self.graph_pages("/beta/domains", headers)
                self.graph_pages("/beta/users", headers, {"$top": str(SEED_PAGE_SIZE)})
            except SystemExit:
                continue

    # Writes
    def write(self, row: dict[str, Any]) -> None:
        body = json.loads(row["body"])
        if row["action"] == "set_tenant_id":
            self.halo_get(f"/api/Client/{int(row['company_id'])}", {"includedetails": "true"})
            self.halo_post("/api/Client", body)
        elif row["action"] == "create":
            self.halo_get("/api/Users", {"search": body.get("emailaddress", ""), "client_id": int(row["company_id"])})
            self.halo_post("/api/Users", body)
        else:
            self.halo_get(f"/api/Users/{int(row['contact_id'])}", {"includedetails": "true"})
            self.halo_post("/api/Users", body)


def run_seed_pattern(env: dict[str, str], writes: list[dict[str, Any]]) -> float:
    client = SeedPatternClient(env)
    try:
        started = time.perf_counter()
        client.halo_reads()
        client.microsoft_reads()
        for row in writes:
            client.write(row)
        return time.perf_counter() - started
    finally:
        client.close()


# --- the comparison -------------------------------------------------------------------------------


def stats(sandbox: RunningSandbox) -> dict[str, int]:
    answer = httpx.get(f"{sandbox.halo_url}/_sandbox/stats", verify=str(sandbox.ca_bundle)).json()
    by_server: dict[str, int] = {}
    for row in answer["requests"]:
        by_server[row["server"]] = by_server.get(row["server"], 0) + row["count"]
    return by_server


def reset(sandbox: RunningSandbox) -> None:
    httpx.post(f"{sandbox.halo_url}/_sandbox/reset", verify=str(sandbox.ca_bundle), timeout=600).raise_for_status()


def compare(sandbox: RunningSandbox, home: Path, mode: str) -> tuple[Side, Side]:
    reset(sandbox)
    seconds, storage = run_pipeline(sandbox, home, mode)
    pipeline = Side("pipeline", seconds, stats(sandbox))
    writes = applied_writes(storage) if mode == "live" else []
    pipeline.writes = len(writes)
    reset(sandbox)
    seed = Side("seed pattern", run_seed_pattern(sandbox.env, writes), stats(sandbox), len(writes))
    return pipeline, seed


def halo_budget(side: Side) -> str:
    halo = side.requests.get("halo", 0)
    window = max(side.seconds, HALO_WINDOW_S) / HALO_WINDOW_S
    return f"{halo} Halo requests = {halo / (HALO_LIMIT * window):.0%} of Halo's {HALO_LIMIT}/5 min"


def report(mode: str, pipeline: Side, seed: Side) -> None:
    job = "halo_sync_plan" if mode == "reads" else "halo_sync_apply"
    print(f"{mode}:")
    for side, label in ((seed, "seed pattern"), (pipeline, f"pipeline ({job}, CLI)")):
        servers = ", ".join(f"{k} {v}" for k, v in sorted(side.requests.items()))
        print(f"  {label:<32} {side.seconds:7.1f} s  {side.total:6d} requests ({servers}); {halo_budget(side)}"
              + (f"; {side.writes} writes" if mode == "live" else ""))  # fmt: skip
    print(f"  ratio seed / pipeline: {seed.seconds / pipeline.seconds:.2f}x wall time, "
          f"{seed.total / max(pipeline.total, 1):.1f}x requests")


@contextmanager
def sandbox_for(args: argparse.Namespace) -> Iterator[tuple[RunningSandbox, Path]]:
    estate = generate_estate(args.tenants, args.users_per_tenant, args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-vs-seq-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        started = time.perf_counter()
        with start_sandbox(Path(tmp) / "sandbox", estate, latency_ms=args.latency_ms, halo_rate_limit=None) as sandbox:
            print(f"sandbox: {args.tenants} tenants x {args.users_per_tenant} users, {len(estate['halo']['users'])} "
                  f"Halo contacts, latency {args.latency_ms:g} ms, ready in {time.perf_counter() - started:.1f} s")
            del estate
            yield sandbox, home


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--users-per-tenant", type=int, default=50)
    parser.add_argument("--latency-ms", type=float, default=30.0)
    parser.add_argument("--mode", choices=("reads", "live", "both"), default="both")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not DAGSTER.exists():
        sys.exit(f"{DAGSTER} not found: run `make` first")
    with sandbox_for(args) as (sandbox, home):
        for mode in ("reads", "live") if args.mode == "both" else (args.mode,):
            report(mode, *compare(sandbox, home, mode))


if __name__ == "__main__":
    main()
