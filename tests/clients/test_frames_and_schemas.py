"""Frame builders (normalising, typing, naming a bad record) and the source schemas' failure rows."""

from __future__ import annotations

import pandas as pd
import pytest

from halo_sync_pipeline.clients import TenantLoad, TenantRef, frames
from halo_sync_pipeline.schemas import sources

TENANT = "AAAAAAAA-0000-4000-8000-000000000001"
USER = "BBBBBBBB-0000-4000-8000-000000000001"


def _load(users: list[dict], status: str = "loaded") -> TenantLoad:
    return TenantLoad(
        TenantRef(TENANT, " Contoso ", "fallback.com"),
        status,  # type: ignore[arg-type]
        error=None if status == "loaded" else "Graph GET /v1.0/users answered 403",
        domains=[{"id": " Contoso.COM ", "isVerified": True, "isDefault": True}] if status == "loaded" else [],
        users=users if status == "loaded" else [],
    )


def test_m365_users_are_normalised_and_typed() -> None:
    user = {
        "id": USER, "userPrincipalName": " Alice@Contoso.COM ", "displayName": "Alice", "mail": "ALICE@contoso.com",
        "businessPhones": ["", " +44 1 "], "proxyAddresses": ["SMTP:alice@contoso.com", "smtp:A.Smith@Contoso.com", "sip:alice@x", "smtp:a@contoso.onmicrosoft.com"],
        "assignedLicenses": [{"skuId": "x"}, {"skuId": "y"}], "accountEnabled": False, "userType": "Guest", "jobTitle": "  ",
    }  # fmt: skip
    users = frames.m365_users_frame([_load([user])])
    row = users.iloc[0]
    assert (row["tenant_id"], row["user_id"], row["upn"], row["mail"]) == (
        TENANT.lower(),
        USER.lower(),
        "alice@contoso.com",
        "alice@contoso.com",
    )
    assert row["business_phone"] == "+44 1" and pd.isna(row["job_title"])
    # Every smtp proxy address, primary first, in Graph's order (sip: and others dropped).
    assert row["smtp_aliases"] == "alice@contoso.com;a.smith@contoso.com;a@contoso.onmicrosoft.com"
    assert (row["licence_count"], row["account_enabled"], row["is_guest"]) == (2, False, True)
    assert str(users["licence_count"].dtype) == "Int64" and isinstance(users["upn"].dtype, pd.StringDtype)


@pytest.mark.parametrize(
    ("missing", "required"),
    [("assignedLicenses", ("assignedLicenses",)), ("accountEnabled", ("accountEnabled",)), ("userType", ("userType",))],
)
def test_a_tenant_whose_users_lack_a_property_the_filters_need_fails_alone(missing, required) -> None:
    full = {
        "id": USER,
        "userPrincipalName": "alice@contoso.com",
        "assignedLicenses": [],
        "accountEnabled": True,
        "userType": "Member",
    }
    lacking = {k: v for k, v in full.items() if k != missing}
    other = TenantLoad(
        TenantRef("cccccccc-0000-4000-8000-000000000003", "Fabrikam", "fabrikam.com"),
        "loaded",
        domains=[],
        users=[lacking | {"id": "dddddddd-0000-4000-8000-000000000001"}],
    )
    tenants, _, users = frames.m365_frames([_load([full]), other], required)
    assert tenants["status"].tolist() == ["loaded", "failed"]
    assert f"has no {missing} property" in tenants["error"].iloc[1]
    assert users["tenant_id"].unique().tolist() == [TENANT.lower()]
    # Not required (the filter is off): the tenant loads; an absent licence list is an unknown count, not 0.
    tenants, _, users = frames.m365_frames([other], ())
    assert tenants["status"].tolist() == ["loaded"]
    if missing == "assignedLicenses":
        assert pd.isna(users["licence_count"].iloc[0])
    assert sources.validation_failures(sources.M365UsersSchema, users) is None


def test_m365_tenants_take_the_default_domain_from_loaded_domains_and_keep_failures() -> None:
    failed = TenantLoad(
        TenantRef("cccccccc-0000-4000-8000-000000000001", "Broken", "broken.com"), "failed", error="403 denied"
    )
    tenants = frames.m365_tenants_frame([_load([]), failed])
    assert tenants["default_domain"].tolist() == ["contoso.com", "broken.com"]
    assert tenants["status"].tolist() == ["loaded", "failed"]
    assert tenants["user_count"].tolist()[0] == 0 and pd.isna(tenants["user_count"].tolist()[1])
    assert sources.validation_failures(sources.M365TenantsSchema, tenants) is None
    assert (
        frames.m365_domains_frame([failed]).empty
        and list(frames.m365_domains_frame([failed]).columns) == frames.DOMAIN_COLUMNS
    )


def test_a_tenant_with_malformed_data_fails_alone() -> None:
    good_user = {"id": USER, "userPrincipalName": "alice@contoso.com"}
    bad_user = {
        "id": "BBBBBBBB-0000-4000-8000-000000000002",
        "userPrincipalName": "bob@fabrikam.com",
        "businessPhones": "+44 1",
    }
    good = _load([good_user])
    bad = TenantLoad(TenantRef("cccccccc-0000-4000-8000-000000000002", "Fabrikam", "fabrikam.com"), "loaded",
                     domains=[{"id": "fabrikam.com", "isVerified": True, "isDefault": True}], users=[bad_user])  # fmt: skip
    tenants, domains, users = frames.m365_frames([good, bad])
    assert tenants["status"].tolist() == ["loaded", "failed"]
    assert "businessPhones" in tenants["error"].iloc[1] and "bob@fabrikam.com" in tenants["error"].iloc[1]
    assert users["upn"].tolist() == ["alice@contoso.com"]
    assert set(domains["tenant_id"]) == {TENANT.lower()}
    for schema, frame in ((sources.M365TenantsSchema, tenants), (sources.M365UsersSchema, users)):
        assert sources.validation_failures(schema, frame) is None


def test_halo_records_are_typed_and_a_bad_record_is_named() -> None:
    contacts = frames.halo_contacts_frame(
        [
            {
                "id": "7",
                "client_id": 1,
                "site_id": 0,
                "name": " Ann ",
                "emailaddress": " Ann@X.com",
                "inactive": 1,
                "keep_active": 2,
            }
        ]
    )
    assert contacts.iloc[0][["contact_id", "name", "email", "inactive", "keep_active"]].tolist() == [
        7,
        "Ann",
        "ann@x.com",
        True,
        "2",
    ]
    assert pd.isna(contacts.iloc[0]["site_id"])  # Halo's 0 means none
    # One odd record never stops the frame: an unreadable id leaves the record out, named for the asset to list.
    contacts = frames.halo_contacts_frame([{"id": 1, "client_id": 1}, {"id": "x9", "client_id": 1}])
    assert contacts["contact_id"].tolist() == [1]
    assert contacts.attrs["unreadable_records"] == ["Halo contact #1 (id 'x9'): id: expected an integer, got 'x9'"]
    # A field that cannot be typed is NA and the record is quarantined with the reason.
    sites = frames.halo_sites_frame(
        [{"id": 3, "client_id": 1, "is_main": "maybe"}, {"id": 4, "client_id": 1, "name": "B"}]
    )
    assert sites["quarantine"].tolist()[0] == "is_main: expected a boolean, got 'maybe'"
    assert pd.isna(sites["quarantine"].iloc[1]) and sites["is_main"].tolist() == [False, False]
    with pytest.raises(ValueError, match=r"M365 user .* of tenant .*: userPrincipalName: missing"):
        frames.m365_users_frame([_load([{"id": USER, "userPrincipalName": " "}])])


def test_empty_inputs_give_typed_empty_frames_that_validate() -> None:
    for frame, schema in (
        (frames.halo_companies_frame([]), sources.HaloCompaniesSchema),
        (frames.halo_contacts_frame([]), sources.HaloContactsSchema),
        (frames.halo_sites_frame([]), sources.HaloSitesSchema),
        (frames.halo_tenant_mappings_frame([]), sources.HaloTenantMappingsSchema),
        (frames.m365_users_frame([]), sources.M365UsersSchema),
    ):
        assert frame.empty and sources.validation_failures(schema, frame) is None


def test_validation_failures_name_column_check_value_and_row() -> None:
    contacts = frames.halo_contacts_frame(
        [
            {"id": 1, "client_id": 1, "emailaddress": "a@x.com", "azureoid": "not-a-guid"},
            {"id": 1, "client_id": 2, "emailaddress": "b@x.com"},
        ]
    )
    failures = sources.validation_failures(sources.HaloContactsSchema, contacts)
    assert failures is not None and list(failures.columns) == ["column", "check", "value", "row"]
    found = {(r.column, r.value, r.row) for r in failures.itertuples()}
    assert ("azureoid", "not-a-guid", "0") in found
    assert ("contact_id", "1", "0") in found and ("contact_id", "1", "1") in found


def test_schemas_are_strict_about_columns_and_dtypes() -> None:
    sites = frames.halo_sites_frame(
        [{"id": 1, "client_id": 1, "is_main": True}, {"id": 2, "client_id": 1, "is_main": True}]
    )
    failures = sources.validation_failures(sources.HaloSitesSchema, sites.assign(extra=1))
    assert failures is not None
    checks = set(failures["check"])
    assert "column_in_schema" in checks and "at_most_one_main_site_per_company" in checks
    wrong_dtype = sites.astype({"name": object})
    failures = sources.validation_failures(sources.HaloSitesSchema, wrong_dtype)
    assert failures is not None and "name" in set(failures["column"])


def test_a_user_with_a_malformed_upn_or_id_fails_its_tenant_not_the_estate() -> None:
    odd = TenantLoad(
        TenantRef("cccccccc-0000-4000-8000-000000000004", "Odd", "odd.com"),
        "loaded",
        domains=[],
        users=[{"id": "dddddddd-0000-4000-8000-000000000009", "userPrincipalName": "no-at-sign"}],
    )
    bad_id = TenantLoad(
        TenantRef("cccccccc-0000-4000-8000-000000000005", "BadId", "bad.com"),
        "loaded",
        domains=[],
        users=[{"id": "12", "userPrincipalName": "x@bad.com"}],
    )
    tenants, _, users = frames.m365_frames(
        [_load([{"id": USER, "userPrincipalName": "alice@contoso.com"}]), odd, bad_id]
    )
    assert tenants["status"].tolist() == ["loaded", "failed", "failed"]
    assert "not a user principal name" in tenants["error"].iloc[1] and "not a GUID" in tenants["error"].iloc[2]
    assert sources.validation_failures(sources.M365UsersSchema, users) is None
