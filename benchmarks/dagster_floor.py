"""The floor under every plan run: `halo_sync_plan`'s shape with steps that do nothing.

    .venv/bin/dagster job execute -f benchmarks/dagster_floor.py -j halo_sync_plan_floor

A code location with one step per asset step of `halo_sync_plan`: the same asset keys, dependencies and
check specs, each step reporting its materializations and every check as passed, with no read, rule,
schema or file write. Importing this module imports the product's definitions (so every library the
product loads), and the run uses the same executor and instance. What such a run costs through the CLI is
the part of a plan run no change to our step code can remove: Python start, the imports, the instance,
the run's planning and its events. `bench_fixed_cost.py` and `bench_vs_sequential.py` print it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from halo_sync_pipeline import definitions as product_location
from halo_sync_pipeline.defs.jobs import halo_sync_plan

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `dagster -f` puts only the working directory there
from cli_runs import FLOOR_JOB  # noqa: E402


def _idle_step(step: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """A step with `step`'s assets and checks that only reports them."""
    specs = [dg.AssetSpec(spec.key, deps=spec.deps, group_name=spec.group_name) for spec in step.specs]
    checks = list(step.check_specs)

    @dg.multi_asset(name=f"{step.node_def.name}_idle", specs=specs, check_specs=checks)
    def idle() -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        for spec in specs:
            yield dg.MaterializeResult(asset_key=spec.key)
        for check in checks:
            yield dg.AssetCheckResult(asset_key=check.asset_key, check_name=check.name, passed=True)

    return idle


def _plan_steps() -> list[dg.AssetsDefinition]:
    plan_keys = product_location.defs.resolve_job_def(halo_sync_plan.name).asset_layer.selected_asset_keys
    steps = [a for a in product_location.defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    return [step for step in steps if set(step.keys) & plan_keys]


defs = dg.Definitions(
    assets=[_idle_step(step) for step in _plan_steps()],
    jobs=[dg.define_asset_job(FLOOR_JOB, selection=dg.AssetSelection.all())],
    executor=dg.in_process_executor,
)
