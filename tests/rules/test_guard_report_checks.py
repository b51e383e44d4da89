import json

import pandas as pd
import pytest

from halo_sync_pipeline.rules.matching import match_companies
from halo_sync_pipeline.rules.plan_checks import (
    company_mapping_problems,
    company_mapping_warnings,
    contact_change_problems,
    contact_change_warnings,
)
from halo_sync_pipeline.rules.report import inactive_report, neutralise_spreadsheet_cell, write_inactive_report
from halo_sync_pipeline.schemas.plan import InactiveReportSchema
from halo_sync_pipeline.settings import SyncSettings
from tests.rules import frames as f
from tests.rules.estate import contact, mappings, plan, user

# ------------------------------------------------------------ guard


def _leavers(n_leavers: int, n_kept: int) -> list[dict]:
    leavers = [contact(100 + i, email=f"left{i}@contoso.com") for i in range(n_leavers)]
    kept = [contact(500 + i, email=f"x{i}@gmail.com") for i in range(n_kept)]
    return leavers + kept


def test_guard_not_tripped_at_threshold():
    # 10 deactivations, 20 active contacts: limit max(10, 0.5 × 20) = 10 → not above.
    changes = plan([], _leavers(10, 10))
    assert len(changes) == 10 and not changes["held"].any()


def test_guard_holds_deactivations_above_threshold():
    # 11 deactivations, 20 active contacts: 11 > 10 → all held, reason kept.
    changes = plan([], _leavers(11, 9))
    assert changes["held"].all() and (changes["reason"] == "gone_from_m365").all()
    assert (
        changes["hold_reason"]
        == (
            "guard: 11 deactivations > max(10, 0.5 × 20 active contacts); add the tenant to allow_mass_deactivation to release"
        )
    ).all()
    # Held deactivations stay in the report, marked with why, for review.
    report = inactive_report(changes)
    assert len(report) == 11 and (report["Held"] == "yes").all()
    assert report["Hold reason"].str.startswith("guard: 11 deactivations").all()


def test_guard_does_not_count_the_general_user():
    # 11 deactivations; 20 active contacts of which one is the General User: 19 counted, limit still 10 → held,
    # and the hold reason says 19.
    leavers = _leavers(11, 8) + [contact(999, name="General User")]
    changes = plan([], leavers)
    assert changes["hold_reason"].iloc[0].startswith("guard: 11 deactivations > max(10, 0.5 × 19 active contacts)")


def test_guard_uses_fraction_of_active_contacts():
    # 11 deactivations, 30 active contacts: limit 15 → applied.
    assert not plan([], _leavers(11, 19))["held"].any()


@pytest.mark.parametrize("allowed", ["T1", " contoso "])
def test_guard_allow_list_by_id_or_name(allowed):
    changes = plan([], _leavers(11, 9), SyncSettings(allow_mass_deactivation=(allowed,)))
    assert len(changes) == 11 and not changes["held"].any()


def test_guard_leaves_other_actions_alone():
    changes = plan([user("u1", "ann")], _leavers(11, 9))
    assert not changes.loc[changes["action"] == "create", "held"].any()


# ------------------------------------------------------------ report


def test_inactive_report_rows_and_schema():
    changes = plan(
        [user("u1", "ann", licence_count=0)],
        [
            contact(5, name="Ann", email="ann@contoso.com", mobilenumber="07", phonenumber="01"),
            contact(6, name="Nobody"),
        ],
    )
    report = inactive_report(changes)
    InactiveReportSchema.validate(report)
    assert report.fillna("").values.tolist() == [
        ["Contoso", "Ann", "ann@contoso.com", "07", "01", "unlicensed", "Contoso", "", ""],
        ["Contoso", "Nobody", "", "", "", "no_contact_details", "Contoso", "", ""],
    ]


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=HYPERLINK(1)", "'=HYPERLINK(1)"),
        ("+44 1", "'+44 1"),
        ("-2", "'-2"),
        ("@SUM", "'@SUM"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("Ann", "Ann"),
        (pd.NA, ""),
        (None, ""),
    ],
)
def test_neutralise_spreadsheet_cell(value, cell):
    assert neutralise_spreadsheet_cell(value) == cell


def _report(name: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            c: [v]
            for c, v in zip(
                ["Company", "Name", "Email", "Mobile", "Phone", "Reason", "Tenant"],
                ["Contoso", name, "a@contoso.com", None, "+44 1", "gone_from_m365", "Ünïcode"],
            )
        }
    ).astype("string")


def test_write_inactive_report_neutralised_utf8_in_new_folder(tmp_path):
    path = write_inactive_report(_report("=cmd|' /C calc'!A0"), tmp_path / "deep" / "inactive.csv")
    text = path.read_text(encoding="utf-8")
    assert text.splitlines() == [
        "Company,Name,Email,Mobile,Phone,Reason,Tenant",
        "Contoso,'=cmd|' /C calc'!A0,a@contoso.com,,'+44 1,gone_from_m365,Ünïcode",
    ]
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind


def test_write_inactive_report_crash_keeps_old_file(tmp_path, monkeypatch):
    path = write_inactive_report(_report("Old"), tmp_path / "inactive.csv")
    before = path.read_text(encoding="utf-8")

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", crash)
    with pytest.raises(OSError, match="disk full"):
        write_inactive_report(_report("New"), path)
    assert path.read_text(encoding="utf-8") == before
    assert list(tmp_path.iterdir()) == [path]


# ------------------------------------------------------------ plan checks


def _estate():
    tenants = f.tenants(
        {"tenant_id": "t1", "display_name": "Contoso", "default_domain": "contoso.com"},
        {"tenant_id": "t2", "display_name": "Nobody", "default_domain": "nobody.com"},
    )
    companies = f.companies({"company_id": 1, "name": "Contoso"}, {"company_id": 2, "name": "Gone", "inactive": True})
    out = match_companies(tenants, f.domains(), companies, f.tenant_mappings(), f.contacts(), SyncSettings())
    return tenants, companies, out


def test_company_mapping_checks_pass_on_real_plan():
    tenants, companies, out = _estate()
    assert company_mapping_problems(out, tenants, companies).empty
    warnings = company_mapping_warnings(out)
    assert warnings[["tenant_id", "check"]].values.tolist() == [["t2", "unmatched_no_candidate"]]


def test_company_mapping_problems_catch_planted_violations():
    tenants, companies, out = _estate()
    planted = out.copy()
    planted.loc[0, "company_id"] = 99  # company that does not exist
    planted.loc[1, "company_update"] = json.dumps({"id": None, "azure_tenants": []})  # seed: null company write
    planted = pd.concat([planted, planted.iloc[[0]]], ignore_index=True)
    problems = company_mapping_problems(planted, tenants, companies)
    assert set(zip(problems["tenant_id"], problems["check"])) == {
        ("t1", "duplicate_tenant_row"),
        ("t1", "company_missing"),
        ("t2", "bad_company_update"),
        ("t1", "bad_company_update"),  # its write-back still targets company 1
        ("t1", "several_write_backs_for_company"),  # the duplicated row writes back twice
    }
    inactive = out.assign(
        company_id=pd.array([2, pd.NA], dtype="Int64"), company_update=pd.Series([pd.NA] * 2, dtype="string")
    )
    assert company_mapping_problems(inactive, tenants, companies)["check"].tolist() == ["company_inactive"]
    assert company_mapping_problems(out.iloc[[0]], tenants, companies)["check"].tolist() == [
        "tenant_without_mapping_row"
    ]


def test_two_write_backs_to_one_company_block_the_run():
    """Each write-back sends the company's tenant list as read before any write: the second would drop the first."""
    tenants, companies, out = _estate()
    both = out.copy()
    both.loc[1, ["company_id", "company_name", "method", "reason"]] = [1, "Contoso", "name", pd.NA]
    both.loc[1, "company_update"] = json.dumps(
        {"id": 1, "azure_tenants": [{"azure_tenant_id": "t2", "azure_tenant_name": "Nobody"}]}
    )
    problems = company_mapping_problems(both, tenants, companies)
    assert sorted(problems.loc[problems["check"] == "several_write_backs_for_company", "tenant_id"]) == ["t1", "t2"]


def test_company_mapping_warning_lists_conflicts_with_both_tenants_and_evidence():
    tenants = f.tenants(
        {"tenant_id": "t1", "display_name": "Contoso", "default_domain": "contoso.com"},
        {"tenant_id": "t2", "display_name": "x", "default_domain": "contoso.com"},
    )
    companies = f.companies({"company_id": 1, "name": "Contoso", "website": "contoso.com"})
    out = match_companies(tenants, f.domains(), companies, f.tenant_mappings(), f.contacts(), SyncSettings())
    warnings = company_mapping_warnings(out)
    assert warnings["check"].tolist() == ["conflict"] * 2
    assert warnings["tenant_name"].tolist() == ["Contoso", "x"]
    # Each names the other tenant and the evidence of both matches.
    assert 'tenant t2 "x" (by default_domain_website)' in warnings["detail"].iloc[0]
    assert 'tenant t1 "Contoso" (by name)' in warnings["detail"].iloc[1]
    assert 'company name "Contoso" = tenant name "Contoso"' in warnings["detail"].iloc[0]


def _changes():
    contacts = [contact(5, email="keep@contoso.com", keep_active="2"), contact(6, email="left@contoso.com")]
    changes = plan([user("u1", "ann"), user("u2", "bob")], contacts)
    return changes, f.contacts(*contacts)


def test_contact_change_checks_pass_on_real_plan():
    changes, contacts = _changes()
    assert contact_change_problems(changes, mappings(), contacts, SyncSettings()).empty
    assert contact_change_warnings(changes).empty


def test_contact_change_problems_catch_planted_violations():
    changes, contacts = _changes()
    creates = changes.loc[changes["action"] == "create"]
    twin = creates.iloc[[0]].assign(user_id="u9")  # a second create for one (company, email)
    keep = changes.loc[changes["action"] == "deactivate"].assign(
        contact_id=pd.array([5], dtype="Int64"), body='{"id": 5, "inactive": true}'
    )
    bad_body = creates.iloc[[1]].assign(body=json.dumps({"companyID": 1, "lastName": "x", "client_id": "one"}))
    planted = pd.concat([changes, twin, keep, bad_body], ignore_index=True)
    problems = contact_change_problems(planted, mappings(), contacts, SyncSettings())
    checks = set(problems["check"])
    assert {"duplicate_create", "keep_active_contact_deactivated", "invalid_body"} <= checks
    detail = problems.loc[problems["check"] == "invalid_body", "detail"].iloc[0]
    assert "companyID" in detail and "lastName" in detail and "client_id" in detail


def test_contact_change_problems_flag_actions_for_failed_tenant():
    changes, contacts = _changes()
    problems = contact_change_problems(changes, mappings(users_status="failed"), contacts, SyncSettings())
    assert set(problems["check"]) == {"tenant_not_actionable"} and len(problems) == len(changes)


def test_contact_change_warnings_list_held_tenants():
    changes = plan([user("u1", "ann")], [contact(5, email="ann@contoso.com"), contact(6, email="ann@contoso.com")])
    warnings = contact_change_warnings(changes)
    assert warnings[["tenant_id", "check"]].values.tolist() == [["t1", "held_ambiguous"]]
    assert (
        warnings["detail"].iloc[0].startswith("2 ambiguous held: ambiguous: contacts 5, 6 all carry addresses of user")
    )
