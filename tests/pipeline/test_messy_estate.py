"""A live apply on a generated 200-tenant estate with every messy situation planted: no wrong writes.

No new pair of active contacts sharing an azureoid, no contact acted on twice, every planted situation ends
the way the rules say, and a second run writes nothing."""

from __future__ import annotations

from collections import Counter

import dagster as dg
import pandas as pd

from halo_sync_pipeline.sandbox.generator import generate_estate
from halo_sync_pipeline.schemas.plan import MATCHED_METHODS
from tests.pipeline.harness import LIVE, admin, halo_writes, run_job


def _mkdir(path):
    path.mkdir(parents=True)
    return path


def _active_oids(users: list[dict]) -> Counter:
    return Counter(str(u["azureoid"]).lower() for u in users if u.get("azureoid") and not u.get("inactive"))


def test_live_apply_on_a_messy_200_tenant_estate_writes_nothing_wrong(sandbox_factory, tmp_path, monkeypatch):
    estate = generate_estate(200, 6, seed=11)
    planted = estate["_generator"]["situations"]
    sandbox = sandbox_factory(estate, graph_rate=0)
    with dg.instance_for_test(temp_dir=str(_mkdir(tmp_path / "first"))) as instance:
        result = run_job(sandbox, instance, monkeypatch, run_config=LIVE)
        assert result.success
        mappings: pd.DataFrame = result.output_for_node("company_mappings")
        applied: pd.DataFrame = result.output_for_node("applied_changes")

    method = mappings.set_index("tenant_id")["method"]
    reason = mappings.set_index("tenant_id")["reason"]
    assert {method[t.lower()] for t in planted["conflict_mapped_elsewhere"] + planted["conflict_two_unmapped"]} == {
        "conflict"
    }
    assert {reason[t.lower()] for t in planted["mapped_company_inactive"]} == {"mapped_company_inactive"}
    failed = set(mappings.loc[mappings["users_status"] == "failed", "tenant_id"])
    expected_failed = {t.lower() for t in planted["licences_omitted"] + planted["not_consented_sam"]}
    assert expected_failed <= failed, (
        sorted(expected_failed),
        sorted(failed),
        mappings.loc[mappings["tenant_id"].isin(expected_failed), ["tenant_id", "users_status", "method"]],
    )

    written = applied.loc[applied["outcome"] == "applied"]
    # Nothing for a conflict or a tenant that failed to load, its write-back included.
    blocked = set(
        mappings.loc[(mappings["method"] == "conflict") | (mappings["users_status"] == "failed"), "tenant_id"]
    )
    assert blocked and written["tenant_id"].isin(blocked).sum() == 0
    # No contact acted on twice.
    on_contacts = written.loc[written["contact_id"].notna(), "contact_id"]
    assert not on_contacts.duplicated().any()
    # Quarantined and foreign-owned contacts are never written.
    never = {int(i) for i in planted["contact_oid_not_guid"] + planted["contact_owned_by_other_tenant"]}
    assert never and never.isdisjoint(set(on_contacts.astype(int)))
    # People with several addresses are paired, not created again.
    paired_users = set(written.loc[written["action"] == "pair", "user_id"])
    tenant_of = {
        u["id"].lower(): t["customerId"].lower() for t in estate["m365"]["tenants"] for u in t.get("users", [])
    }
    actionable = set(
        mappings.loc[mappings["method"].isin(MATCHED_METHODS) & (mappings["users_status"] == "loaded"), "tenant_id"]
    )
    want_paired = {
        u.lower()
        for u in planted["upn_differs_from_mail"] + planted["pair_by_proxy_alias"]
        if tenant_of[u.lower()] in actionable
    }
    assert len(want_paired) > 10
    missing = want_paired - paired_users
    assert not missing, applied.loc[applied["user_id"].isin(missing), ["action", "outcome", "hold_reason"]].to_dict(
        "records"
    )
    moved = applied.loc[
        (applied["action"] == "create") & applied["user_id"].isin([u.lower() for u in planted["moved_person"]])
    ]
    assert len(moved) and (moved["outcome"] == "held").all()
    assert moved["hold_reason"].str.startswith("moved person: active contact").all()

    final = admin(sandbox, "estate")["halo"]
    # The tenant-id write-back keeps every entry the company had (here one of another connection), as it was.
    clients_before = {c["id"]: c for c in estate["halo"]["clients"]}
    clients_after = {c["id"]: c for c in final["clients"]}
    kept = mappings.loc[mappings["tenant_id"].isin([t.lower() for t in planted["write_back_keeps_entries"]])]
    kept = kept.loc[kept["users_status"] == "loaded"]
    assert len(kept)
    for tenant_id, company_id in zip(kept["tenant_id"], kept["company_id"]):
        before_entries = [
            (e["azure_tenant_id"].lower(), e.get("details_id"))
            for e in clients_before[int(company_id)]["azure_tenants"]
        ]
        after_entries = [
            (e["azure_tenant_id"].lower(), e["details_id"]) for e in clients_after[int(company_id)]["azure_tenants"]
        ]
        assert after_entries == [*before_entries, (tenant_id, 1)]
    shared_before = {oid for oid, n in _active_oids(estate["halo"]["users"]).items() if n > 1}
    shared_after = {oid for oid, n in _active_oids(final["users"]).items() if n > 1}
    assert shared_after <= shared_before
    # Creates never reuse an email already in their company.
    created = written.loc[written["action"] == "create"]
    assert len(created) > 50 and not created.duplicated(["company_id", "email"]).any()
    # M365 text was cleaned before it reached Halo.
    names = [u.get("name") or "" for u in final["users"]]
    assert max(len(n) for n in names) <= 255 and not any("\x00" in n or "\u202e" in n for n in names)

    before = halo_writes(sandbox)
    with dg.instance_for_test(temp_dir=str(_mkdir(tmp_path / "second"))) as instance:
        again = run_job(sandbox, instance, monkeypatch, run_config=LIVE)
        assert again.success
        second: pd.DataFrame = again.output_for_node("applied_changes")
    assert (second["outcome"] != "applied").all(), second.loc[second["outcome"] == "applied", ["action", "evidence"]]
    assert halo_writes(sandbox) == before
