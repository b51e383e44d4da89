import pandas as pd
import pytest

from halo_sync_pipeline.rules.normalise import (
    email_domain,
    email_domains,
    normalise_company_name,
    normalise_company_names,
    upn_local_part,
    website_host,
    website_hosts,
)
from halo_sync_pipeline.rules.users import select_users
from halo_sync_pipeline.settings import SyncSettings
from tests.rules import frames as f


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://www.contoso.com/about", "contoso.com"),
        ("HTTP://user:pw@WWW.Fabrikam.co.uk:8443/x?y=1#z", "fabrikam.co.uk"),
        ("contoso.com.", "contoso.com"),
        ("contoso.com?ref=1", "contoso.com"),
        ("//www.contoso.com", "contoso.com"),
        # Seed bug: regex `www.` removed www + any character anywhere.
        ("wwwidget.com", "wwwidget.com"),
        ("newwave.com", "newwave.com"),
        ("https://shop.www2.example.com", "shop.www2.example.com"),
        ("  ", None),
        (None, None),
    ],
)
def test_website_host(url, host):
    assert website_host(url) == host


def test_website_hosts_vectorised_matches_scalar():
    urls = pd.Series(["www.a.com", None, "wwwidget.com"], dtype="string")
    assert website_hosts(urls).tolist() == ["a.com", pd.NA, "wwwidget.com"]
    assert website_hosts(urls).dtype == "string"


def test_company_name_normalisation():
    assert normalise_company_name("  Contoso \t  LTD ") == "contoso ltd"
    assert normalise_company_name(" ") is None
    names = normalise_company_names(pd.Series(["Straße  GmbH", None], dtype="string"))
    assert names.tolist() == ["strasse gmbh", pd.NA]


def test_email_domain_and_upn_local_part():
    assert email_domain(" Ann@Contoso.COM ") == "contoso.com"
    assert email_domain("no-at-sign") is None
    assert email_domains(pd.Series(["a@b.com", "x@", None], dtype="string")).tolist() == ["b.com", pd.NA, pd.NA]
    assert upn_local_part("admin@cloudadmins.com") == "admin"


def _users(**overrides):
    base = {"tenant_id": "t1", "user_id": "u1", "upn": "ann@contoso.com"}
    return f.users({**base, **overrides})


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({}, pd.NA),
        ({"licence_count": 0}, "unlicensed"),
        ({"account_enabled": False}, "disabled"),
        ({"is_guest": True, "user_type": "Guest"}, "guest"),
        ({"licence_count": 0, "account_enabled": False}, "unlicensed"),
    ],
)
def test_select_users_filter_reason(overrides, reason):
    out = select_users(_users(**overrides), SyncSettings())
    assert out["filter_reason"].iloc[0] is reason or out["filter_reason"].iloc[0] == reason
    assert bool(out["selected"].iloc[0]) is (reason is pd.NA)


def test_filters_follow_settings():
    settings = SyncSettings(licensed_users_only=False, exclude_disabled_accounts=False, exclude_guests=False)
    out = select_users(_users(licence_count=0, account_enabled=False, is_guest=True), settings)
    assert out["filter_reason"].isna().all() and out["selected"].all()


def test_exclude_pattern_searches_only_the_upn_local_part():
    # Seed bug: the whole UPN was searched, so `admin` skipped every user of cloudadmins.com.
    users = f.users(
        {"tenant_id": "t1", "user_id": "u1", "upn": "ann@cloudadmins.com"},
        {"tenant_id": "t1", "user_id": "u2", "upn": "GlobalAdmin@contoso.com"},
    )
    out = select_users(users, SyncSettings())
    assert out["excluded_by_pattern"].tolist() == [False, True]
    assert out["selected"].tolist() == [True, False]
    assert out["filter_reason"].isna().all()
    assert out["selected"].dtype == bool and out["excluded_by_pattern"].dtype == bool


def test_several_exclude_patterns_each_with_its_own_flags():
    users = f.users(
        {"tenant_id": "t1", "user_id": "u1", "upn": "svc-backup@contoso.com"},
        {"tenant_id": "t1", "user_id": "u2", "upn": "it.ADMIN@contoso.com"},
        {"tenant_id": "t1", "user_id": "u3", "upn": "ann@contoso.com"},
    )
    out = select_users(users, SyncSettings(exclude_upn_patterns=("admin", "(?i)^svc-")))
    assert out["excluded_by_pattern"].tolist() == [True, True, False]
