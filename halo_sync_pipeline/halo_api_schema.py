"""Validation of Halo write bodies against Halo's own OpenAPI request schemas.

Shared by the sandbox (which answers 400 like Halo does for a wrong type) and by the
sync's checks (which refuse a plan whose bodies Halo would reject or silently drop).
Real Halo drops fields its schema does not know; that is how the seed script's
`companyID`/`lastName` went unnoticed, so unknown fields are reported separately
from type errors instead of being rejected.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

# Halo endpoint (the path under /api) -> OpenAPI schema name of one element of the POSTed array.
ENDPOINT_SCHEMAS = {"Client": "Area", "Users": "Users", "Site": "Site", "Report": "AnalyzerProfile"}
# Keywords whose verdict depends only on a value's JSON type and structure, never on the value itself.
# Below a property whose schema uses only these, two bodies of one shape get the same verdict.
_TYPE_ONLY_KEYWORDS = frozenset(
    {"type", "$ref", "items", "properties", "additionalProperties", "readOnly", "writeOnly", "description", "title",
     "$comment", "deprecated", "nullable", "default", "examples"}
)  # fmt: skip


@dataclass(frozen=True)
class BodyProblems:
    errors: list[str] = field(default_factory=list)
    unknown_fields: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.unknown_fields


def _without_closed_objects(node: Any) -> Any:
    # Unknown fields are counted by us, not rejected, so drop `additionalProperties: false`.
    if isinstance(node, dict):
        return {
            k: _without_closed_objects(v) for k, v in node.items() if not (k == "additionalProperties" and v is False)
        }
    if isinstance(node, list):
        return [_without_closed_objects(v) for v in node]
    return node


@cache
def _defs() -> dict[str, Any]:
    text = resources.files("halo_sync_pipeline").joinpath("halo_api_schemas.json").read_text()
    definitions: dict[str, Any] = _without_closed_objects(json.loads(text)["$defs"])
    return definitions


@cache
def _validator(schema_name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$defs": _defs(), "$ref": f"#/$defs/{schema_name}"})


@cache
def known_fields(endpoint: str) -> frozenset[str]:
    """Top-level property names Halo's schema declares for one element of a POST to `endpoint`."""
    return frozenset(_defs()[ENDPOINT_SCHEMAS[endpoint]].get("properties", {}))


def check_body(endpoint: str, body: Any) -> BodyProblems:
    """Type errors and unknown top-level fields of one element of a POST /api/{endpoint} array."""
    if endpoint not in ENDPOINT_SCHEMAS:
        raise KeyError(f"no Halo schema known for endpoint {endpoint!r}")
    if not isinstance(body, dict):
        return BodyProblems(errors=[f"expected a JSON object, got {type(body).__name__}"])
    errors = []
    for err in sorted(_validator(ENDPOINT_SCHEMAS[endpoint]).iter_errors(body), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in err.absolute_path) or "(body)"
        errors.append(f"{where}: {err.message}")
    unknown = sorted(set(body) - known_fields(endpoint))
    return BodyProblems(errors=errors, unknown_fields=unknown)


def check_bodies(endpoint: str, bodies: Iterable[Any]) -> list[BodyProblems]:
    """`check_body` of every body, validating each *shape* once (see `ShapeCheck`)."""
    check = ShapeCheck(endpoint)
    return [check(body) for body in bodies]


class ShapeCheck:
    """`check_body` for many bodies, validating each *shape* once: bodies with the same keys, the same
    JSON value types (recursively) and, under a property whose schema constrains values (`maxLength`,
    `enum`, …), the same values get the same verdict. A shape that passes passes for all its bodies; the
    bodies of a failing shape (rare) are validated one by one, so each names its own values. Call it
    body by body, so a caller can parse, check and drop each body (no list of parsed bodies)."""

    def __init__(self, endpoint: str) -> None:
        if endpoint not in ENDPOINT_SCHEMAS:
            raise KeyError(f"no Halo schema known for endpoint {endpoint!r}")
        self.endpoint = endpoint
        self._validator = _validator(ENDPOINT_SCHEMAS[endpoint])
        self._known = known_fields(endpoint)
        self._failing: dict[Hashable, bool] = {}  # shape -> whether its bodies have problems

    @property
    def shapes(self) -> int:
        return len(self._failing)

    def __call__(self, body: Any) -> BodyProblems:
        key = body_shape(self.endpoint, body)
        if key is None:
            return check_body(self.endpoint, body)
        failing = self._failing.get(key)
        if failing is None:
            failing = self._failing[key] = not self._validator.is_valid(body) or not self._known.issuperset(body)
        return check_body(self.endpoint, body) if failing else BodyProblems()


def body_shape(endpoint: str, body: Any) -> Hashable | None:
    """The shape of a POST element: its keys with the type skeleton of each value (the value itself
    under a value-constrained property); None for a non-object or anything not plain JSON."""
    if not isinstance(body, dict):
        return None
    types = tuple(map(type, body.values()))
    exact = _value_constrained_fields(endpoint)
    if _FLAT_TYPES.issuperset(types) and exact.isdisjoint(body):
        # The common case, flat bodies built by one piece of code: keys in their order and value types.
        return tuple(body), types
    try:
        return tuple(sorted((key, _exact(value) if key in exact else _skeleton(value)) for key, value in body.items()))
    except (TypeError, ValueError):  # a key or value JSON has no shape for: check it on its own
        return None


# Value types whose JSON Schema type is their Python type (bool is kept apart from int by `type`);
# a float is not here: an integral float is a JSON Schema "integer", another is not.
_FLAT_TYPES = frozenset({str, int, bool, type(None)})


def _skeleton(value: Any) -> Hashable:
    # bool before int (a bool is an int to Python, not to JSON Schema); an integral float is a
    # JSON Schema "integer", so it is kept apart from other floats.
    if value is None or isinstance(value, (bool, str)):
        return type(value).__name__
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "integral_float" if value.is_integer() else "float"
    if isinstance(value, dict):
        return ("object", tuple(sorted((_str_key(k), _skeleton(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("array", tuple(dict.fromkeys(_skeleton(v) for v in value)))
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _str_key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError("object key is not text")
    return key


def _exact(value: Any) -> Hashable:
    return ("exact", json.dumps(value, sort_keys=True, allow_nan=False))


@cache
def _value_constrained_fields(endpoint: str) -> frozenset[str]:
    """Top-level properties whose schema (following $refs) uses a keyword beyond `_TYPE_ONLY_KEYWORDS`."""
    defs = _defs()
    properties = defs[ENDPOINT_SCHEMAS[endpoint]].get("properties", {})
    return frozenset(name for name, schema in properties.items() if _constrains_values(schema, defs, set()))


def _constrains_values(node: Any, defs: dict[str, Any], seen: set[str]) -> bool:
    if isinstance(node, list):
        return any(_constrains_values(v, defs, seen) for v in node)
    if not isinstance(node, dict):
        return False
    for key, value in node.items():
        if key == "$ref":
            name = str(value).rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                if _constrains_values(defs.get(name, {}), defs, seen):
                    return True
        elif key == "properties":
            if any(_constrains_values(v, defs, seen) for v in value.values()):
                return True
        elif (
            key not in _TYPE_ONLY_KEYWORDS or isinstance(value, (dict, list)) and _constrains_values(value, defs, seen)
        ):
            return True
    return False
