"""The fixed cost of a plan run on the example estate at latency 0, as a user meets it.

    .venv/bin/python benchmarks/bench_fixed_cost.py [--runs 3]

Prints, each over --runs runs (min / median):
- the import of `halo_sync_pipeline.definitions` (a fresh interpreter each time);
- `dagster job execute -m halo_sync_pipeline.definitions -j halo_sync_plan` (the CLI, a fresh process, the
  project's dagster.yaml with SQLite storage in a temporary DAGSTER_HOME), interleaved with its floor:
  the same CLI on `dagster_floor.py`, a job of the plan's shape whose steps do nothing;
- the same job in-process on that SQLite instance, and on an in-memory instance, with the number of events
  a run writes and the slowest steps;
- building a run's HTTP clients as in production (`verify=True`, the public trust store: 5 Halo clients,
  the Graph client and 16 tenant-slot pools), which the sandbox's one-certificate CA does not show.
The package is compiled first, as an installed wheel is (`cli_runs.py`).
Numbers, not assertions: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from cli_runs import FLOOR, PLAN, REPO, cli_seconds, compile_package, warm_instance

sys.path.insert(0, str(REPO))
PYTHON = REPO / ".venv" / "bin" / "python"


def _line(what: str, seconds: list[float]) -> str:
    return f"{what:<58} min {min(seconds):5.2f} s   median {statistics.median(seconds):5.2f} s"


def build_production_clients() -> float:
    """Seconds to build a run's clients with the public trust store (no request is sent), as a fresh run
    process does: the trust store itself included."""
    import asyncio

    from halo_sync_pipeline.clients import connection
    from halo_sync_pipeline.defs.resources import HaloResource, M365Resource

    connection._public_trust.cache_clear()
    started = time.perf_counter()
    halos = [HaloResource(url="https://halo.invalid", client_id="c", client_secret="s").client() for _ in range(5)]
    graph = M365Resource(partner_tenant_id=str(uuid.UUID(int=1)), client_id="c", client_secret="s").client()
    slots = [graph._new_http() for _ in range(16)]  # what load_all makes, one per tenant slot
    seconds = time.perf_counter() - started
    for halo in halos:
        halo.close()

    async def close() -> None:
        for slot in slots:
            await slot.aclose()
        await graph.aclose()

    asyncio.run(close())
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    import dagster as dg

    compile_package()
    from halo_sync_pipeline.sandbox import EXAMPLE_ESTATE
    from halo_sync_pipeline.sandbox.server import start_sandbox

    imports = []
    for _ in range(args.runs):
        started = time.perf_counter()
        subprocess.run([str(PYTHON), "-c", "import halo_sync_pipeline.definitions"], check=True, cwd=REPO)
        imports.append(time.perf_counter() - started)
    print(_line("import halo_sync_pipeline.definitions", imports))

    with tempfile.TemporaryDirectory(prefix="halo-sync-bench-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        storage = Path(tmp) / "storage"
        with start_sandbox(Path(tmp) / "sandbox", json.loads(EXAMPLE_ESTATE.read_text()), reset=True) as sandbox:
            env = os.environ | sandbox.env | {"DAGSTER_HOME": str(home), "HALO_SYNC_STORAGE_DIR": str(storage)}
            warm_instance(env)
            plan, floor = [], []
            for _ in range(args.runs):  # interleaved, so both meet the same machine
                plan.append(cli_seconds(PLAN, env))
                floor.append(cli_seconds(FLOOR, env))
            print(_line("dagster job execute -j halo_sync_plan (CLI)", plan))
            print(_line("the same shape, steps that do nothing (dagster_floor.py)", floor))
            above = [run - idle for run, idle in zip(plan, floor, strict=True)]
            print(_line("  the plan above its floor (our steps' own work)", above))

            os.environ.update(env)
            from halo_sync_pipeline.definitions import build_definitions

            job = build_definitions().resolve_job_def("halo_sync_plan")
            quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
            with dg.DagsterInstance.get() as instance:
                sqlite, result = [], None
                for _ in range(args.runs):
                    started = time.perf_counter()
                    result = job.execute_in_process(instance=instance, run_config=quiet)
                    sqlite.append(time.perf_counter() - started)
                events = instance.all_logs(result.run_id)
                steps = sorted(
                    (
                        (e.dagster_event.step_key, e.dagster_event.event_specific_data.duration_ms)
                        for e in events
                        if e.dagster_event and e.dagster_event.event_type_value == "STEP_SUCCESS"
                    ),
                    key=lambda pair: -pair[1],
                )
            print(_line("the same job in-process, project's SQLite instance", sqlite))
            memory = []
            for _ in range(args.runs):
                started = time.perf_counter()
                job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), run_config=quiet)
                memory.append(time.perf_counter() - started)
            print(_line("the same job in-process, in-memory instance", memory))
            kinds = Counter(e.dagster_event.event_type_value if e.dagster_event else "log message" for e in events)
            print(f"events per run: {len(events)} ({', '.join(f'{n} {k}' for k, n in kinds.most_common(6))}, …)")
            print("slowest steps: " + ", ".join(f"{key} {ms:.0f} ms" for key, ms in steps[:5]))
    clients = [build_production_clients() for _ in range(args.runs)]
    print(_line("a run's HTTP clients with the public trust store", clients))
    return 0


if __name__ == "__main__":
    sys.exit(main())
