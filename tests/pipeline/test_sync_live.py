"""halo_sync_apply end to end against the sandbox over HTTPS: exact final Halo state, idempotence, safety."""

from __future__ import annotations

import copy
import fcntl
from pathlib import Path

import dagster as dg
import pytest

from halo_sync_pipeline.sandbox.generator import generate_estate
from tests.conftest import CONTOSO_TENANT_ID, FABRIKAM_TENANT_ID, NORTHWIND_TENANT_ID
from tests.pipeline.harness import LIVE, admin, halo_writes, run_job

ERIN_OID = "aaaaaaaa-0000-4000-8000-000000000103"
DAN_OID = "bbbbbbbb-0000-4000-8000-000000000200"
FRANK_OID = "bbbbbbbb-0000-4000-8000-000000000201"


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        yield instance


def _users_by_id(estate: dict) -> dict[int, dict]:
    return {user["id"]: user for user in estate["halo"]["users"]}


def test_live_apply_leaves_halo_exactly_as_planned_and_a_second_run_writes_nothing(
    sandbox_factory, small_estate, instance, monkeypatch
):
    sandbox = sandbox_factory(small_estate)
    before = admin(sandbox, "estate")

    result = run_job(sandbox, instance, monkeypatch, run_config=LIVE)
    assert result.success

    mappings = result.output_for_node("company_mappings").set_index("tenant_id")
    assert mappings.loc[CONTOSO_TENANT_ID, "method"] == "tenant_id"
    assert mappings.loc[FABRIKAM_TENANT_ID, "method"] == "name"
    assert mappings.loc[NORTHWIND_TENANT_ID, "method"] == "unmatched"
    applied = result.output_for_node("applied_changes")
    assert sorted(zip(applied["action"], applied["outcome"], strict=True)) == [
        ("create", "applied"), ("create", "applied"), ("pair", "applied"), ("set_tenant_id", "applied"),
    ]  # fmt: skip

    after = admin(sandbox, "estate")
    # Company write-back: Fabrikam gains its tenant; Contoso keeps its own (nothing replaced, nothing nulled).
    clients = {c["id"]: c for c in after["halo"]["clients"]}
    assert [t["azure_tenant_id"] for t in clients[2]["azure_tenants"]] == [FABRIKAM_TENANT_ID]
    assert clients[1]["azure_tenants"] == {c["id"]: c for c in before["halo"]["clients"]}[1]["azure_tenants"]
    assert clients[3] == {c["id"]: c for c in before["halo"]["clients"]}[3]

    users_before, users_after = _users_by_id(before), _users_by_id(after)
    # Dan was paired (azureoid set), not duplicated; everyone else already there is untouched.
    assert users_after[200]["azureoid"] == DAN_OID and not users_after[200]["inactive"]
    for contact_id in (100, 101, 102, 201):
        assert users_after[contact_id] == users_before[contact_id]
    created = {u["azureoid"]: u for cid, u in users_after.items() if cid not in users_before}
    assert set(created) == {ERIN_OID, FRANK_OID}
    erin, frank = created[ERIN_OID], created[FRANK_OID]
    assert (erin["site_id"], erin["emailaddress"], erin["firstname"], erin["surname"]) == (
        11,
        "erin@contoso.com",
        "Erin",
        "Evans",
    )
    assert (frank["site_id"], frank["emailaddress"]) == (20, "frank@fabrikam.com")
    # Real Halo drops fields its schema does not know; the sync sent none.
    assert admin(sandbox, "stats")["unknown_fields"] == []

    writes_after_first_run = halo_writes(sandbox)
    second = run_job(sandbox, instance, monkeypatch, run_config=LIVE)
    assert second.success
    assert second.output_for_node("contact_changes").query("not held").empty
    assert second.output_for_node("applied_changes").query("outcome == 'applied'").empty
    assert halo_writes(sandbox) == writes_after_first_run
    assert admin(sandbox, "estate")["halo"] == after["halo"]


def test_dry_run_is_the_default_and_writes_nothing(sandbox_factory, small_estate, instance, monkeypatch):
    sandbox = sandbox_factory(small_estate)
    before = admin(sandbox, "estate")
    result = run_job(sandbox, instance, monkeypatch)
    assert result.success
    applied = result.output_for_node("applied_changes")
    assert set(applied["outcome"]) == {"dry_run"}
    assert admin(sandbox, "estate")["halo"] == before["halo"]


def test_plan_job_writes_nothing_and_records_a_failed_tenant(sandbox_factory, small_estate, instance, monkeypatch):
    sandbox = sandbox_factory(small_estate)
    admin(sandbox, "faults", {"revoked_tenants": [FABRIKAM_TENANT_ID]})
    result = run_job(sandbox, instance, monkeypatch, job_name="halo_sync_plan")
    assert result.success
    tenants = result.output_for_node("m365_directory", "m365_tenants").set_index("tenant_id")
    assert tenants.loc[FABRIKAM_TENANT_ID, "status"] == "failed"
    assert tenants.loc[CONTOSO_TENANT_ID, "status"] == "loaded"
    changes = result.output_for_node("contact_changes")
    # No action at all for the tenant whose users failed to load, though its company matched by name.
    assert (changes["tenant_id"] == FABRIKAM_TENANT_ID).sum() == 0
    assert (changes["tenant_id"] == CONTOSO_TENANT_ID).sum() == 1
    warning = next(e for e in result.get_asset_check_evaluations() if e.check_name == "m365_tenants_loaded")
    assert not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN
    assert halo_writes(sandbox) <= 3  # the saved reports created on first use; no contact or company write
    halo_requests = {
        (r["method"], r["path"]): r["count"]
        for r in admin(sandbox, "stats")["requests"]
        if r["server"] == "halo" and not r["path"].startswith("/_sandbox/")
    }
    # The four Halo assets share one token; the reads are 3 saved reports and the tenant mappings.
    assert halo_requests[("POST", "/auth/token")] == 1 and halo_requests[("GET", "/api/authinfo")] == 1
    assert sum(halo_requests.values()) == 13


def test_when_every_tenant_fails_the_run_stops_before_planning(sandbox_factory, small_estate, instance, monkeypatch):
    sandbox = sandbox_factory(small_estate)
    admin(sandbox, "faults", {"revoked_tenants": [CONTOSO_TENANT_ID, FABRIKAM_TENANT_ID, NORTHWIND_TENANT_ID]})
    result = run_job(sandbox, instance, monkeypatch, run_config=LIVE)
    assert not result.success
    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "m365_tenants_loaded")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert CONTOSO_TENANT_ID in check.metadata["failure_cases"].value
    materialised = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "company_mappings" not in materialised


def test_an_odd_halo_record_is_quarantined_and_the_estate_still_syncs(
    sandbox_factory, small_estate, instance, monkeypatch
):
    estate = copy.deepcopy(small_estate)
    # Halo stores any text in azureoid; "n/a" is no Azure object id. Bob (101) is active and gone from M365,
    # and carries Erin's address: he must be neither deactivated nor paired, and Erin must not be created twice.
    estate["halo"]["users"][1].update(azureoid="n/a", inactive=False, emailaddress="erin@contoso.com")
    sandbox = sandbox_factory(estate)
    result = run_job(sandbox, instance, monkeypatch, run_config=LIVE)
    assert result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["halo_contacts_schema"].passed
    quarantined = evaluations["halo_records_quarantined"]
    assert not quarantined.passed and quarantined.severity == dg.AssetCheckSeverity.WARN
    table = quarantined.metadata["failure_cases"].value
    assert "| contact | 101 |" in table and 'azureoid "n/a" is not a GUID' in table and "never written" in table
    applied = result.output_for_node("applied_changes")
    assert 101 not in set(applied.loc[applied["outcome"] == "applied", "contact_id"].dropna())
    erin = applied.loc[(applied["action"] == "create") & (applied["email"] == "erin@contoso.com")].iloc[0]
    assert erin["outcome"] == "held" and "contact 101 of this company carries erin@contoso.com" in erin["hold_reason"]
    bob = next(u for u in admin(sandbox, "estate")["halo"]["users"] if u["id"] == 101)
    assert (bob["azureoid"], bob["inactive"]) == ("n/a", False)
    # Every other tenant syncs: Fabrikam's new user is created.
    frank = applied.loc[applied["email"] == "frank@fabrikam.com"].iloc[0]
    assert (frank["action"], frank["outcome"]) == ("create", "applied")


def test_no_secret_reaches_any_event_or_metadata(sandbox_factory, small_estate, instance, monkeypatch):
    sandbox = sandbox_factory(small_estate)
    result = run_job(sandbox, instance, monkeypatch, run_config=LIVE)
    assert result.success
    secrets = [
        sandbox.credentials.halo_client_secret,
        sandbox.credentials.m365_client_secret,
        sandbox.credentials.m365_refresh_token,
    ]
    events = instance.all_logs(result.run_id)
    assert len(events) > 50
    text = "\n".join(repr(event) for event in events)
    for secret in secrets:
        assert secret and secret not in text


@pytest.mark.parametrize(
    "rerun",
    [["applied_changes"], ["company_mappings", "contact_changes", "applied_changes"]],
    ids=["apply-only", "plan-on-stored-sources"],
)
def test_a_live_apply_refuses_a_plan_not_computed_from_a_fresh_read(
    sandbox_factory, small_estate, instance, monkeypatch, rerun
):
    sandbox = sandbox_factory(small_estate)
    assert run_job(sandbox, instance, monkeypatch, job_name="halo_sync_plan").success
    writes = halo_writes(sandbox)
    for key, value in sandbox.env.items():
        monkeypatch.setenv(key, value)
    from halo_sync_pipeline.definitions import build_definitions

    job = build_definitions().resolve_job_def("halo_sync_apply")
    subset = job.get_subset(asset_selection={dg.AssetKey(name) for name in rerun})
    result = subset.execute_in_process(run_config=LIVE, instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "applied_changes"
    assert "not materialised in this run" in str(failure.event_specific_data.error)
    assert halo_writes(sandbox) == writes


def test_a_live_apply_refuses_a_plan_older_than_the_limit(sandbox_factory, small_estate, instance, monkeypatch):
    sandbox = sandbox_factory(small_estate)
    config = {"ops": {"applied_changes": {"config": {"dry_run": False, "max_plan_age_minutes": 0}}}}
    result = run_job(sandbox, instance, monkeypatch, run_config=config)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "applied_changes" and "minutes old" in str(failure.event_specific_data.error)
    assert halo_writes(sandbox) <= 3  # only the saved reports


def test_a_live_apply_refuses_to_start_while_another_holds_the_apply_lock(
    sandbox_factory, small_estate, instance, monkeypatch
):
    sandbox = sandbox_factory(small_estate)
    lock_path = Path(instance.storage_directory()) / "halo_sync_apply.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another apply in progress
        result = run_job(sandbox, instance, monkeypatch, run_config=LIVE)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "another halo_sync_apply run holds" in str(failure.event_specific_data.error)
    assert halo_writes(sandbox) <= 3
    # Once the lock is free, the same apply goes through.
    assert run_job(sandbox, instance, monkeypatch, run_config=LIVE).success


def test_refused_contact_writes_fail_alone_the_rest_lands_and_the_run_fails_at_the_end(
    sandbox_factory, small_estate, instance, monkeypatch
):
    sandbox = sandbox_factory(small_estate)
    # Halo refuses every contact write (400); company write-backs still go through.
    admin(sandbox, "faults", {"endpoints": [{"path": "^/api/Users$", "method": "POST", "server": "halo",
                                             "error_rate": 1.0, "kinds": ["400"]}]})  # fmt: skip
    result = run_job(sandbox, instance, monkeypatch, run_config=LIVE)
    assert not result.success
    # applied_changes was still recorded, with every action's outcome, before the run failed.
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("applied_changes")]
    assert len(events) == 1
    applied = result.output_for_node("applied_changes")
    outcomes = dict(zip(applied["action"], applied["outcome"], strict=False))
    assert outcomes["set_tenant_id"] == "applied"
    assert set(applied.loc[applied["action"] != "set_tenant_id", "outcome"]) == {"failed"}
    assert applied.loc[applied["outcome"] == "failed", "error"].str.contains("400").all()
    clients = {c["id"]: c for c in admin(sandbox, "estate")["halo"]["clients"]}
    assert [t["azure_tenant_id"] for t in clients[2]["azure_tenants"]] == [FABRIKAM_TENANT_ID]


def test_a_rate_limit_that_outlasts_the_retries_stops_the_writes_instead_of_multiplying_them(
    sandbox_factory, instance, monkeypatch
):
    sandbox = sandbox_factory(generate_estate(12, 8, seed=7))
    # Every contact write meets Halo's rate limit, with a Retry-After (600 s) beyond the client's retry deadline.
    limited = {"path": "^/api/Users$", "method": "POST", "server": "halo", "error_rate": 1.0, "kinds": ["429"],
               "retry_after_s": 600}  # fmt: skip
    admin(sandbox, "faults", {"endpoints": [limited]})
    result = run_job(sandbox, instance, monkeypatch, run_config=LIVE, extra_env={"HALO_WRITE_BATCH_SIZE": "1"})
    assert not result.success
    applied = result.output_for_node("applied_changes")
    contacts = applied[(applied["action"] != "set_tenant_id") & (applied["outcome"] != "held")]
    assert len(contacts) > 4 and set(contacts["outcome"]) == {"failed"}
    assert contacts["error"].str.contains("429").all()
    # One write per connection met the limit; nothing was halved or sent after it.
    stats = admin(sandbox, "stats")["requests"]
    posts = sum(
        r["count"] for r in stats if r["server"] == "halo" and r["method"] == "POST" and r["path"] == "/api/Users"
    )
    assert 1 <= posts <= 4
    assert contacts["error"].str.startswith("not sent, Halo's rate limit").sum() >= len(contacts) - 4
    write_backs = applied[applied["action"] == "set_tenant_id"]  # written before the contacts, to /api/Client
    assert len(write_backs) and set(write_backs["outcome"]) == {"applied"}


def test_graph_paging_that_repeats_users_still_plans_every_tenant(sandbox_factory, small_estate, instance, monkeypatch):
    # Graph paging can start a page with the last record of the page before. Those users reached m365_users
    # twice, its blocking schema check (one row per tenant and user) failed, and no tenant was planned.
    estate = copy.deepcopy(small_estate)
    tenant = next(t for t in estate["m365"]["tenants"] if t["customerId"] == CONTOSO_TENANT_ID)
    template = tenant["users"][0]
    domain = template["userPrincipalName"].split("@")[1]
    for n in range(1000):  # more than one page of 999
        upn = f"paged{n}@{domain}"
        tenant["users"].append(template | {"id": f"eeeeeeee-1111-4111-8111-{n:012d}", "userPrincipalName": upn,
                                           "mail": upn, "proxyAddresses": [f"SMTP:{upn}"]})  # fmt: skip
    sandbox = sandbox_factory(estate)
    admin(sandbox, "faults", {"repeated_paging_tenants": [CONTOSO_TENANT_ID]})
    result = run_job(sandbox, instance, monkeypatch, job_name="halo_sync_plan")
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["m365_users_schema"].passed
    tenants = result.output_for_node("m365_directory", "m365_tenants").set_index("tenant_id")
    assert tenants.loc[CONTOSO_TENANT_ID, "status"] == "loaded"
    assert tenants.loc[CONTOSO_TENANT_ID, "user_count"] == len(tenant["users"])
    assert (result.output_for_node("contact_changes")["tenant_id"] == CONTOSO_TENANT_ID).any()
