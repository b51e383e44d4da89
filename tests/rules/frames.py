"""Small builders of source DataFrames with exactly the contract's columns and dtypes
(docs/architecture.md). Each takes a list of row dicts; omitted columns get a default."""

from __future__ import annotations

from typing import Any

import pandas as pd

S, I, NI, B = "string", "int64", "Int64", bool  # noqa: E741 - short names keep the column tables readable

COLUMNS: dict[str, dict[str, Any]] = {
    "halo_companies": {"company_id": I, "name": S, "website": S, "inactive": B, "main_site_id": NI, "quarantine": S},
    "halo_tenant_mappings": {
        "tenant_id": S,
        "tenant_name": S,
        "company_id": I,
        "company_name": S,
        "entry_id": NI,
        "connection_id": NI,
        "quarantine": S,
    },
    "halo_contacts": {
        "contact_id": I,
        "company_id": I,
        "site_id": NI,
        "name": S,
        "firstname": S,
        "surname": S,
        "email": S,
        "email2": S,
        "email3": S,
        "phonenumber": S,
        "mobilenumber": S,
        "title": S,
        "azureoid": S,
        "inactive": B,
        "keep_active": S,
        "quarantine": S,
    },
    "halo_sites": {"site_id": I, "company_id": I, "name": S, "line1": S, "is_main": B, "quarantine": S},
    "m365_tenants": {
        "tenant_id": S,
        "display_name": S,
        "default_domain": S,
        "status": S,
        "error": S,
        "user_count": NI,
        "domain_count": NI,
    },
    "m365_domains": {"tenant_id": S, "domain": S, "is_verified": B, "is_default": B},
    "m365_users": {
        "tenant_id": S,
        "user_id": S,
        "upn": S,
        "display_name": S,
        "given_name": S,
        "surname": S,
        "mail": S,
        "job_title": S,
        "business_phone": S,
        "mobile_phone": S,
        "fax": S,
        "street_address": S,
        "smtp_aliases": S,
        "licence_count": NI,
        "account_enabled": B,
        "user_type": S,
        "is_guest": B,
    },
}

DEFAULTS: dict[str, dict[str, Any]] = {
    "halo_companies": {"inactive": False},
    "halo_contacts": {"inactive": False},
    "halo_sites": {"is_main": False},
    "m365_tenants": {"status": "loaded"},
    "m365_domains": {"is_verified": True, "is_default": False},
    "m365_users": {"licence_count": 1, "account_enabled": True, "user_type": "Member", "is_guest": False},
}


def frame(kind: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A source frame of `kind` from row dicts, typed as the contract says."""
    columns = COLUMNS[kind]
    unknown = {key for row in rows for key in row} - set(columns)
    if unknown:
        raise KeyError(f"{kind} has no column(s) {sorted(unknown)}")
    filled = [{**DEFAULTS.get(kind, {}), **row} for row in rows]
    data = {name: pd.Series([row.get(name) for row in filled], dtype=dtype) for name, dtype in columns.items()}
    return pd.DataFrame(data)


def companies(*rows: dict[str, Any]) -> pd.DataFrame:
    return frame("halo_companies", list(rows))


def tenant_mappings(*rows: dict[str, Any]) -> pd.DataFrame:
    return frame("halo_tenant_mappings", list(rows))


def contacts(*rows: dict[str, Any]) -> pd.DataFrame:
    return frame("halo_contacts", list(rows))


def sites(*rows: dict[str, Any]) -> pd.DataFrame:
    return frame("halo_sites", list(rows))


def tenants(*rows: dict[str, Any]) -> pd.DataFrame:
    return frame("m365_tenants", list(rows))


def domains(*rows: dict[str, Any]) -> pd.DataFrame:
    return frame("m365_domains", list(rows))


def users(*rows: dict[str, Any]) -> pd.DataFrame:
    return frame("m365_users", list(rows))
