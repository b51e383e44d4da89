"""Pure builders: client results -> the source DataFrames of docs/architecture.md.

Halo records come in the client's one shape (report rows and REST records are normalised to it by
`HaloClient`). Text is stripped and empty text becomes NA; emails, UPNs, domains and GUIDs are also
lower-cased. A value that cannot be typed raises ValueError naming the record.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pandas as pd

from halo_sync_pipeline.schemas import common as contracts
from halo_sync_pipeline.schemas import sources

from .graph import USER_SELECT, TenantLoad

# Columns (in order) and dtypes come from the pandera models, the one definition of each frame.
# `quarantine` (Halo frames): what is odd about the record (NA = nothing); see rules/quarantine.py.
COMPANY_COLUMNS = list(contracts.columns(sources.HaloCompaniesSchema))
TENANT_MAPPING_COLUMNS = list(contracts.columns(sources.HaloTenantMappingsSchema))
CONTACT_COLUMNS = list(contracts.columns(sources.HaloContactsSchema))
SITE_COLUMNS = list(contracts.columns(sources.HaloSitesSchema))
TENANT_COLUMNS = list(contracts.columns(sources.M365TenantsSchema))
DOMAIN_COLUMNS = list(contracts.columns(sources.M365DomainsSchema))
USER_COLUMNS = list(contracts.columns(sources.M365UsersSchema))
_COMPANY_DTYPES = contracts.dtypes(sources.HaloCompaniesSchema)
_TENANT_MAPPING_DTYPES = contracts.dtypes(sources.HaloTenantMappingsSchema)
_CONTACT_DTYPES = contracts.dtypes(sources.HaloContactsSchema)
_SITE_DTYPES = contracts.dtypes(sources.HaloSitesSchema)
_TENANT_DTYPES = contracts.dtypes(sources.M365TenantsSchema)
_DOMAIN_DTYPES = contracts.dtypes(sources.M365DomainsSchema)
_USER_DTYPES = contracts.dtypes(sources.M365UsersSchema)


# --- value normalisers (each raises ValueError with a plain reason; callers add the record) --------


def text(value: Any) -> Any:
    """Stripped text, NA for None/NaN/blank."""
    if type(value) is str:  # nearly every value: the fast path (this runs for every field of 200k users)
        stripped = value.strip()
        return stripped if stripped else pd.NA
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
    records: Iterable[Any],
    columns: list[str],
    dtypes: Mapping[str, str],
    row: Callable[[Any], dict[str, Any]],
    what: Callable[[int, Any], str],
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


def _build_lenient(
    records: Iterable[Any],
    columns: list[str],
    dtypes: Mapping[str, str],
    row: Callable[[Any, _Reader], dict[str, Any]],
    what: Callable[[int, Any], str],
) -> pd.DataFrame:
    """Like `_build`, but one odd record never stops the frame: a field that cannot be typed becomes NA
    and the record carries the reason in `quarantine`; a record without a readable id (or not an object)
    is left out and listed in `frame.attrs["unreadable_records"]` for the asset to report."""
    built, unreadable = [], []
    for index, record in enumerate(records):
        reader = _Reader(record if isinstance(record, Mapping) else {})
        try:
            if not isinstance(record, Mapping):
                raise ValueError(f"expected an object, got {type(record).__name__}")
            values = row(record, reader)
        except (ValueError, TypeError) as exc:
            unreadable.append(f"{what(index, record)}: {exc}")
            continue
        values["quarantine"] = "; ".join(reader.problems) or pd.NA
        built.append(values)
    frame = pd.DataFrame(built, columns=columns)
    frame = frame.astype({c: dtypes[c] for c in columns}) if len(frame) else _empty(columns, dtypes)
    frame.attrs["unreadable_records"] = unreadable
    return frame


class _Reader:
    """Reads a record's optional fields; a value that cannot be typed is noted and read as `fallback`."""

    def __init__(self, record: Mapping[str, Any]) -> None:
        self.record = record
        self.problems: list[str] = []

    def get(self, key: str, convert: Callable[[Any], Any], fallback: Any = pd.NA) -> Any:
        try:  # `value` inlined: this runs for every field of every Halo record
            return convert(self.record.get(key))
        except ValueError as exc:
            self.problems.append(f"{key}: {exc}")
            return fallback

    def value(self, key: str, value: Any, convert: Callable[[Any], Any], fallback: Any = pd.NA) -> Any:
        try:
            return convert(value)
        except ValueError as exc:
            self.problems.append(f"{key}: {exc}")
            return fallback


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


def halo_companies_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """From `HaloClient.companies()`; `main_site_id` is the company's invoice site (the lowest id if several)."""

    def row(r: Mapping[str, Any], read: _Reader) -> dict[str, Any]:
        return {
            "company_id": _field(r, "id", integer),
            "name": read.get("name", text),
            "website": read.get("website", text),
            "inactive": read.get("inactive", boolean, fallback=False),
            "main_site_id": read.get("main_site_id", optional_integer),
        }

    return _build_lenient(records, COMPANY_COLUMNS, _COMPANY_DTYPES, row, _label("Halo company", "id"))


def halo_tenant_mappings_frame(mappings: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """From `HaloClient.tenant_mappings()` (id, details_id, azure_tenant_id, azure_tenant_name, client_id,
    client_name). The tenant id is kept as Halo has it (lower-cased); rules/quarantine.py judges it."""
    return _build_lenient(
        mappings,
        TENANT_MAPPING_COLUMNS,
        _TENANT_MAPPING_DTYPES,
        lambda r, read: {
            "tenant_id": read.get("azure_tenant_id", lower_text),
            "tenant_name": read.get("azure_tenant_name", text),
            "company_id": _field(r, "client_id", integer),
            "company_name": read.get("client_name", text),
            "entry_id": read.get("id", optional_integer),
            "connection_id": read.get("details_id", optional_integer),
        },
        _label("Halo tenant mapping", "azure_tenant_id"),
    )


def halo_contacts_frame(records: Iterable[Mapping[str, Any]], keep_active_field: str | None = None) -> pd.DataFrame:
    """From `HaloClient.contacts(field)`; the keep-active value is the record's `keep_active`
    (or, for records carrying Halo custom fields, the field named `keep_active_field`)."""

    def row(r: Mapping[str, Any], read: _Reader) -> dict[str, Any]:
        keep_active = r.get("keep_active")
        if keep_active is None and keep_active_field:
            keep_active = r.get(keep_active_field)
        return {
            "contact_id": _field(r, "id", integer),
            "company_id": _field(r, "client_id", integer),
            "site_id": read.get("site_id", optional_integer),
            "name": read.get("name", text),
            "firstname": read.get("firstname", text),
            "surname": read.get("surname", text),
            "email": read.get("emailaddress", lower_text),
            "email2": read.get("email2", lower_text),
            "email3": read.get("email3", lower_text),
            "phonenumber": read.get("phonenumber", text),
            "mobilenumber": read.get("mobilenumber", text),
            "title": read.get("title", text),
            "azureoid": read.get("azureoid", lower_text),
            # Unreadable: the record is quarantined, and a quarantined contact is never written.
            "inactive": read.get("inactive", boolean, fallback=False),
            "keep_active": read.value("keep_active", keep_active, _number_text),
        }

    return _build_lenient(records, CONTACT_COLUMNS, _CONTACT_DTYPES, row, _label("Halo contact", "id"))


def halo_sites_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """From `HaloClient.sites()`; `is_main` marks a company's invoice site."""

    def row(r: Mapping[str, Any], read: _Reader) -> dict[str, Any]:
        return {
            "site_id": _field(r, "id", integer),
            "company_id": _field(r, "client_id", integer),
            "name": read.get("name", text),
            "line1": read.get("line1", text),
            "is_main": read.get("is_main", boolean, fallback=False),
        }

    return _build_lenient(records, SITE_COLUMNS, _SITE_DTYPES, row, _label("Halo site", "id"))


def _number_text(value: Any) -> Any:
    # A custom field read by SQL may come back as a number (2 or 2.0); the rules compare text ("2").
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return text(value)


_GUID_TEXT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_UPN_TEXT = re.compile(r"^[^@\s]+@[^@\s]+$")


def _guid(value: Any) -> str:
    # A user id that is no GUID fails its tenant here rather than the whole estate at the schema check.
    found: str = _required(lower_text)(value)
    if not _GUID_TEXT.match(found):
        raise ValueError(f"{found!r} is not a GUID")
    return found


def _upn(value: Any) -> str:
    found: str = _required(lower_text)(value)
    if not _UPN_TEXT.match(found):
        raise ValueError(f"{found!r} is not a user principal name (name@domain)")
    return found


def _required(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def converted(value: Any) -> Any:
        result = convert(value)
        if result is pd.NA:
            raise ValueError("missing")
        return result

    return converted


# --- Microsoft 365 -----------------------------------------------------------------------------------
#
# Streaming: `compact_tenant_load` types one tenant's users into column tuples and drops the raw Graph
# JSON (a user's dict with its nested lists is ~20x its typed row). `GraphClient.load_all(on_load=...)`
# calls it as each tenant finishes, so at most `concurrency` tenants' raw JSON is alive at once;
# `m365_frames` compacts whatever is still raw and concatenates the columns into each frame once.


def m365_tenants_frame(loads: Sequence[TenantLoad]) -> pd.DataFrame:
    """One row per tenant with its load status; the default domain comes from the loaded domains when known."""
    rows = []
    for load in loads:
        default = (
            next((d.get("id") for d in load.domains if d.get("isDefault") is True), None) or load.tenant.default_domain
        )
        loaded = load.status == "loaded"
        rows.append(
            {
                "tenant_id": lower_text(load.tenant.tenant_id),
                "display_name": text(load.tenant.display_name),
                "default_domain": lower_text(default),
                "status": load.status,
                "error": pd.NA if loaded else text(load.error or "failed without a message"),
                "user_count": load.user_count if loaded else pd.NA,
                "domain_count": len(load.domains) if loaded else pd.NA,
            }
        )
    frame = pd.DataFrame(rows, columns=TENANT_COLUMNS)
    return frame.astype(_TENANT_DTYPES) if rows else _empty(TENANT_COLUMNS, _TENANT_DTYPES)


def _domain_row(r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "tenant_id": _field(r, "tenant", _required(lower_text)),
        "domain": _field(r, "id", _required(lower_text)),
        "is_verified": _field(r, "isVerified", boolean),
        "is_default": _field(r, "isDefault", boolean),
    }


def _domain_label(index: int, record: Any) -> str:
    found = record if isinstance(record, Mapping) else {}
    return f"M365 domain {found.get('id')!r} of tenant {found.get('tenant')!r}"


def _domain_records(load: TenantLoad) -> list[Any]:
    return [{"tenant": load.tenant.tenant_id, **d} if isinstance(d, Mapping) else d for d in load.domains]


def _check_domains(load: TenantLoad) -> None:
    """ValueError naming the first domain of the tenant that cannot be typed (no frame built)."""
    for index, record in enumerate(_domain_records(load)):
        try:
            if not isinstance(record, Mapping):
                raise ValueError(f"expected an object, got {type(record).__name__}")
            _domain_row(record)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{_domain_label(index, record)}: {exc}") from None


def m365_domains_frame(loads: Sequence[TenantLoad]) -> pd.DataFrame:
    records = [record for load in loads if load.status == "loaded" for record in _domain_records(load)]
    return _build(records, DOMAIN_COLUMNS, _DOMAIN_DTYPES, _domain_row, _domain_label)


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
    """Every SMTP proxy address (`SMTP:` primary and `smtp:` secondary, prefix case-insensitive), prefix
    stripped, lower-cased, in Graph's order without repeats, `;`-joined. Other kinds (`sip:`, `x500:`) are dropped."""
    if proxy_addresses is None:
        return pd.NA
    if not isinstance(proxy_addresses, list):
        raise ValueError(f"expected a list, got {type(proxy_addresses).__name__}")
    aliases: list[str] = []
    for entry in proxy_addresses:
        entry_text = str(entry).strip()
        if entry_text[:5].lower() == "smtp:":
            alias = entry_text[5:].strip().lower()
            if alias and alias not in aliases:
                aliases.append(alias)
    return ";".join(aliases) if aliases else pd.NA


def _licence_count(value: Any) -> Any:
    # null or absent is an unknown count, not zero licences (see m365_frames' required properties).
    if value is None:
        return pd.NA
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {type(value).__name__}")
    return len(value)


def _enabled(value: Any) -> bool:
    # null reads as Graph's default (enabled); an absent property fails the tenant when the disabled-account
    # filter needs it (see m365_frames).
    return boolean(value, default=True)


# Graph property -> how it is typed, in USER_COLUMNS order after tenant_id (is_guest is derived from userType).
_USER_FIELDS: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    ("id", _guid),
    ("userPrincipalName", _upn),
    ("displayName", text),
    ("givenName", text),
    ("surname", text),
    ("mail", lower_text),
    ("jobTitle", text),
    ("businessPhones", _first),
    ("mobilePhone", text),
    ("faxNumber", text),
    ("streetAddress", text),
    ("proxyAddresses", smtp_aliases),
    ("assignedLicenses", _licence_count),
    ("accountEnabled", _enabled),
    ("userType", text),
)


def _user_row(tenant_key: str, r: Mapping[str, Any]) -> tuple[Any, ...]:
    """One Graph user as a row in USER_COLUMNS order (`tenant_key`: the tenant id as typed); ValueError names the field."""
    try:
        values = tuple([convert(r.get(key)) for key, convert in _USER_FIELDS])
    except ValueError:  # again field by field, for the error naming the field
        values = tuple(_field(r, key, convert) for key, convert in _USER_FIELDS)
    user_type = values[-1]
    return (tenant_key, *values, user_type is not pd.NA and str(user_type).lower() == "guest")


def _user_columns(load: TenantLoad) -> dict[str, tuple[Any, ...]]:
    """A raw tenant's users typed, as one tuple per USER_COLUMNS column; ValueError names the record."""
    tenant_id = load.tenant.tenant_id
    tenant_key = None
    rows = []
    for user in load.users:
        try:
            if not isinstance(user, Mapping):
                raise ValueError(f"expected an object, got {type(user).__name__}")
            if tenant_key is None:
                tenant_key = _field({"@tenant": tenant_id}, "@tenant", _required(lower_text))
            rows.append(_user_row(tenant_key, user))
        except (ValueError, TypeError) as exc:
            found = user if isinstance(user, Mapping) else {}
            raise ValueError(
                f"M365 user {found.get('id')!r} ({found.get('userPrincipalName')!r}) of tenant {tenant_id!r}: {exc}"
            ) from None
    columns = tuple(zip(*rows)) if rows else tuple(() for _ in USER_COLUMNS)
    return dict(zip(USER_COLUMNS, columns))


def m365_users_frame(loads: Sequence[TenantLoad]) -> pd.DataFrame:
    """The users of every loaded tenant, raw or compacted; ValueError names a malformed record."""
    parts = [
        load.user_columns if load.user_columns is not None else _user_columns(load)
        for load in loads
        if load.status == "loaded"
    ]
    if not any(part["user_id"] for part in parts):
        return _empty(USER_COLUMNS, _USER_DTYPES)
    data = {column: [value for part in parts for value in part[column]] for column in USER_COLUMNS}
    return pd.DataFrame(data, columns=USER_COLUMNS).astype(_USER_DTYPES)


def _gap_text(load: TenantLoad, user: Mapping[str, Any], name: str) -> str:
    return (
        f"malformed data: M365 user {user.get('id')!r} ({user.get('userPrincipalName')!r}) of tenant "
        f"{load.tenant.tenant_id!r} has no {name} property; the sync's filters need it, so the tenant "
        "is not planned (an unknown value is not an empty one)"
    )


def _lacks(user: Mapping[str, Any], name: str) -> bool:
    # Absent is unknown; so is a null licence list (Graph always sends a list, empty or not).
    return name not in user or (name == "assignedLicenses" and user[name] is None)


_SELECTED = frozenset(USER_SELECT)


def _user_gaps(load: TenantLoad) -> dict[str, tuple[int, str]]:
    """For each $select-ed property some user lacks: (index of the first such user, the error text)."""
    gaps: dict[str, tuple[int, str]] = {}
    for index, user in enumerate(load.users):
        if not isinstance(user, Mapping):
            continue
        if _SELECTED.issubset(user.keys()) and user["assignedLicenses"] is not None:
            continue  # the common case, checked at C speed
        for name in USER_SELECT:
            if name not in gaps and _lacks(user, name):
                gaps[name] = (index, _gap_text(load, user, name))
    return gaps


def missing_user_property(load: TenantLoad, required: Sequence[str]) -> str | None:
    """The first user of a loaded tenant that lacks (or has null) one of the `required` Graph properties,
    as an error text; None when every user has them all. Works on raw and compacted loads."""
    if load.user_columns is None:
        for user in load.users:
            for name in required:
                if isinstance(user, Mapping) and _lacks(user, name):
                    return _gap_text(load, user, name)
        return None
    unknown = [name for name in required if name not in USER_SELECT]
    if unknown:
        raise ValueError(f"a compacted tenant load only knows the gaps of $select-ed properties, not {unknown}")
    found = [
        (load.user_gaps[name][0], order, load.user_gaps[name][1])
        for order, name in enumerate(required)
        if name in load.user_gaps
    ]
    return min(found)[2] if found else None


def compact_tenant_load(load: TenantLoad, required_user_properties: Sequence[str] = ()) -> TenantLoad:
    """A loaded tenant with its users typed into column tuples and the raw JSON dropped (`users` empty),
    or failed (its data dropped, the error naming the record) when a user lacks a required property or
    a record cannot be typed. Failed and already compacted loads are returned as they are."""
    if load.status != "loaded" or load.user_columns is not None:
        return load
    problem = missing_user_property(load, required_user_properties)
    if problem:
        return replace(load, status="failed", error=problem, domains=[], users=[])
    try:
        _check_domains(load)
        columns = _user_columns(load)
    except ValueError as exc:
        return replace(load, status="failed", error=f"malformed data: {exc}", domains=[], users=[])
    return replace(load, users=[], user_columns=columns, user_gaps=_user_gaps(load))


def m365_frames(
    loads: Sequence[TenantLoad], required_user_properties: Sequence[str] = ()
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The tenants, domains and users frames; a tenant whose data cannot be typed becomes a failed tenant.

    One tenant's malformed record (say `businessPhones` as a string) must fail that tenant, not the
    whole directory read: its data is dropped and the error names the record. So must a user without
    a property the filters need (`required_user_properties`, e.g. `assignedLicenses` when only licensed
    users are synced): counting such users as unlicensed would deactivate the whole company. Takes raw
    loads or loads compacted as they arrived (`GraphClient.load_all(on_load=...)`, see `compact_tenant_load`).
    """
    checked = []
    for load in loads:
        if load.status == "loaded" and load.user_columns is not None:
            # Compacted without knowing `required_user_properties`: apply them now.
            problem = missing_user_property(load, required_user_properties)
            if problem:
                load = replace(
                    load, status="failed", error=problem, domains=[], users=[], user_columns=None, user_gaps={}
                )
        checked.append(compact_tenant_load(load, required_user_properties))
    return m365_tenants_frame(checked), m365_domains_frame(checked), m365_users_frame(checked)
