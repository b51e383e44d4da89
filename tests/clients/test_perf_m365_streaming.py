"""Streaming the M365 read into the frames: each tenant's users typed into columns as it loads, the raw
Graph JSON dropped, with the same frames and the same per-tenant failures as building from raw loads."""

from __future__ import annotations

import asyncio
import copy
from functools import partial
from typing import Any

import pandas as pd

from halo_sync_pipeline.clients import GraphClient, TenantLoad, TenantRef, frames
from halo_sync_pipeline.clients.graph import USER_SELECT
from tests.clients.resource_defaults import graph_settings

REQUIRED = ("assignedLicenses", "accountEnabled", "userType")


def _user(tenant: int, n: int, **extra: Any) -> dict[str, Any]:
    return dict.fromkeys(USER_SELECT) | {
        "id": f"bbbbbbbb-0000-4000-8000-{tenant:06d}{n:06d}", "userPrincipalName": f"u{n}@t{tenant}.com",
        "displayName": f" User {n} ", "mail": f"U{n}@T{tenant}.com", "businessPhones": ["", "+44 1"],
        "proxyAddresses": [f"SMTP:u{n}@t{tenant}.com", f"smtp:alias{n}@t{tenant}.com"], "assignedLicenses": [{"skuId": "x"}],
        "accountEnabled": True, "userType": "Member",
    } | extra  # fmt: skip


def _load(tenant: int, users: list[Any], domains: list[Any] | None = None, status: str = "loaded") -> TenantLoad:
    return TenantLoad(
        TenantRef(f"AAAAAAAA-0000-4000-8000-{tenant:012d}", f"Tenant {tenant}", f"t{tenant}.com"),
        status,  # type: ignore[arg-type]
        error=None if status == "loaded" else "Graph GET /v1.0/users answered 403",
        domains=[{"id": f"T{tenant}.com", "isVerified": True, "isDefault": True}] if domains is None else domains,
        users=users,
    )


def _estate() -> list[TenantLoad]:
    return [
        _load(1, [_user(1, n) for n in range(3)]),
        _load(2, [_user(2, 0), _user(2, 1, businessPhones="+44 2")]),  # malformed: fails alone, named
        _load(3, [_user(3, 0), _user(3, 1, assignedLicenses=None)]),  # unknown licences: fails when required
        _load(4, [_user(4, 0)], domains=[{"id": "t4.com", "isVerified": "maybe", "isDefault": True}]),  # bad domain
        _load(5, [], status="failed"),
        _load(6, []),  # loaded, no users
        _load(7, [_user(7, 0), "not a user"]),
        _load(8, [_user(8, 0), {k: v for k, v in _user(8, 1).items() if k != "userType"}]),  # property absent
    ]


def _same(left: tuple[pd.DataFrame, ...], right: tuple[pd.DataFrame, ...]) -> None:
    for got, expected in zip(left, right):
        pd.testing.assert_frame_equal(got, expected)


def test_compacted_loads_give_the_frames_and_failures_of_raw_loads() -> None:
    for required in (REQUIRED, ()):
        raw = frames.m365_frames(copy.deepcopy(_estate()), required)
        compacted = [frames.compact_tenant_load(load, required) for load in _estate()]
        assert all(load.users == [] for load in compacted)  # the raw JSON is gone
        _same(frames.m365_frames(compacted, required), raw)
        tenants = raw[0].set_index("tenant_id")
        assert tenants["status"].tolist() == (
            ["loaded", "failed", "failed", "failed", "failed", "loaded", "failed", "failed"] if required
            else ["loaded", "failed", "loaded", "failed", "failed", "loaded", "failed", "loaded"]
        )  # fmt: skip
        errors = tenants["error"].tolist()
        assert "M365 user 'bbbbbbbb-0000-4000-8000-000002000001' ('u1@t2.com') of tenant" in errors[1]
        assert "businessPhones: expected a list, got str" in errors[1]
        assert "M365 domain 't4.com'" in errors[3] and "isVerified" in errors[3]
        assert "expected an object, got str" in errors[6]
        if required:
            assert (
                "'u1@t3.com') of tenant 'AAAAAAAA-0000-4000-8000-000000000003' has no assignedLicenses property"
                in errors[2]
            )
            assert "has no userType property" in errors[7]


def test_required_properties_apply_to_loads_compacted_without_them() -> None:
    # The client may compact before the settings are known; m365_frames still fails such tenants.
    compacted = [frames.compact_tenant_load(load) for load in _estate()]
    _same(frames.m365_frames(compacted, REQUIRED), frames.m365_frames(_estate(), REQUIRED))


def test_load_all_streams_each_tenant_into_columns_against_the_sandbox(sandbox_factory, small_estate) -> None:
    sandbox = sandbox_factory(small_estate)
    env = sandbox.env

    async def read(on_load: Any) -> list[TenantLoad]:
        async with GraphClient(
            env["M365_LOGIN_URL"], env["M365_GRAPH_URL"], env["M365_PARTNER_TENANT_ID"], env["M365_CLIENT_ID"],
            env["M365_CLIENT_SECRET"], refresh_token=env["M365_REFRESH_TOKEN"], verify=env["HALO_SYNC_CA_BUNDLE"],
            **graph_settings(),
        ) as graph:  # fmt: skip
            return await graph.load_all(await graph.tenants(), on_load=on_load)

    streamed = asyncio.run(read(partial(frames.compact_tenant_load, required_user_properties=REQUIRED)))
    raw = asyncio.run(read(None))
    loaded = [load for load in streamed if load.status == "loaded"]
    assert loaded and all(load.users == [] and load.user_columns is not None for load in loaded)
    assert [load.user_count for load in loaded] == [len(r.users) for r in raw if r.status == "loaded"]
    assert sum(load.user_count for load in loaded) > 0
    (tenants, *rest), (raw_tenants, *raw_rest) = (
        frames.m365_frames(streamed, REQUIRED),
        frames.m365_frames(raw, REQUIRED),
    )
    # The unconsented tenant's error carries a trace id of its own request: compare the rest.
    assert tenants["error"].str.split(" Trace ID").str[0].equals(raw_tenants["error"].str.split(" Trace ID").str[0])
    _same((tenants.drop(columns="error"), *rest), (raw_tenants.drop(columns="error"), *raw_rest))
