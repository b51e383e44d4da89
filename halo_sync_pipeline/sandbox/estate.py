"""Loading and validating an estate: the Halo + Microsoft 365 data a sandbox starts from.

The format is documented by estate.schema.json. On top of the schema, `load_estate` checks
referential integrity so that a malformed estate is refused as a whole, with a message naming
each bad record (`halo.users[12] (id 5031): site_id 77 does not exist`), before anything is loaded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

MAX_PROBLEMS_SHOWN = 20
# Azure AD connection types of Halo's Microsoft integration.
PARTNER_CONNECTION_TYPE = 2  # Microsoft Partner: one connection, many customer tenants
# The connections of an estate without `halo.azure_connections`.
DEFAULT_AZURE_CONNECTIONS = ({"id": 1, "name": "Microsoft Partner", "type": PARTNER_CONNECTION_TYPE},)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class EstateError(ValueError):
    """A malformed estate; `problems` lists every bad record found (message shows the first ones)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        text = "invalid estate:\n  " + "\n  ".join(shown) + (f"\n  ... and {more} more" if more else "")
        super().__init__(text)


@cache
def estate_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(resources.files(__package__).joinpath("estate.schema.json").read_text())
    return schema


# The big arrays of an estate and the schema of one of their elements. Their elements are checked
# with a compiled checker first (jsonschema takes ~90 s for 200k users); only elements it rejects
# go through jsonschema, for its error messages.
_RECORD_ARRAYS = {
    ("halo", "clients"): "client",
    ("halo", "sites"): "site",
    ("halo", "users"): "user",
    ("m365", "tenants"): "tenant",
}


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline_refs(defs[node["$ref"].removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


@cache
def _record_schema(def_name: str) -> dict[str, Any]:
    definitions: dict[str, Any] = estate_schema()["$defs"]
    record: dict[str, Any] = _inline_refs(definitions[def_name], definitions)
    return record


@cache
def _record_validator(def_name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(_record_schema(def_name))


@cache
def _skeleton_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(estate_schema())


@cache
def _record_checker(def_name: str) -> Callable[[Any], bool]:
    return compile_checker(_record_schema(def_name))


# Exact Python types of parsed JSON (bool is not an integer in JSON Schema).
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "array": (list,),
    "object": (dict,),
}
_ANNOTATIONS = frozenset({"description", "title", "$schema", "$id"})


def compile_checker(schema: dict[str, Any]) -> Callable[[Any], bool]:
    """A fast yes/no check for the JSON Schema subset the estate schema uses (refs inlined).

    Never more lenient than jsonschema: a keyword it does not implement is an error here.
    """
    checks: list[Callable[[Any], bool]] = []
    unknown = (
        set(schema)
        - _ANNOTATIONS
        - {
            "type",
            "required",
            "properties",
            "additionalProperties",
            "items",
            "pattern",
            "minimum",
            "minLength",
            "enum",
            "oneOf",
        }
    )
    if unknown or schema.get("additionalProperties") not in (None, True, False):
        raise ValueError(f"estate schema uses keywords the fast checker does not implement: {sorted(unknown)}")
    if "type" in schema:
        names = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
        types = frozenset(t for name in names for t in _JSON_TYPES[name])
        checks.append(lambda v: type(v) in types)
    if "enum" in schema:
        allowed = schema["enum"]
        checks.append(lambda v: any(v == a and type(v) is type(a) for a in allowed))
    if "oneOf" in schema:
        options = [compile_checker(o) for o in schema["oneOf"]]
        checks.append(lambda v: sum(o(v) for o in options) == 1)
    if "pattern" in schema:
        search = re.compile(schema["pattern"]).search
        checks.append(lambda v: not isinstance(v, str) or search(v) is not None)
    if "minLength" in schema:
        min_length: int = schema["minLength"]
        checks.append(lambda v: not isinstance(v, str) or len(v) >= min_length)
    if "minimum" in schema:
        minimum: float = schema["minimum"]
        checks.append(lambda v: type(v) not in (int, float) or v >= minimum)
    if "items" in schema:
        item = compile_checker(schema["items"])
        checks.append(lambda v: not isinstance(v, list) or all(item(i) for i in v))
    checks.extend(_object_checks(schema))
    if len(checks) == 1:
        return checks[0]
    return lambda value: all(check(value) for check in checks)


def _object_checks(schema: dict[str, Any]) -> list[Callable[[Any], bool]]:
    checks: list[Callable[[Any], bool]] = []
    required = schema.get("required", [])
    if required:
        checks.append(lambda v: not isinstance(v, dict) or all(k in v for k in required))
    props = {k: compile_checker(s) for k, s in schema.get("properties", {}).items()}
    if props:
        checks.append(lambda v: not isinstance(v, dict) or all(p(v[k]) for k, p in props.items() if k in v))
    if schema.get("additionalProperties") is False:
        known = frozenset(props)
        checks.append(lambda v: not isinstance(v, dict) or known.issuperset(v))
    return checks


def load_estate(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    """The validated estate from a JSON file path or an already parsed dict (returned as is)."""
    estate = _read(Path(source)) if isinstance(source, str | Path) else source
    problems = list(_schema_problems(estate))
    if not problems:
        problems = list(_integrity_problems(estate))
    if problems:
        raise EstateError(problems)
    return estate


def _read(path: Path) -> dict[str, Any]:
    try:
        estate: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return estate
    except FileNotFoundError:
        raise EstateError([f"{path}: no such file"]) from None
    except json.JSONDecodeError as exc:
        raise EstateError([f"{path}: not valid JSON: {exc}"]) from None


def _record_label(estate: Any, path: list[Any]) -> tuple[str, list[Any]]:
    """`halo.users[12] (id 5031)` for the record a schema error path points into, and the rest of the path."""
    label, rest = "", list(path)
    node = estate
    while rest:
        key = rest.pop(0)
        if isinstance(key, int):
            label += f"[{key}]"
            node = node[key]
            record_id = node.get("id", node.get("customerId")) if isinstance(node, dict) else None
            if record_id is not None:
                label += f" (id {record_id})"
            break
        label += f".{key}" if label else str(key)
        node = node[key]
    return label or "(estate)", rest


def _schema_problems(estate: Any) -> Iterator[str]:
    skeleton, records = _split_records(estate)
    for err in _sorted_errors(_skeleton_validator().iter_errors(skeleton)):
        yield _describe(estate, list(err.absolute_path), err.message)
    for (section, key), def_name in _RECORD_ARRAYS.items():
        check = _record_checker(def_name)
        for i, record in enumerate(records.get((section, key), [])):
            if not check(record):
                for err in _sorted_errors(_record_validator(def_name).iter_errors(record)):
                    yield _describe(estate, [section, key, i, *err.absolute_path], err.message)


def _split_records(estate: Any) -> tuple[Any, dict[tuple[str, str], list[Any]]]:
    """The estate with its record arrays emptied (when it is shaped enough to have them), and those arrays."""
    if not isinstance(estate, dict):
        return estate, {}
    skeleton, records = dict(estate), {}
    for section, key in _RECORD_ARRAYS:
        part = skeleton.get(section)
        if isinstance(part, dict) and isinstance(part.get(key), list):
            records[(section, key)] = part[key]
            skeleton[section] = dict(skeleton[section]) | {key: []}
    return skeleton, records


def _sorted_errors(errors: Iterable[jsonschema.ValidationError]) -> list[jsonschema.ValidationError]:
    return sorted(errors, key=lambda e: [str(p) for p in e.absolute_path])


def _describe(estate: Any, path: list[Any], message: str) -> str:
    label, rest = _record_label(estate, path)
    field = ".".join(str(p) for p in rest)
    return f"{label}: {field + ': ' if field else ''}{message}"


def _duplicates(records: Iterable[tuple[str, Any]], what: str) -> Iterator[str]:
    seen: set[Any] = set()
    for label, key in records:
        if key in seen:
            yield f"{label}: duplicate {what} {key}"
        seen.add(key)


def azure_connections(halo: dict[str, Any]) -> list[dict[str, Any]]:
    """The estate's Azure AD connections, or the default partner connection when it lists none."""
    found = halo.get("azure_connections")
    return [dict(c) for c in (DEFAULT_AZURE_CONNECTIONS if found is None else found)]


def default_details_id(connections: Iterable[dict[str, Any]]) -> int | None:
    """The connection an azure_tenants entry without details_id belongs to: the first type-2 one."""
    return next((c["id"] for c in connections if c["type"] == PARTNER_CONNECTION_TYPE), None)


def _integrity_problems(estate: dict[str, Any]) -> Iterator[str]:
    yield from _halo_problems(estate["halo"])
    yield from _m365_problems(estate["m365"])


def _halo_problems(halo: dict[str, Any]) -> Iterator[str]:
    clients, sites, users = halo["clients"], halo["sites"], halo["users"]
    for kind, records in (("clients", clients), ("sites", sites), ("users", users)):
        yield from _duplicates(((f"halo.{kind}[{i}]", r["id"]) for i, r in enumerate(records)), "id")
    client_ids = {c["id"] for c in clients}
    site_client = {s["id"]: s["client_id"] for s in sites}
    for i, site in enumerate(sites):
        if site["client_id"] not in client_ids:
            yield f"halo.sites[{i}] (id {site['id']}): client_id {site['client_id']} does not exist"
    for i, client in enumerate(clients):
        label = f"halo.clients[{i}] (id {client['id']})"
        main = client.get("main_site_id")
        if main is not None and site_client.get(main) != client["id"]:
            yield f"{label}: main_site_id {main} is not a site of this client"
        # Odd tenant ids (n/a, ...) are data real Halo holds, not identities: only GUIDs must be unique.
        tenant_ids = (
            (label, t["azure_tenant_id"].lower())
            for t in client.get("azure_tenants", [])
            if _GUID.match(t["azure_tenant_id"])
        )
        yield from _duplicates(tenant_ids, "azure_tenant_id")
    yield from _azure_tenant_problems(halo)
    for i, user in enumerate(users):
        label = f"halo.users[{i}] (id {user['id']})"
        if user["site_id"] not in site_client:
            yield f"{label}: site_id {user['site_id']} does not exist"
        # SQLite column names are case-insensitive, so CFa and cfA would be one column.
        names = ((label, cf["name"].lower()) for cf in user.get("customfields", []))
        yield from _duplicates(names, "custom field")


def _azure_tenant_problems(halo: dict[str, Any]) -> Iterator[str]:
    connections = azure_connections(halo)
    yield from _duplicates(((f"halo.azure_connections[{i}]", c["id"]) for i, c in enumerate(connections)), "id")
    known, default = {c["id"] for c in connections}, default_details_id(connections)
    entry_ids: list[tuple[str, Any]] = []
    for i, client in enumerate(halo["clients"]):
        for j, entry in enumerate(client.get("azure_tenants", [])):
            label = f"halo.clients[{i}] (id {client['id']}): azure_tenants[{j}]"
            details_id = entry.get("details_id")
            if details_id is None and default is None:
                yield f"{label}: no details_id and no type-{PARTNER_CONNECTION_TYPE} connection to default to"
            elif details_id is not None and details_id not in known:
                yield f"{label}: details_id {details_id} is not an Azure AD connection"
            if entry.get("id") is not None:
                entry_ids.append((label, entry["id"]))
    # Entry ids are the rows of one Halo table, so they are unique across clients.
    yield from _duplicates(entry_ids, "azure_tenants entry id")


def _m365_problems(m365: dict[str, Any]) -> Iterator[str]:
    tenants = m365["tenants"]
    yield from _duplicates(
        ((f"m365.tenants[{i}]", t["customerId"].lower()) for i, t in enumerate(tenants)), "customerId"
    )
    partner = m365["partner_tenant_id"].lower()
    for i, tenant in enumerate(tenants):
        label = f"m365.tenants[{i}] (id {tenant['customerId']})"
        if tenant["customerId"].lower() == partner:
            yield f"{label}: a customer tenant cannot be the partner tenant"
        domains = tenant.get("domains", [])
        yield from _duplicates(((label, d["id"].lower()) for d in domains), "domain")
        if domains and tenant["defaultDomainName"].lower() not in {d["id"].lower() for d in domains}:
            yield f"{label}: defaultDomainName {tenant['defaultDomainName']} is not among its domains"
        if sum(bool(d.get("isDefault")) for d in domains) > 1:
            yield f"{label}: more than one domain has isDefault true"
        yield from _duplicates(((label, u["id"].lower()) for u in tenant.get("users", [])), "user id")
        yield from _duplicates(
            ((label, u["userPrincipalName"].lower()) for u in tenant.get("users", [])), "userPrincipalName"
        )
