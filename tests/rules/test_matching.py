import json

import pandas as pd
import pytest

from halo_sync_pipeline.rules.matching import (
    match_by_contact_email_domain,
    match_by_default_domain_website,
    match_by_name,
    match_by_tenant_id,
    match_by_verified_domain_website,
    match_companies,
    plan_company_update,
)
from halo_sync_pipeline.schemas.plan import CompanyMappingsSchema
from halo_sync_pipeline.settings import SyncSettings
from tests.rules import frames as f

TENANT = {"tenant_id": "t1", "display_name": "Contoso Ltd", "default_domain": "contoso.com"}


def _match(companies, tenants=None, domains=None, mappings=None, contacts=None, settings=SyncSettings()):
    out = match_companies(
        tenants if tenants is not None else f.tenants(TENANT),
        domains if domains is not None else f.domains(),
        companies,
        mappings if mappings is not None else f.tenant_mappings(),
        contacts if contacts is not None else f.contacts(),
        settings,
    )
    CompanyMappingsSchema.validate(out, lazy=True)
    return out


def _row(out, tenant_id="t1"):
    return out.set_index("tenant_id").loc[tenant_id]


def test_rule1_tenant_id_mapping_wins_over_name():
    companies = f.companies({"company_id": 1, "name": "Other"}, {"company_id": 2, "name": "Contoso Ltd"})
    mappings = f.tenant_mappings(
        {"tenant_id": "t1", "tenant_name": "Contoso", "company_id": 1, "company_name": "Other"}
    )
    row = _row(_match(companies, mappings=mappings))
    assert (row["method"], row["company_id"], row["company_name"]) == ("tenant_id", 1, "Other")
    assert "Halo Azure AD mapping of tenant t1" in row["evidence"]
    assert pd.isna(row["company_update"])  # already in the company's tenant list


def test_mapping_to_inactive_company_stops_there():
    # Never falls through to a sister company of the same name: the Halo mapping is explicit.
    companies = f.companies(
        {"company_id": 1, "name": "Old", "inactive": True}, {"company_id": 2, "name": "contoso  LTD"}
    )
    mappings = f.tenant_mappings({"tenant_id": "t1", "tenant_name": "Contoso", "company_id": 1, "company_name": "Old"})
    assert match_by_tenant_id(f.tenants(TENANT), mappings, companies).empty
    row = _row(_match(companies, mappings=mappings))
    assert (row["method"], row["reason"], pd.isna(row["company_id"])) == ("unmatched", "mapped_company_inactive", True)
    assert 'inactive company 1 "Old"' in row["evidence"]
    assert pd.isna(row["company_update"])


def test_mapping_to_an_inactive_and_an_active_company_uses_the_active_one():
    companies = f.companies({"company_id": 1, "name": "Old", "inactive": True}, {"company_id": 2, "name": "New"})
    mappings = f.tenant_mappings(
        {"tenant_id": "t1", "tenant_name": "C", "company_id": 1},
        {"tenant_id": "t1", "tenant_name": "C", "company_id": 2},
    )
    row = _row(_match(companies, mappings=mappings))
    assert (row["method"], row["company_id"]) == ("tenant_id", 2)


def test_quarantined_mapping_is_ignored():
    companies = f.companies({"company_id": 1, "name": "Other"}, {"company_id": 2, "name": "Contoso Ltd"})
    mappings = f.tenant_mappings(
        {"tenant_id": "t1", "company_id": 1, "quarantine": 'tenant id "t1" is not a GUID'},
    )
    row = _row(_match(companies, mappings=mappings))
    assert (row["method"], row["company_id"]) == ("name", 2)


def test_tenant_matched_to_quarantined_company_is_left_unmatched():
    companies = f.companies({"company_id": 2, "name": "Contoso Ltd", "quarantine": "id listed 2 times by Halo"})
    row = _row(_match(companies))
    assert (row["method"], row["reason"], pd.isna(row["company_update"])) == ("unmatched", "company_quarantined", True)
    assert "company 2 is quarantined (id listed 2 times by Halo)" in row["evidence"]


# ------------------------------------------------------------ conflicts


def test_company_mapped_to_a_tenant_not_in_the_run_is_a_conflict_for_another():
    # Tenant t-gone's contract ended; Halo still maps it to company 1. t1 reaching company 1 by name is a conflict.
    companies = f.companies({"company_id": 1, "name": "Contoso Ltd"})
    mappings = f.tenant_mappings({"tenant_id": "t-gone", "tenant_name": "Contoso (old)", "company_id": 1})
    row = _row(_match(companies, mappings=mappings))
    assert (row["method"], row["company_id"], pd.isna(row["company_update"])) == ("conflict", 1, True)
    assert row["candidates"] == 'tenant t-gone "Contoso (old)" (Halo Azure AD mapping)'
    assert 'belongs to tenant t-gone "Contoso (old)"' in row["evidence"] and "by rule name" in row["evidence"]


def test_company_mapped_to_a_tenant_in_the_run_is_a_conflict_for_another():
    tenants = f.tenants(TENANT, {"tenant_id": "t2", "display_name": "Owner", "default_domain": "o.com"})
    companies = f.companies({"company_id": 1, "name": "Contoso Ltd"})
    mappings = f.tenant_mappings({"tenant_id": "t2", "tenant_name": "Owner", "company_id": 1})
    out = _match(companies, tenants=tenants, mappings=mappings)
    assert (_row(out, "t2")["method"], _row(out, "t1")["method"]) == ("tenant_id", "conflict")


def test_two_unmapped_tenants_on_one_company_are_both_conflicts():
    tenants = f.tenants(TENANT, {"tenant_id": "t2", "display_name": "Other", "default_domain": "contoso.net"})
    companies = f.companies({"company_id": 1, "name": "Contoso Ltd", "website": "contoso.net"})
    out = _match(companies, tenants=tenants)
    assert out["method"].tolist() == ["conflict", "conflict"]
    assert out["company_update"].isna().all()
    assert 'tenant t2 "Other" (by default_domain_website)' in _row(out, "t1")["candidates"]


def test_several_tenants_mapped_to_one_company_by_halo_stay_allowed():
    tenants = f.tenants(TENANT, {"tenant_id": "t2", "display_name": "Other", "default_domain": "o.com"})
    companies = f.companies({"company_id": 1, "name": "Contoso Ltd"})
    mappings = f.tenant_mappings({"tenant_id": "t1", "company_id": 1}, {"tenant_id": "t2", "company_id": 1})
    assert _match(companies, tenants=tenants, mappings=mappings)["method"].tolist() == ["tenant_id", "tenant_id"]


def test_rule1_ambiguous_falls_through_to_name_and_notes_it():
    companies = f.companies(
        {"company_id": 1, "name": "A"}, {"company_id": 2, "name": "B"}, {"company_id": 3, "name": "Contoso Ltd"}
    )
    mappings = f.tenant_mappings(
        {"tenant_id": "t1", "tenant_name": "C", "company_id": 1, "company_name": "A"},
        {"tenant_id": "t1", "tenant_name": "C", "company_id": 2, "company_name": "B"},
    )
    row = _row(_match(companies, mappings=mappings))
    assert (row["method"], row["company_id"]) == ("name", 3)
    assert "earlier rule tenant_id found several: 1:A; 2:B" in row["evidence"]


def test_rule2_name_case_trim_and_whitespace_insensitive():
    found = match_by_name(f.tenants(TENANT), f.companies({"company_id": 7, "name": "  contoso   LTD "}))
    assert found[["tenant_id", "company_id"]].values.tolist() == [["t1", 7]]
    assert (
        found["evidence"].iloc[0]
        == 'company name "  contoso   LTD " = tenant name "Contoso Ltd" (case and spacing ignored)'
    )


def test_rule2_two_companies_same_name_is_ambiguous_with_candidates():
    companies = f.companies(
        {"company_id": 4, "name": "Contoso Ltd"},
        {"company_id": 3, "name": "CONTOSO LTD"},
        {"company_id": 5, "name": "Contoso Ltd", "inactive": True},
    )
    row = _row(_match(companies))
    assert (row["method"], row["reason"]) == ("unmatched", "ambiguous")
    assert row["candidates"] == "3:CONTOSO LTD; 4:Contoso Ltd"  # inactive company 5 ignored
    assert pd.isna(row["company_id"]) and pd.isna(row["company_update"])
    assert row["evidence"].startswith("rule name found several active companies")


def test_name_tie_broken_by_later_website_rule():
    companies = f.companies(
        {"company_id": 4, "name": "Contoso Ltd", "website": "https://www.contoso.com/about"},
        {"company_id": 3, "name": "Contoso Ltd", "website": "contoso.net"},
    )
    row = _row(_match(companies))
    assert (row["method"], row["company_id"]) == ("default_domain_website", 4)


def test_rule3_default_domain_website_evidence():
    companies = f.companies({"company_id": 9, "name": "Something", "website": "https://www.contoso.com/about"})
    found = match_by_default_domain_website(f.tenants(TENANT), companies)
    assert (
        found["evidence"].iloc[0]
        == 'website "https://www.contoso.com/about" → host contoso.com = default domain contoso.com'
    )
    assert _row(_match(companies))["method"] == "default_domain_website"


def test_seed_www_regex_bug_does_not_match_wrong_company():
    # Seed: `wwwidget.com` became `idget.com` and matched a tenant whose domain is idget.com.
    tenants = f.tenants({"tenant_id": "t1", "display_name": "Idget", "default_domain": "idget.com"})
    companies = f.companies({"company_id": 1, "name": "W Widgets", "website": "http://wwwidget.com"})
    assert _row(_match(companies, tenants=tenants))["reason"] == "no_candidate"


def test_rule4_verified_domain_website():
    domains = f.domains(
        {"tenant_id": "t1", "domain": "contoso.co.uk"},
        {"tenant_id": "t1", "domain": "unverified.com", "is_verified": False},
    )
    companies = f.companies(
        {"company_id": 2, "name": "X", "website": "contoso.co.uk:443/"},
        {"company_id": 3, "name": "Y", "website": "unverified.com"},
    )
    found = match_by_verified_domain_website(domains, companies)
    assert found["company_id"].tolist() == [2]
    row = _row(_match(companies, domains=domains))
    assert (row["method"], row["company_id"]) == ("verified_domain_website", 2)
    assert "= verified domain contoso.co.uk" in row["evidence"]


def test_rule5_contact_email_domain_exactly_one_company():
    domains = f.domains({"tenant_id": "t1", "domain": "contoso.com"}, {"tenant_id": "t1", "domain": "contoso.de"})
    companies = f.companies(
        {"company_id": 1, "name": "X"}, {"company_id": 2, "name": "Y"}, {"company_id": 3, "name": "Z", "inactive": True}
    )
    contacts = f.contacts(
        {"contact_id": 1, "company_id": 1, "email": "a@contoso.com"},
        {"contact_id": 2, "company_id": 1, "email": "b@contoso.de"},
        {"contact_id": 3, "company_id": 1, "email": "c@contoso.com"},
        {"contact_id": 4, "company_id": 2, "email": "old@contoso.com", "inactive": True},
        {"contact_id": 5, "company_id": 3, "email": "d@contoso.com"},
    )
    found = match_by_contact_email_domain(domains, contacts, companies)
    assert found["company_id"].tolist() == [1]
    assert found["evidence"].iloc[0].endswith("2 × @contoso.com, 1 × @contoso.de")
    row = _row(_match(companies, domains=domains, contacts=contacts))
    assert (row["method"], row["company_id"]) == ("contact_email_domain", 1)


def test_rule5_two_companies_is_ambiguous():
    domains = f.domains({"tenant_id": "t1", "domain": "contoso.com"})
    companies = f.companies({"company_id": 1, "name": "X"}, {"company_id": 2, "name": "Y"})
    contacts = f.contacts(
        {"contact_id": 1, "company_id": 1, "email": "a@contoso.com"},
        {"contact_id": 2, "company_id": 2, "email": "b@contoso.com"},
    )
    row = _row(_match(companies, domains=domains, contacts=contacts))
    assert (row["reason"], row["candidates"]) == ("ambiguous", "1:X; 2:Y")


def test_no_candidate():
    row = _row(_match(f.companies({"company_id": 1, "name": "Fabrikam", "website": "fabrikam.com"})))
    assert (row["method"], row["reason"]) == ("unmatched", "no_candidate")
    assert pd.isna(row["candidates"]) and row["evidence"].startswith("no active company matched")


@pytest.mark.parametrize("entry", ["  contoso LTD ", "T1"])
def test_excluded_tenant_by_name_or_id(entry):
    companies = f.companies({"company_id": 1, "name": "Contoso Ltd"})
    row = _row(_match(companies, settings=SyncSettings(exclude_tenants=(entry,))))
    assert (row["method"], pd.isna(row["company_id"]), pd.isna(row["company_update"])) == ("excluded", True, True)
    assert row["evidence"] == f'tenant excluded by settings.exclude_tenants entry "{entry}"'


def test_failed_tenant_still_matched_but_marked():
    tenants = f.tenants({**TENANT, "status": "failed", "error": "403"})
    row = _row(_match(f.companies({"company_id": 1, "name": "Contoso Ltd"}), tenants=tenants))
    assert (row["users_status"], row["method"]) == ("failed", "name")


def test_company_update_plans_the_new_entry():
    # The apply reads the company's current entries and sends them all plus this one (merge_tenant_entries).
    row = _row(_match(f.companies({"company_id": 1, "name": "Contoso Ltd"})))
    assert json.loads(row["company_update"]) == {
        "id": 1,
        "azure_tenants": [{"azure_tenant_id": "t1", "azure_tenant_name": "Contoso Ltd"}],
    }


def test_no_company_update_for_a_tenant_whose_users_failed():
    # A tenant whose users failed to load gets no writes at all, its tenant-id write-back included.
    tenants = f.tenants({**TENANT, "status": "failed", "error": "401 Authorization_IdentityNotFound"})
    row = _row(_match(f.companies({"company_id": 1, "name": "Contoso Ltd"}), tenants=tenants))
    assert (row["method"], pd.isna(row["company_update"])) == ("name", True)


def test_no_company_update_when_setting_off_or_unmatched():
    # Seed bug: an unmatched tenant reached the write with a null company.
    companies = f.companies({"company_id": 1, "name": "Contoso Ltd"})
    assert _match(companies, settings=SyncSettings(set_halo_tenant_ids=False))["company_update"].isna().all()
    unmatched = _match(f.companies({"company_id": 1, "name": "Else"}))
    assert unmatched["company_update"].isna().all()
    planted = unmatched.assign(method=pd.Series(["unmatched"], dtype="string"))
    assert plan_company_update(planted, f.tenant_mappings(), SyncSettings()).isna().all()


def test_one_row_per_tenant_and_schema_on_empty_inputs():
    out = _match(f.companies(), tenants=f.tenants())
    assert out.empty
    tenants = f.tenants(TENANT, {"tenant_id": "t2", "display_name": "B", "default_domain": "b.com"})
    out = _match(f.companies({"company_id": 1, "name": "b"}), tenants=tenants)
    assert out["tenant_id"].tolist() == ["t1", "t2"]


def test_a_tenant_or_company_listed_twice_is_refused_by_name_not_matched():
    # Their schema checks fail on such frames and block the plan in that run; a later run that materialises
    # only company_mappings reads the stored frames again, and used to fail with pandas' "Reindexing only
    # valid with uniquely valued Index objects".
    companies = f.companies({"company_id": 1, "name": "Contoso Ltd"}, {"company_id": 2, "name": "Fabrikam"})
    twice = f.tenants(TENANT, {**TENANT, "display_name": "Contoso again"})
    with pytest.raises(ValueError, match=r"m365_tenants lists tenant_id 't1' more than once"):
        _match(companies, tenants=twice)
    companies_twice = f.companies({"company_id": 1, "name": "Contoso Ltd"}, {"company_id": 1, "name": "Other"})
    with pytest.raises(ValueError, match=r"halo_companies lists company_id '1' more than once"):
        _match(companies_twice)
