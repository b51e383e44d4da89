"""Pure builders: client results -> the source DataFrames of docs/architecture.md.

Halo records come in the client's one shape (report rows and REST records are normalised to it by
`HaloClient`). Text is stripped and empty text becomes NA; emails, UPNs, domains and GUIDs are also
lower-cased. A value that cannot be typed raises ValueError naming the record.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pandas as pd

from .graph import TenantLoad

COMPANY_COLUMNS = ["company_id", "name", "website", "inactive", "main_site_id"]
TENANT_MAPPING_COLUMNS = ["tenant_id", "tenant_name", "company_id", "company_name"]
CONTACT_COLUMNS = [
    "contact_id", "company_id", "site_id", "name", "firstname", "surname", "email", "email2", "email3",
    "phonenumber", "mobilenumber", "title", "azureoid", "inactive", "keep_active",
]  # fmt: skip
SITE_COLUMNS = ["site_id", "company_id", "name", "line1", "is_main"]
TENANT_COLUMNS = ["tenant_id", "display_name", "default_domain", "status", "error", "user_count", "domain_count"]
DOMAIN_COLUMNS = ["tenant_id", "domain", "is_verified", "is_default"]
USER_COLUMNS = [
    "tenant_id", "user_id", "upn", "display_name", "given_name", "surname", "mail", "job_title", "business_phone",
    "mobile_phone", "fax", "street_address", "smtp_aliases", "licence_count", "account_enabled", "user_type", "is_guest",
]  # fmt: skip


# --- value normalisers (each raises ValueError with a plain reason; callers add the record) --------


def text(value: Any) -> Any:
    """Stripped text, NA for None/NaN/blank."""
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return pd.NA
    if isinstance(value, (dict, list)):
        raise ValueError(f"expected text, got {type(value).__name__}")
    stripped = str(value).strip()
    return stripped if stripped else pd.NA


def lower_text(value: Any) -> Any:
    stripped = text(value)
    return stripped if stripped is pd.NA else stripped.lower()


def integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer id, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise ValueError(f"expected an integer, got {value!r}")


def optional_integer(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return pd.NA
    if isinstance(value, str) and not value.strip():
        return pd.NA
    number = integer(value)
    return pd.NA if number <= 0 else number  # Halo uses 0 for "none"


def boolean(value: Any, *, default: bool = False) -> bool:
    if value is None or value is pd.NA:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "y"):
            return True
        if lowered in ("0", "false", "no", "n", ""):
            return False if lowered else default
    raise ValueError(f"expected a boolean, got {value!r}")


def _build(
    records: Iterable[Any], columns: list[str], dtypes: Mapping[str, str], row: Callable[[Any], dict[str, Any]], what: Callable[[int, Any], str]
) -> pd.DataFrame:
    built = []
    for index, record in enumerate(records):
        try:
            if not isinstance(record, Mapping):
                raise ValueError(f"expected an object, got {type(record).__name__}")
            built.append(row(record))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{what(index, record)}: {exc}") from None
    frame = pd.DataFrame(built, columns=columns)
    return frame.astype({c: dtypes[c] for c in columns}) if len(frame) else _empty(columns, dtypes)


def _empty(columns: list[str], dtypes: Mapping[str, str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=dtypes[c]) for c in columns})


def _field(record: Mapping[str, Any], key: str, convert: Callable[[Any], Any]) -> Any:
    try:
        return convert(record.get(key))
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None


def _label(kind: str, id_key: str) -> Callable[[int, Any], str]:
    def describe(index: int, record: Any) -> str:
        record_id = record.get(id_key) if isinstance(record, Mapping) else None
        return f"{kind} #{index} (id {record_id!r})"

    return describe


# --- Halo ------------------------------------------------------------------------------------------

_STRING, _BOOL, _INT, _NINT = "string", "bool", "int64", "Int64"


def halo_companies_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    dtypes = {"company_id": _INT, "name": _STRING, "website": _STRING, "inactive": _BOOL, "main_site_id": _NINT}
    return _build(
        records,
        COMPANY_COLUMNS,
        dtypes,
        lambda r: {
            "company_id": _field(r, "id", integer),
            "name": _field(r, "name", text),
            "website": _field(r, "website", text),
            "inactive": _field(r, "inactive", boolean),
            "main_site_id": _field(r, "main_site_id", optional_integer),
        },
        _label("Halo company", "id"),
    )


def halo_tenant_mappings_frame(mappings: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """From `HaloClient.tenant_mappings()` (azure_tenant_id, azure_tenant_name, client_id, client_name)."""
    dtypes = {"tenant_id": _STRING, "tenant_name": _STRING, "company_id": _INT, "company_name": _STRING}
    return _build(
        mappings,
        TENANT_MAPPING_COLUMNS,
        dtypes,
        lambda r: {
            "tenant_id": _field(r, "azure_tenant_id", _required(lower_text)),
            "tenant_name": _field(r, "azure_tenant_name", text),
            "company_id": _field(r, "client_id", integer),
            "company_name": _field(r, "client_name", text),
        },
        _label("Halo tenant mapping", "azure_tenant_id"),
    )


def halo_contacts_frame(records: Iterable[Mapping[str, Any]], keep_active_field: str | None = None) -> pd.DataFrame:
    """From `HaloClient.contacts(field)`; the keep-active value is the record's `keep_active`
    (or, for records carrying Halo custom fields, the field named `keep_active_field`)."""
    strings = ("name", "firstname", "surname", "email", "email2", "email3", "phonenumber", "mobilenumber", "title", "azureoid", "keep_active")
    dtypes = {"contact_id": _INT, "company_id": _INT, "site_id": _NINT, "inactive": _BOOL} | {c: _STRING for c in strings}

    def row(r: Mapping[str, Any]) -> dict[str, Any]:
        keep_active = r.get("keep_active")
        if keep_active is None and keep_active_field:
            keep_active = r.get(keep_active_field)
        return {
            "contact_id": _field(r, "id", integer),
            "company_id": _field(r, "client_id", integer),
            "site_id": _field(r, "site_id", optional_integer),
            "name": _field(r, "name", text),
            "firstname": _field(r, "firstname", text),
            "surname": _field(r, "surname", text),
            "email": _field(r, "emailaddress", lower_text),
            "email2": _field(r, "email2", lower_text),
            "email3": _field(r, "email3", lower_text),
            "phonenumber": _field(r, "phonenumber", text),
            "mobilenumber": _field(r, "mobilenumber", text),
            "title": _field(r, "title", text),
            "azureoid": _field(r, "azureoid", lower_text),
            "inactive": _field(r, "inactive", boolean),
            "keep_active": _field({"keep_active": keep_active}, "keep_active", _number_text),
        }

    return _build(records, CONTACT_COLUMNS, dtypes, row, _label("Halo contact", "id"))


def halo_sites_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    dtypes = {"site_id": _INT, "company_id": _INT, "name": _STRING, "line1": _STRING, "is_main": _BOOL}
    return _build(
        records,
        SITE_COLUMNS,
        dtypes,
        lambda r: {
            "site_id": _field(r, "id", integer),
            "company_id": _field(r, "client_id", integer),
            "name": _field(r, "name", text),
            "line1": _field(r, "line1", text),
            "is_main": _field(r, "is_main", boolean),
        },
        _label("Halo site", "id"),
    )


def _number_text(value: Any) -> Any:
    # A custom field read by SQL may come back as a number (2 or 2.0); the rules compare text ("2").
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return text(value)


def _required(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def converted(value: Any) -> Any:
        result = convert(value)
        if result is pd.NA:
            raise ValueError("missing")
        return result

    return converted


# --- Microsoft 365 -----------------------------------------------------------------------------------


def m365_tenants_frame(loads: Sequence[TenantLoad]) -> pd.DataFrame:
    """One row per tenant with its load status; the default domain comes from the loaded domains when known."""
    rows = []
    for load in loads:
        default = next((d.get("id") for d in load.domains if d.get("isDefault") is True), None) or load.tenant.default_domain
        loaded = load.status == "loaded"
        rows.append(
            {
                "tenant_id": lower_text(load.tenant.tenant_id),
                "display_name": text(load.tenant.display_name),
                "default_domain": lower_text(default),
                "status": load.status,
                "error": pd.NA if loaded else text(load.error or "failed without a message"),
                "user_count": len(load.users) if loaded else pd.NA,
                "domain_count": len(load.domains) if loaded else pd.NA,
            }
        )
    dtypes = {c: _STRING for c in TENANT_COLUMNS} | {"user_count": _NINT, "domain_count": _NINT}
    return pd.DataFrame(rows, columns=TENANT_COLUMNS).astype(dtypes) if rows else _empty(TENANT_COLUMNS, dtypes)


def m365_domains_frame(loads: Sequence[TenantLoad]) -> pd.DataFrame:
    dtypes = {"tenant_id": _STRING, "domain": _STRING, "is_verified": _BOOL, "is_default": _BOOL}
    records = [
        {"tenant": load.tenant.tenant_id, **domain}
        for load in loads
        if load.status == "loaded"
        for domain in load.domains
    ]
    return _build(
        records,
        DOMAIN_COLUMNS,
        dtypes,
        lambda r: {
            "tenant_id": _field(r, "tenant", _required(lower_text)),
            "domain": _field(r, "id", _required(lower_text)),
            "is_verified": _field(r, "isVerified", boolean),
            "is_default": _field(r, "isDefault", boolean),
        },
        lambda i, r: f"M365 domain {r.get('id')!r} of tenant {r.get('tenant')!r}",
    )


def _first(values: Any) -> Any:
    if values is None:
        return pd.NA
    if not isinstance(values, list):
        raise ValueError(f"expected a list, got {type(values).__name__}")
    for value in values:
        cleaned = text(value)
        if cleaned is not pd.NA:
            return cleaned
    return pd.NA


def smtp_aliases(proxy_addresses: Any) -> Any:
    """Secondary SMTP addresses (`smtp:` lower-case prefix; `SMTP:` is the primary), prefix stripped, `;`-joined."""
    if proxy_addresses is None:
        return pd.NA
    if not isinstance(proxy_addresses, list):
        raise ValueError(f"expected a list, got {type(proxy_addresses).__name__}")
    aliases: list[str] = []
    for entry in proxy_addresses:
        entry_text = str(entry).strip()
        if entry_text.startswith("smtp:"):
            alias = entry_text[5:].strip().lower()
            if alias and alias not in aliases:
                aliases.append(alias)
    return ";".join(aliases) if aliases else pd.NA


def _licence_count(value: Any) -> int:
    if value is None:
        return 0
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {type(value).__name__}")
    return len(value)


def m365_users_frame(loads: Sequence[TenantLoad]) -> pd.DataFrame:
    strings = (
        "tenant_id", "user_id", "upn", "display_name", "given_name", "surname", "mail", "job_title", "business_phone",
        "mobile_phone", "fax", "street_address", "smtp_aliases", "user_type",
    )  # fmt: skip
    dtypes = {c: _STRING for c in strings} | {"licence_count": _INT, "account_enabled": _BOOL, "is_guest": _BOOL}
    records = [
        {"@tenant": load.tenant.tenant_id, **user} for load in loads if load.status == "loaded" for user in load.users
    ]

    def row(r: Mapping[str, Any]) -> dict[str, Any]:
        user_type = _field(r, "userType", text)
        return {
            "tenant_id": _field(r, "@tenant", _required(lower_text)),
            "user_id": _field(r, "id", _required(lower_text)),
            "upn": _field(r, "userPrincipalName", _required(lower_text)),
            "display_name": _field(r, "displayName", text),
            "given_name": _field(r, "givenName", text),
            "surname": _field(r, "surname", text),
            "mail": _field(r, "mail", lower_text),
            "job_title": _field(r, "jobTitle", text),
            "business_phone": _field(r, "businessPhones", _first),
            "mobile_phone": _field(r, "mobilePhone", text),
            "fax": _field(r, "faxNumber", text),
            "street_address": _field(r, "streetAddress", text),
            "smtp_aliases": _field(r, "proxyAddresses", smtp_aliases),
            "licence_count": _field(r, "assignedLicenses", _licence_count),
            # Graph omits accountEnabled only when not selected; treat a missing value as enabled like Graph's default.
            "account_enabled": _field(r, "accountEnabled", lambda v: boolean(v, default=True)),
            "user_type": user_type,
            "is_guest": user_type is not pd.NA and str(user_type).lower() == "guest",
        }

    return _build(
        records,
        USER_COLUMNS,
        dtypes,
        row,
        lambda i, r: f"M365 user {r.get('id')!r} ({r.get('userPrincipalName')!r}) of tenant {r.get('@tenant')!r}",
    )


def m365_frames(loads: Sequence[TenantLoad]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The tenants, domains and users frames; a tenant whose data cannot be typed becomes a failed tenant.

    One tenant's malformed record (say `businessPhones` as a string) must fail that tenant, not the
    whole directory read: its data is dropped and the error names the record. The common case (all
    well-formed) builds each frame once; only a failure pays for a tenant-by-tenant pass.
    """
    try:
        return m365_tenants_frame(loads), m365_domains_frame(loads), m365_users_frame(loads)
    except ValueError:
        pass
    checked = []
    for load in loads:
        if load.status == "loaded":
            try:
                m365_domains_frame([load])
                m365_users_frame([load])
            except ValueError as exc:
                load = replace(load, status="failed", error=f"malformed data: {exc}", domains=[], users=[])
        checked.append(load)
    return m365_tenants_frame(checked), m365_domains_frame(checked), m365_users_frame(checked)
