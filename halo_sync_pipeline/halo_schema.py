"""Validation of Halo write bodies against Halo's own OpenAPI request schemas.

Shared by the sandbox (which answers 400 like Halo does for a wrong type) and by the
sync's checks (which refuse a plan whose bodies Halo would reject or silently drop).
Real Halo drops fields its schema does not know; that is how the seed script's
`companyID`/`lastName` went unnoticed, so unknown fields are reported separately
from type errors instead of being rejected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

# Halo endpoint (the path under /api) -> OpenAPI schema name of one element of the POSTed array.
ENDPOINT_SCHEMAS = {"Client": "Area", "Users": "Users", "Site": "Site", "Report": "AnalyzerProfile"}


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
        return {k: _without_closed_objects(v) for k, v in node.items() if not (k == "additionalProperties" and v is False)}
    if isinstance(node, list):
        return [_without_closed_objects(v) for v in node]
    return node


@cache
def _defs() -> dict[str, Any]:
    text = resources.files("halo_sync_pipeline").joinpath("halo_api_schemas.json").read_text()
    return _without_closed_objects(json.loads(text)["$defs"])


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
