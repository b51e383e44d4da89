"""What a person sees: the tenant review, the plan exports, and runs that say LIVE or DRY RUN; every
launch path of the apply is safe."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import dagster as dg
import pytest

from halo_sync_pipeline.defs.sync.apply import MODE_TAG
from tests.conftest import NORTHWIND_TENANT_ID
from tests.pipeline.harness import LIVE, admin, halo_writes, run_job


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        yield instance


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(asset))
    return event.materialization.metadata


def test_live_and_dry_runs_carry_different_tags_and_say_so_first(sandbox_factory, small_estate, instance, monkeypatch):
    sandbox = sandbox_factory(small_estate)
    dry = run_job(sandbox, instance, monkeypatch)
    live = run_job(sandbox, instance, monkeypatch, run_config=LIVE)
    assert dry.success and live.success
    dry_tags = instance.get_run_by_id(dry.run_id).tags
    live_tags = instance.get_run_by_id(live.run_id).tags
    assert (dry_tags[MODE_TAG], live_tags[MODE_TAG]) == ("dry_run", "live")
    dry_first, dry_summary = next(iter(_metadata(dry, "applied_changes").items()))
    live_first, live_summary = next(iter(_metadata(live, "applied_changes").items()))
    assert dry_first == live_first == "summary"
    assert dry_summary.value.startswith("DRY RUN: nothing written; 4 writes would be applied")
    assert live_summary.value == "LIVE: 4 writes applied, 0 held, 0 failed"


def test_a_run_whose_mode_tag_contradicts_its_config_is_refused(sandbox_factory, small_estate, instance, monkeypatch):
    sandbox = sandbox_factory(small_estate)
    for key, value in sandbox.env.items():
        monkeypatch.setenv(key, value)
    from halo_sync_pipeline.definitions import build_definitions

    job = build_definitions().resolve_job_def("halo_sync_apply")
    result = job.execute_in_process(
        run_config=LIVE, instance=instance, raise_on_error=False, tags={MODE_TAG: "dry_run"}
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "refusing to apply: the run is tagged halo_sync/mode=dry_run but its config says dry_run: false" in (
        failure.step_failure_data.error.message
    )
    assert halo_writes(sandbox) <= 3  # reports only: nothing was applied


def test_an_apply_from_an_asset_page_is_refused_live_and_allowed_dry(
    sandbox_factory, small_estate, instance, monkeypatch
):
    sandbox = sandbox_factory(small_estate)
    for key, value in sandbox.env.items():
        monkeypatch.setenv(key, value)
    from halo_sync_pipeline.definitions import build_definitions

    defs = build_definitions()
    asset_job = defs.resolve_implicit_global_asset_job_def()
    assert asset_job.name == "__ASSET_JOB"
    live = asset_job.execute_in_process(run_config=LIVE, instance=instance, raise_on_error=False)
    assert not live.success
    failure = next(e for e in live.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message
    assert failure.step_key == "applied_changes" and "refusing a live apply launched from __ASSET_JOB" in message
    assert len(message.strip().splitlines()) == 1
    assert halo_writes(sandbox) <= 3
    dry = asset_job.execute_in_process(instance=instance, raise_on_error=False)
    assert dry.success and instance.get_run_by_id(dry.run_id).tags[MODE_TAG] == "dry_run"


def test_tenant_review_tells_each_tenants_story_untruncated(sandbox_factory, small_estate, instance, monkeypatch):
    sandbox = sandbox_factory(small_estate)
    result = run_job(sandbox, instance, monkeypatch, job_name="halo_sync_plan")
    assert result.success
    review = result.output_for_node("tenant_review")
    assert review["needs_review"].iloc[0]  # problems first
    table = _metadata(result, "tenant_review")["tenants"]
    rows = [record.data for record in table.value.records]
    assert len(rows) == len(review) == 3
    northwind = next(r for r in rows if r["tenant_id"] == NORTHWIND_TENANT_ID)
    assert northwind["tenant_name"] == "Northwind" and northwind["method"] == "unmatched"
    assert (
        len(northwind["evidence"]) > 80
        and northwind["evidence"] == review.set_index("tenant_id").loc[NORTHWIND_TENANT_ID, "evidence"]
    )
    assert {c.name for c in table.value.schema.columns} >= {"tenant_name", "evidence", "hold_reasons", "write_back"}


def test_every_plan_run_exports_its_frames_with_neutralised_formulas(
    sandbox_factory, small_estate, instance, monkeypatch
):
    estate = copy.deepcopy(small_estate)
    # A new user whose name a spreadsheet would run as a formula.
    estate["m365"]["tenants"][1]["users"][1]["displayName"] = '=HYPERLINK("http://evil","x")'
    sandbox = sandbox_factory(estate)
    result = run_job(sandbox, instance, monkeypatch, job_name="halo_sync_plan")
    assert result.success
    folders = {
        Path(_metadata(result, asset)["export_folder"].path)
        for asset in ("company_mappings", "contact_changes", "tenant_review", "inactive_report")
    }
    assert len(folders) == 1
    folder = folders.pop()
    assert result.run_id[:8] in folder.name
    assert sorted(p.name for p in folder.iterdir()) == [
        "company_mappings.csv",
        "contact_changes.csv",
        "inactive_contacts.csv",
        "tenant_review.csv",
    ]
    with (folder / "contact_changes.csv").open(encoding="utf-8", newline="") as handle:
        names = [row["name"] for row in csv.DictReader(handle)]
    assert '\'=HYPERLINK("http://evil","x")' in names and not any(n.startswith("=") for n in names)
    assert halo_writes(sandbox) <= 3 and admin(sandbox, "estate")
