"""The sandbox's JSON answers: orjson's encoder, the same bytes starlette's own JSONResponse sends."""

from __future__ import annotations

from typing import Any

import pytest
from starlette import responses

from halo_sync_pipeline.sandbox.runtime import JSONResponse

BODIES: list[Any] = [
    {"record_count": 2, "users": [{"id": 1, "name": "Zoë Ångström", "inactive": False, "site_id": None}]},
    [{"displayName": "Mallory\u202eevil", "surname": "NUL\x00here", "mail": "a@b.example", "score": 0.1}],
    {"nested": {"list": [1, 2.5, True, None, "tab\tand\nnewline", 'quote"back\\slash']}, "big": 2**53},
    {"@odata.nextLink": "https://graph.example/v1.0/users?$skiptoken=x%20y", "value": []},
    {1: "int keys, as Python's json writes them"},
]


@pytest.mark.parametrize("body", BODIES)
def test_the_sandbox_sends_the_bytes_starlette_would(body: Any) -> None:
    ours = JSONResponse(body, status_code=201, headers={"x-test": "1"})
    theirs = responses.JSONResponse(body, status_code=201, headers={"x-test": "1"})
    assert ours.body == theirs.body
    assert ours.headers["content-type"] == theirs.headers["content-type"] == "application/json"
    assert ours.headers["content-length"] == theirs.headers["content-length"]
