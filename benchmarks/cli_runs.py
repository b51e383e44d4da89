"""How the benchmarks run the product as a user meets it: installed, and through `dagster job execute`.

An editable install leaves the package without bytecode, and where PYTHONDONTWRITEBYTECODE is set (this
machine, and many container images) every process compiles our 63 modules from source again: about 0.2 s
of each run, which an installed wheel never pays because pip compiles it at install time. So a benchmark
calls `compile_package()` before it starts any run.

A user's Dagster instance exists before their runs; a benchmark's fresh DAGSTER_HOME does not, and the first
run in it creates the run, schedule and event-index databases (about 0.6 s more). So a benchmark calls
`warm_instance(env)` once before it times any run.

The CLI targets: `PLAN` and `LIVE_APPLY` run the product's jobs, `FLOOR` runs `dagster_floor.py`, the
plan's shape with steps that do nothing.
"""

from __future__ import annotations

import compileall
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAGSTER = REPO / ".venv" / "bin" / "dagster"
FLOOR_JOB = "halo_sync_plan_floor"
FLOOR = ["-f", str(REPO / "benchmarks" / "dagster_floor.py"), "-j", FLOOR_JOB]
PLAN = ["-m", "halo_sync_pipeline.definitions", "-j", "halo_sync_plan"]
LIVE_APPLY = [
    "-m",
    "halo_sync_pipeline.definitions",
    "-j",
    "halo_sync_apply",
    "-c",
    str(REPO / "config/apply_live.yaml"),
]


def compile_package() -> None:
    """Write the package's bytecode, as pip does at install (py_compile writes it whatever the setting)."""
    if not compileall.compile_dir(REPO / "halo_sync_pipeline", quiet=1):
        raise SystemExit("could not compile halo_sync_pipeline")


def cli_seconds(target: list[str], env: Mapping[str, str]) -> float:
    """Seconds of one `dagster job execute` of `target` in a fresh process, which must succeed."""
    started = time.perf_counter()
    subprocess.run([str(DAGSTER), "job", "execute", *target], env=env, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - started


def warm_instance(env: Mapping[str, str]) -> None:
    """Create the instance's storage in `env`'s DAGSTER_HOME, as a user's earlier runs have: one floor run."""
    cli_seconds(FLOOR, env)
