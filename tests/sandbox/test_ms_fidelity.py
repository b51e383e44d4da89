"""The sandbox's Microsoft side where it must behave like the real services, over real HTTPS on loopback:
consent under the Secure Application Model, and users answers that leave out a property that was asked for.

Each behaviour is checked at the wire (plain httpx) and through the pipeline's own GraphClient, which must
fail exactly the affected tenant with a message naming it and no secret in it.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from halo_sync_pipeline.clients import GraphClient, TenantLoad
from halo_sync_pipeline.clients.graph import USER_SELECT
from halo_sync_pipeline.clients.retry import RetryPolicy
from halo_sync_pipeline.sandbox.server import RunningSandbox
from tests.clients.resource_defaults import graph_settings
from tests.conftest import CONTOSO_TENANT_ID, FABRIKAM_TENANT_ID, NORTHWIND_TENANT_ID

QUICK = RetryPolicy(deadline_s=30.0, wait_initial_s=0.01, wait_max_s=0.05, wait_jitter_s=0.0)
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
USERS_SELECTED = f"/v1.0/users?$select={','.join(USER_SELECT)}"

Sandbox = Callable[..., RunningSandbox]


@pytest.fixture
def small_estate(small_estate: dict[str, Any]) -> dict[str, Any]:
    """conftest's estate, with Contoso and Fabrikam consented and Northwind not, said here since the tests rely on it."""
    for tenant in small_estate["m365"]["tenants"]:
        tenant["consented"] = tenant["customerId"] != NORTHWIND_TENANT_ID
    return small_estate


def _graph_client(sandbox: RunningSandbox, **kwargs: Any) -> GraphClient:
    c = sandbox.credentials
    if not kwargs.get("app_only"):
        kwargs.setdefault("refresh_token", c.m365_refresh_token)
    return GraphClient(sandbox.ms_url, sandbox.ms_url, c.partner_tenant_id, c.m365_client_id, c.m365_client_secret,
                       verify=str(sandbox.ca_bundle), **graph_settings(retry_policy=QUICK, **kwargs))  # fmt: skip


def _load_all(sandbox: RunningSandbox, **kwargs: Any) -> dict[str, TenantLoad]:
    async def go() -> list[TenantLoad]:
        async with _graph_client(sandbox, **kwargs) as graph:
            return await graph.load_all(await graph.tenants())

    return {load.tenant.tenant_id: load for load in asyncio.run(go())}


def _assert_no_secret(sandbox: RunningSandbox, *texts: str) -> None:
    c = sandbox.credentials
    for text in texts:
        for secret in (c.m365_client_secret, c.m365_refresh_token, c.halo_client_secret):
            assert secret not in text


def _admin(sandbox: RunningSandbox, path: str, body: dict[str, Any]) -> httpx.Response:
    with httpx.Client(verify=str(sandbox.ca_bundle), timeout=10) as http:
        return http.post(f"{sandbox.halo_url}/_sandbox/{path}", json=body)


def _refresh(sandbox: RunningSandbox, http: httpx.Client, tenant: str) -> httpx.Response:
    c = sandbox.credentials
    return http.post(f"{sandbox.ms_url}/{tenant}/oauth2/v2.0/token",
                     data={"grant_type": "refresh_token", "client_id": c.m365_client_id,
                           "client_secret": c.m365_client_secret, "refresh_token": c.m365_refresh_token,
                           "scope": GRAPH_SCOPE})  # fmt: skip


def _https(sandbox: RunningSandbox) -> httpx.Client:
    return httpx.Client(verify=str(sandbox.ca_bundle), timeout=10)


# --- consent under the Secure Application Model --------------------------------------------------------------


def test_refresh_token_for_an_unconsented_tenant_is_aadsts65001(sandbox_factory: Sandbox,
                                                                small_estate: dict[str, Any]) -> None:  # fmt: skip
    sandbox = sandbox_factory(small_estate)
    with _https(sandbox) as http:
        refused = _refresh(sandbox, http, NORTHWIND_TENANT_ID)
        assert refused.status_code == 400
        body = refused.json()
        assert body["error"] == "invalid_grant" and body["error_codes"] == [65001]
        assert body["error_description"].startswith("AADSTS65001: The user or administrator has not consented")
        _assert_no_secret(sandbox, refused.text)
        assert _refresh(sandbox, http, CONTOSO_TENANT_ID).status_code == 200


def test_graph_client_under_the_refresh_token_fails_exactly_the_unconsented_tenant(
    sandbox_factory: Sandbox, small_estate: dict[str, Any]
) -> None:
    sandbox = sandbox_factory(small_estate)
    loads = _load_all(sandbox)
    assert {t: load.status for t, load in loads.items()} == {
        CONTOSO_TENANT_ID: "loaded", FABRIKAM_TENANT_ID: "loaded", NORTHWIND_TENANT_ID: "failed"}  # fmt: skip
    northwind = loads[NORTHWIND_TENANT_ID]
    assert northwind.users == [] and northwind.domains == []
    assert f"no token for tenant {NORTHWIND_TENANT_ID}: invalid_grant: AADSTS65001" in (northwind.error or "")
    assert [len(loads[t].users) for t in (CONTOSO_TENANT_ID, FABRIKAM_TENANT_ID)] == [2, 2]
    _assert_no_secret(sandbox, northwind.error or "", repr(northwind))


def test_consent_withdrawn_after_a_token_was_issued_is_401_identity_not_found(
    sandbox_factory: Sandbox, small_estate: dict[str, Any]
) -> None:
    """A token from before the withdrawal is refused by Graph; the client's one renewal is refused too."""
    sandbox = sandbox_factory(small_estate)
    withdrawn = copy.deepcopy(small_estate)
    withdrawn["m365"]["tenants"][0]["consented"] = False  # Contoso

    async def go() -> tuple[list[TenantLoad], list[TenantLoad], int, dict[str, Any]]:
        async with _graph_client(sandbox) as graph:
            tenants = await graph.tenants()
            before = await graph.load_all(tenants)  # Contoso's token is now cached in the client
            stale = graph._tokens[CONTOSO_TENANT_ID][0]
            assert _admin(sandbox, "reset", {"estate": withdrawn}).status_code == 200
            with _https(sandbox) as http:
                answer = http.get(f"{sandbox.ms_url}/v1.0/users", headers={"Authorization": f"Bearer {stale}"})
            return before, await graph.load_all(tenants), answer.status_code, answer.json()

    before, after, status, body = asyncio.run(go())
    assert status == 401 and body["error"]["code"] == "Authorization_IdentityNotFound"
    assert [load.status for load in before] == ["loaded", "loaded", "failed"]
    contoso, fabrikam, northwind = after
    assert contoso.status == "failed" and f"tenant {CONTOSO_TENANT_ID}" in (contoso.error or "")
    assert "AADSTS65001" in (contoso.error or "")  # 401 -> one fresh token -> refused for want of consent
    assert fabrikam.status == "loaded" and northwind.status == "failed"


# --- users answers without a property ------------------------------------------------------------------------


def _users(sandbox: RunningSandbox, http: httpx.Client, tenant: str, path: str = USERS_SELECTED) -> list[dict]:
    token = _refresh(sandbox, http, tenant).json()["access_token"]
    answer = http.get(f"{sandbox.ms_url}{path}", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    return answer.json()["value"]


def test_estate_field_sandbox_omit_user_properties_leaves_them_out(sandbox_factory: Sandbox,
                                                                   small_estate: dict[str, Any]) -> None:  # fmt: skip
    small_estate["m365"]["tenants"][1]["sandbox_omit_user_properties"] = ["assignedLicenses"]  # Fabrikam
    sandbox = sandbox_factory(small_estate)
    with _https(sandbox) as http:
        fabrikam = _users(sandbox, http, FABRIKAM_TENANT_ID)
        assert fabrikam and all("assignedLicenses" not in u and set(u) == set(USER_SELECT) - {"assignedLicenses"}
                                for u in fabrikam)  # fmt: skip
        assert all("assignedLicenses" not in u for u in _users(sandbox, http, FABRIKAM_TENANT_ID, "/beta/users"))
        assert all(u["assignedLicenses"] for u in _users(sandbox, http, CONTOSO_TENANT_ID))
    loads = _load_all(sandbox)
    assert loads[FABRIKAM_TENANT_ID].status == "failed" and loads[FABRIKAM_TENANT_ID].users == []
    assert f"tenant {FABRIKAM_TENANT_ID}: user #0" in (loads[FABRIKAM_TENANT_ID].error or "")
    assert "lacks assignedLicenses" in (loads[FABRIKAM_TENANT_ID].error or "")
    assert loads[CONTOSO_TENANT_ID].status == "loaded"
    exported = _admin_estate(sandbox)
    assert exported["m365"]["tenants"][1]["sandbox_omit_user_properties"] == ["assignedLicenses"]


def _admin_estate(sandbox: RunningSandbox) -> dict[str, Any]:
    with _https(sandbox) as http:
        return http.get(f"{sandbox.halo_url}/_sandbox/estate").json()


def test_fault_omit_user_properties_is_set_and_cleared_at_run_time(sandbox_factory: Sandbox,
                                                                   small_estate: dict[str, Any]) -> None:  # fmt: skip
    sandbox = sandbox_factory(small_estate)
    answer = _admin(sandbox, "faults", {"omit_user_properties": {CONTOSO_TENANT_ID.upper(): ["assignedlicenses"]}})
    assert answer.status_code == 200
    assert answer.json()["omit_user_properties"] == {CONTOSO_TENANT_ID: ["assignedLicenses"]}
    with _https(sandbox) as http:
        assert all("assignedLicenses" not in u for u in _users(sandbox, http, CONTOSO_TENANT_ID))
        assert all("assignedLicenses" in u for u in _users(sandbox, http, FABRIKAM_TENANT_ID))
    loads = _load_all(sandbox)
    assert loads[CONTOSO_TENANT_ID].status == "failed" and "lacks assignedLicenses" in (
        loads[CONTOSO_TENANT_ID].error or ""
    )
    assert loads[FABRIKAM_TENANT_ID].status == "loaded"

    assert _admin(sandbox, "faults", {"omit_user_properties": {}}).status_code == 200
    assert _load_all(sandbox)[CONTOSO_TENANT_ID].status == "loaded"


@pytest.mark.parametrize("bad", [{"x": ["shoeSize"]}, {"x": "assignedLicenses"}, ["assignedLicenses"]])
def test_a_bad_omit_user_properties_fault_is_400_and_changes_nothing(
    sandbox_factory: Sandbox, small_estate: dict[str, Any], bad: Any
) -> None:
    sandbox = sandbox_factory(small_estate)
    answer = _admin(sandbox, "faults", {"omit_user_properties": bad, "latency_ms": 5})
    assert answer.status_code == 400
    assert sandbox.runtime.faults.omit_user_properties == {} and sandbox.runtime.faults.latency_ms == 0


def test_an_unknown_name_in_sandbox_omit_user_properties_refuses_the_estate(
    sandbox_factory: Sandbox, small_estate: dict[str, Any]
) -> None:
    from halo_sync_pipeline.sandbox.estate import EstateError

    bad = copy.deepcopy(small_estate)
    bad["m365"]["tenants"][2]["sandbox_omit_user_properties"] = ["assignedLicences"]
    with pytest.raises(EstateError, match=r"m365\.tenants\[2\].*assignedLicences"):
        sandbox_factory(bad)
    sandbox = sandbox_factory(small_estate)
    answer = _admin(sandbox, "reset", {"estate": bad})
    assert answer.status_code == 400 and "assignedLicences" in answer.text


def test_a_user_key_absent_from_the_estate_is_still_served_as_null(sandbox_factory: Sandbox,
                                                                   small_estate: dict[str, Any]) -> None:  # fmt: skip
    """Only the sandbox-only field omits: a plain absent key is Graph's "not set", and the tenant loads."""
    erin = small_estate["m365"]["tenants"][0]["users"][1]
    del erin["assignedLicenses"], erin["accountEnabled"]
    sandbox = sandbox_factory(small_estate)
    with _https(sandbox) as http:
        served = {u["id"]: u for u in _users(sandbox, http, CONTOSO_TENANT_ID)}[erin["id"]]
    assert set(served) == set(USER_SELECT)
    assert served["assignedLicenses"] is None and served["accountEnabled"] is None
    contoso = _load_all(sandbox)[CONTOSO_TENANT_ID]
    assert contoso.status == "loaded" and len(contoso.users) == 2
