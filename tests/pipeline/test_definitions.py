"""The code location loads, and every asset is documented and placed for the UI."""

from __future__ import annotations

import dagster as dg
import pytest

from halo_sync_pipeline.definitions import defs

EXPECTED_GROUPS = {
    "halo_companies": "halo",
    "halo_contacts": "halo",
    "halo_sites": "halo",
    "halo_tenant_mappings": "halo",
    "m365_tenants": "m365",
    "m365_domains": "m365",
    "m365_users": "m365",
    "company_mappings": "sync",
    "contact_changes": "sync",
    "inactive_report": "sync",
    "tenant_review": "sync",
    "applied_changes": "sync",
}


def test_definitions_load_and_resolve():
    repo = defs.get_repository_def()
    assert {job.name for job in repo.get_all_jobs()} >= {"halo_sync_plan", "halo_sync_apply"}
    assert {s.name for s in repo.schedule_defs} == {"halo_sync_plan_daily", "halo_sync_apply_nightly"}
    assert {s.name for s in repo.sensor_defs} == {"halo_sync_failure_alert", "halo_sync_review_alert"}


def test_every_asset_has_group_kinds_owner_and_docstring():
    graph = defs.resolve_asset_graph()
    seen = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        seen[name] = node.group_name
        assert node.owners, f"{name} has no owner"
        assert node.kinds, f"{name} has no kinds"
        assert node.description and len(node.description) > 40, f"{name} has no real description"
    assert seen == EXPECTED_GROUPS


def test_every_asset_has_a_blocking_schema_check():
    graph = defs.resolve_asset_graph()
    blocking = {key.asset_key.to_user_string() for key in graph.asset_check_keys if graph.get_check_spec(key).blocking}
    assert blocking >= set(EXPECTED_GROUPS) - {"applied_changes"}


def test_plan_job_never_writes_and_apply_job_is_serialised():
    repo = defs.get_repository_def()
    plan = repo.get_job("halo_sync_plan")
    apply = repo.get_job("halo_sync_apply")
    assert "applied_changes" not in {node.name for node in plan.graph.node_defs}
    assert "applied_changes" in {node.name for node in apply.graph.node_defs}
    assert apply.tags.get("halo_sync/apply")


def test_live_schedule_is_off_and_writes_live_plan_schedule_is_on():
    repo = defs.get_repository_def()
    nightly = repo.get_schedule_def("halo_sync_apply_nightly")
    daily = repo.get_schedule_def("halo_sync_plan_daily")
    assert nightly.default_status == dg.DefaultScheduleStatus.STOPPED
    assert daily.default_status == dg.DefaultScheduleStatus.RUNNING
    assert nightly.execution_timezone and daily.execution_timezone


def test_dagster_config_defaults_are_the_rules_defaults():
    # The resource and the run config mirror pure dataclasses; their defaults must not drift apart.
    from halo_sync_pipeline.defs.resources import SyncSettingsResource
    from halo_sync_pipeline.defs.sync.apply import ApplyConfig
    from halo_sync_pipeline.settings import SyncSettings
    from halo_sync_pipeline.write_engine import ApplyToggles

    assert SyncSettingsResource().settings() == SyncSettings()
    assert ApplyConfig().toggles() == ApplyToggles()
    assert ApplyConfig().dry_run is True


def test_a_live_apply_requires_every_upstream_asset_from_its_own_run():
    from halo_sync_pipeline.defs.sync.apply import PLAN_INPUTS

    graph = defs.resolve_asset_graph()
    upstream = dg.AssetSelection.assets("applied_changes").upstream().resolve(graph) - {dg.AssetKey("applied_changes")}
    assert {key.to_user_string() for key in upstream} == set(PLAN_INPUTS)


def test_deployment_settings_file_reaches_every_run_schedules_included(tmp_path):
    from halo_sync_pipeline.defs.resources import production_resources

    settings_file = tmp_path / "sync_settings.yaml"
    settings_file.write_text("exclude_tenants: [Northwind]\nguard_min_contacts: 25\ndeactivate_contacts: false\n")
    resources = production_resources({"HALO_SYNC_SETTINGS_FILE": str(settings_file)})
    settings = resources["sync_settings"].settings()
    assert (settings.exclude_tenants, settings.guard_min_contacts, settings.deactivate_contacts) == (
        ["Northwind"],
        25,
        False,
    )
    # The schedules launch with run config for ops only, so the deployment's resource values apply to them.
    from halo_sync_pipeline.definitions import build_definitions

    repo = build_definitions(resources).get_repository_def()
    for schedule in repo.schedule_defs:
        run_config = schedule.evaluate_tick(dg.build_schedule_context()).run_requests[0].run_config
        assert "resources" not in run_config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("exclude_tenant: [x]\n", "unknown setting(s) ['exclude_tenant']"),
        ("guard_fraction: 3\n", "guard_fraction"),
        ("- a\n", "expected a mapping"),
    ],
)
def test_a_bad_settings_file_is_refused_naming_the_file_and_key(tmp_path, text, message):
    from halo_sync_pipeline.defs.resources import SettingsFileError, production_resources

    settings_file = tmp_path / "bad.yaml"
    settings_file.write_text(text)
    with pytest.raises(SettingsFileError, match="HALO_SYNC_SETTINGS_FILE=.*bad.yaml") as raised:
        production_resources({"HALO_SYNC_SETTINGS_FILE": str(settings_file)})
    assert message in str(raised.value)


def test_every_sync_setting_and_apply_field_is_described():
    from halo_sync_pipeline.defs.resources import SyncSettingsResource
    from halo_sync_pipeline.defs.sync.apply import ApplyConfig

    for model in (SyncSettingsResource, ApplyConfig):
        for name, field in model.model_fields.items():
            assert field.description and len(field.description) > 20, f"{model.__name__}.{name}"


def test_definitions_are_built_from_an_explicit_environment_without_touching_os_environ(monkeypatch):
    import os

    from halo_sync_pipeline import environment
    from halo_sync_pipeline.definitions import build_definitions

    monkeypatch.delenv(environment.PLAN_CRON, raising=False)
    before = dict(os.environ)
    env = {
        environment.PLAN_CRON: "15 5 * * 1-5",
        environment.APPLY_CRON: "0 2 * * *",
        environment.TIMEZONE: "Europe/London",
    }
    repo = build_definitions(env=env).get_repository_def()
    plan, apply = repo.get_schedule_def("halo_sync_plan_daily"), repo.get_schedule_def("halo_sync_apply_nightly")
    assert (plan.cron_schedule, apply.cron_schedule) == ("15 5 * * 1-5", "0 2 * * *")
    assert plan.execution_timezone == apply.execution_timezone == "Europe/London"
    assert dict(os.environ) == before
