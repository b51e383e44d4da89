"""The benchmarks' floor job keeps the plan's shape: the same steps, assets, dependencies and checks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import dagster as dg

from halo_sync_pipeline.definitions import defs as product

FLOOR_FILE = Path(__file__).resolve().parents[2] / "benchmarks" / "dagster_floor.py"


def _floor_module():
    spec = importlib.util.spec_from_file_location("dagster_floor", FLOOR_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shape(job: dg.JobDefinition) -> tuple[int, dict[dg.AssetKey, set[dg.AssetKey]], set[dg.AssetCheckKey]]:
    layer = job.asset_layer
    graph = layer.asset_graph
    keys = layer.selected_asset_keys
    deps = {key: set(graph.get(key).parent_keys) & keys for key in keys}
    checks = {check for node in layer.data for check in node.assets_def.check_keys}
    return len(job.graph.node_defs), deps, checks


def test_the_floor_has_the_plan_jobs_steps_assets_dependencies_and_checks_and_runs_without_any_request():
    floor = _floor_module()
    plan_job = product.resolve_job_def("halo_sync_plan")
    floor_job = floor.defs.resolve_job_def(floor.FLOOR_JOB)

    steps, deps, checks = _shape(floor_job)
    assert (steps, deps, checks) == _shape(plan_job)
    assert steps >= 9 and len(checks) >= 10  # the shape is real, not two empty sets

    # No resource, no environment: a step that read anything would fail here.
    result = floor_job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == set(deps)
    evaluations = result.get_asset_check_evaluations()
    assert {e.asset_check_key for e in evaluations} == checks
    assert all(e.passed for e in evaluations)
