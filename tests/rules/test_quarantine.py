"""Odd Halo records are noted, treated conservatively, and listed; none stops the frame."""

import pandas as pd

from halo_sync_pipeline.rules.normalise import keep_active_equals, normalise_guid
from halo_sync_pipeline.rules.quarantine import (
    quarantine_companies,
    quarantine_contacts,
    quarantine_sites,
    quarantine_tenant_mappings,
    quarantined_records,
)
from halo_sync_pipeline.schemas import sources
from tests.rules import frames as f

GUID = "5f1c0000-0000-4000-8000-0000000000aa"


def test_normalise_guid_accepts_braces_and_case_only():
    assert normalise_guid("{5F1C0000-0000-4000-8000-0000000000AA}") == GUID
    assert normalise_guid(f" {GUID} ") == GUID
    assert normalise_guid("n/a") is None and normalise_guid("") is None and normalise_guid(None) is None
    assert normalise_guid("{not-a-guid}") is None


def test_keep_active_equals_like_a_person():
    values = pd.Series(["2", " 2 ", "02", "2.0", 2.0, "3", "two", None], dtype=object)
    assert keep_active_equals(values, "2").tolist() == [True, True, True, True, True, False, False, False]
    assert keep_active_equals(pd.Series([" y", "Y", "yes", pd.NA], dtype="string"), "Y").tolist() == [
        True,
        True,
        False,
        False,
    ]


def test_contacts_non_guid_azureoid_cleared_braces_normalised_names_and_duplicates():
    contacts = f.contacts(
        {"contact_id": 1, "company_id": 1, "name": "A", "azureoid": "n/a", "email": "a@x.com"},
        {"contact_id": 2, "company_id": 1, "name": "B", "azureoid": "{5F1C0000-0000-4000-8000-0000000000AA}"},
        {"contact_id": 3, "company_id": 1, "name": None},
        {"contact_id": 4, "company_id": 1, "name": "D"},
        {"contact_id": 4, "company_id": 1, "name": "D (copy)"},
    )
    out = quarantine_contacts(contacts)
    assert out["contact_id"].tolist() == [1, 2, 3, 4]
    assert pd.isna(out["azureoid"].iloc[0]) and out["azureoid"].iloc[1] == GUID
    assert out["quarantine"].iloc[0] == 'azureoid "n/a" is not a GUID'
    assert pd.isna(out["quarantine"].iloc[1])  # braces are just Halo's spelling of a GUID
    assert out["quarantine"].iloc[2] == "name missing"
    assert out["quarantine"].iloc[3] == "id listed 2 times by Halo" and out["name"].iloc[3] == "D"
    assert out["email"].iloc[0] == "a@x.com"  # its address still counts
    assert sources.validation_failures(sources.HaloContactsSchema, out) is None


def test_several_invoice_sites_lowest_id_is_main_and_the_rest_noted():
    sites = f.sites(
        {"site_id": 41, "company_id": 1, "name": "B", "is_main": True},
        {"site_id": 40, "company_id": 1, "name": "A", "is_main": True},
        {"site_id": 50, "company_id": 2, "name": "C", "is_main": True},
    )
    assert sources.validation_failures(sources.HaloSitesSchema, sites) is not None  # blocking before quarantine
    out = quarantine_sites(sites).set_index("site_id")
    assert out["is_main"].to_dict() == {41: False, 40: True, 50: True}
    assert (
        out.loc[41, "quarantine"]
        == "company 1 has several invoice sites (40, 41); site 40 (lowest id) is its main site"
    )
    assert out["quarantine"].isna().sum() == 2
    assert sources.validation_failures(sources.HaloSitesSchema, out.reset_index()) is None


def test_companies_duplicates_and_missing_names():
    out = quarantine_companies(
        f.companies({"company_id": 1, "name": None}, {"company_id": 2, "name": "X"}, {"company_id": 2, "name": "Y"})
    )
    assert out["company_id"].tolist() == [1, 2]
    assert out["quarantine"].tolist() == ["name missing", "id listed 2 times by Halo"]
    assert sources.validation_failures(sources.HaloCompaniesSchema, out) is None


def test_tenant_mappings_non_guid_quarantined_and_repeats_dropped():
    mappings = f.tenant_mappings(
        {"tenant_id": "not-a-guid", "company_id": 1},
        {"tenant_id": GUID.upper(), "company_id": 2},
        {"tenant_id": GUID, "company_id": 2},
    )
    assert sources.validation_failures(sources.HaloTenantMappingsSchema, mappings) is not None
    out = quarantine_tenant_mappings(mappings)
    assert out["tenant_id"].tolist() == ["not-a-guid", GUID]
    assert out["quarantine"].iloc[0] == 'tenant id "not-a-guid" is not a GUID' and pd.isna(out["quarantine"].iloc[1])
    assert sources.validation_failures(sources.HaloTenantMappingsSchema, out) is None


def test_quarantined_records_lists_every_kind_with_its_treatment():
    found = quarantined_records(
        quarantine_companies(f.companies({"company_id": 1, "name": None})),
        quarantine_contacts(f.contacts({"contact_id": 7, "company_id": 1, "name": "A", "azureoid": "n/a"})),
        quarantine_sites(f.sites({"site_id": 3, "company_id": 1, "name": None})),
        quarantine_tenant_mappings(f.tenant_mappings({"tenant_id": "bad", "company_id": 1})),
    )
    assert found[["kind", "record_id"]].values.tolist() == [
        ["company", "1"],
        ["contact", "7"],
        ["site", "3"],
        ["tenant mapping", "tenant bad → company 1"],
    ]
    assert found["treatment"].str.len().gt(10).all() and found["problem"].notna().all()
