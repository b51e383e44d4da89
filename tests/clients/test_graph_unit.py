"""GraphClient against MockTransports: msal over the adapter, paging, nextLink origin rule, tenant failures."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from halo_sync_pipeline.clients import GraphClient, TenantRef
from halo_sync_pipeline.clients.graph import USER_SELECT
from halo_sync_pipeline.clients.retry import RetryPolicy
from halo_sync_pipeline.defs.resources import M365Resource
from tests.clients.resource_defaults import graph_settings

LOGIN = "https://login.test"
GRAPH = "https://graph.test"
PARTNER = "00000000-0000-4000-8000-000000000000"
T1 = "11111111-1111-4111-8111-111111111111"
T2 = "22222222-2222-4222-8222-222222222222"
SECRET = "graph-client-secret-xyz"
REFRESH = "partner-refresh-token-xyz"
FAST = RetryPolicy(deadline_s=5.0, wait_initial_s=0.0, wait_max_s=0.0, wait_jitter_s=0.0)


class FakeIdentity:
    """OpenID discovery and a token endpoint for any tenant; tokens are `token.<tenant>.<n>`."""

    def __init__(self) -> None:
        self.issued = 0
        self.forms: list[dict[str, list[str]]] = []
        self.discoveries: list[str] = []  # the paths of OpenID discovery requests (one per msal app built)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        tenant = request.url.path.split("/")[1]
        if request.url.path.endswith("/.well-known/openid-configuration"):
            self.discoveries.append(request.url.path)
            return httpx.Response(
                200,
                json={
                    "token_endpoint": f"{LOGIN}/{tenant}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{LOGIN}/{tenant}/oauth2/v2.0/authorize",
                    "issuer": f"{LOGIN}/{tenant}/v2.0",
                },
            )
        form = parse_qs(request.content.decode())
        self.forms.append(form)
        self.issued += 1
        return httpx.Response(
            200, json={"token_type": "Bearer", "expires_in": 3600, "access_token": f"token.{tenant}.{self.issued}"}
        )


class FakeGraph:
    def __init__(self, users: dict[str, list[dict[str, Any]]], page: int = 2) -> None:
        self.users, self.page = users, page
        self.requests: list[httpx.Request] = []
        self.foreign_for: set[str] = set()
        self.forbidden: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.url.host == "graph.test", "a request left the Graph host"
        tenant = request.headers["authorization"].split(".")[1]
        if tenant in self.forbidden:
            return httpx.Response(
                403, json={"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges"}}
            )
        path = request.url.path
        if path == "/v1.0/contracts":
            return httpx.Response(200, json={"value": [
                {"customerId": T1.upper(), "displayName": "One", "defaultDomainName": "one.com"},
                {"customerId": T2, "displayName": "Two", "defaultDomainName": "two.com"},
                {"customerId": T1, "displayName": "One again", "defaultDomainName": "one.com"},
            ]})  # fmt: skip
        if path == "/v1.0/tenantRelationships/delegatedAdminRelationships":
            return httpx.Response(200, json={"value": [
                {"id": "r1", "status": "active", "customer": {"tenantId": T1, "displayName": "One"}},
                {"id": "r2", "status": "terminated", "customer": {"tenantId": T2, "displayName": "Two"}},
                {"id": "r3", "status": "active", "customer": {"tenantId": T1, "displayName": "One"}},
            ]})  # fmt: skip
        if path == "/v1.0/domains":
            return httpx.Response(
                200, json={"value": [{"id": f"{tenant[:4]}.com", "isVerified": True, "isDefault": True}]}
            )
        assert path == "/v1.0/users"
        skip = int(request.url.params.get("$skiptoken", "0"))
        users = self.users[tenant]
        body: dict[str, Any] = {"value": users[skip : skip + self.page]}
        if skip + self.page < len(users):
            host = "https://evil.test" if tenant in self.foreign_for else GRAPH
            body["@odata.nextLink"] = f"{host}/v1.0/users?$skiptoken={skip + self.page}"
        return httpx.Response(200, json=body)


def _user(n: int) -> dict[str, Any]:
    # Graph answers every $select-ed property, null when unset.
    return dict.fromkeys(USER_SELECT) | {"id": f"aaaaaaaa-0000-4000-8000-{n:012d}", "userPrincipalName": f"u{n}@x.com"}


def make(graph: Callable[[httpx.Request], Any], identity: FakeIdentity | None = None, **kwargs: Any) -> GraphClient:
    """A GraphClient over `graph` (a FakeGraph or any MockTransport handler, sync or async)."""
    kwargs.setdefault("refresh_token", None if kwargs.get("app_only") else REFRESH)
    kwargs.setdefault("retry_policy", FAST)
    return GraphClient(
        LOGIN, GRAPH, PARTNER, "client-id", SECRET,
        transport=httpx.MockTransport(graph), token_transport=httpx.MockTransport(identity or FakeIdentity()),
        **graph_settings(**kwargs),
    )  # fmt: skip


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_contracts_deduplicated_and_lower_cased() -> None:
    async def go() -> list[TenantRef]:
        async with make(FakeGraph({})) as graph:
            return await graph.tenants()

    assert run(go()) == [TenantRef(T1, "One", "one.com"), TenantRef(T2, "Two", "two.com")]


def test_gdap_active_relationships_only() -> None:
    async def go() -> list[TenantRef]:
        async with make(FakeGraph({}), tenant_source="gdap") as graph:
            return await graph.tenants()

    assert run(go()) == [TenantRef(T1, "One")]


def test_users_paged_with_select_and_top_using_refresh_token_per_tenant() -> None:
    fake, identity = FakeGraph({T1: [_user(i) for i in range(5)]}), FakeIdentity()

    async def go() -> Any:
        async with make(fake, identity) as graph:
            return await graph.load_tenant(TenantRef(T1)), graph

    load, graph = run(go())
    assert load.status == "loaded" and [u["id"] for u in load.users] == [_user(i)["id"] for i in range(5)]
    first_users = next(r for r in fake.requests if r.url.path == "/v1.0/users")
    assert first_users.url.params["$select"].split(",") == list(USER_SELECT)
    assert first_users.url.params["$top"] == "999"
    domains = next(r for r in fake.requests if r.url.path == "/v1.0/domains")
    assert domains.url.params["$select"] == "id,isVerified,isDefault"
    assert load.request_counts == {"GET /v1.0/domains": 1, "GET /v1.0/users": 3}
    assert identity.forms[0]["grant_type"] == ["refresh_token"] and identity.forms[0]["refresh_token"] == [REFRESH]
    assert any(s.endswith("https://graph.test/.default") for s in identity.forms[0]["scope"][0].split())
    assert graph.token_request_counts.snapshot()[f"POST /{T1}/oauth2/v2.0/token"] == 1


def test_app_only_uses_client_credentials() -> None:
    fake, identity = FakeGraph({T1: [_user(1)]}), FakeIdentity()

    async def go() -> Any:
        async with make(fake, identity, app_only=True) as graph:
            return await graph.load_tenant(TenantRef(T1))

    assert run(go()).status == "loaded"
    assert identity.forms[0]["grant_type"] == ["client_credentials"]


def test_foreign_next_link_fails_the_tenant_and_sends_nothing_there() -> None:
    fake = FakeGraph({T1: [_user(i) for i in range(3)], T2: [_user(i) for i in range(3)]})
    fake.foreign_for = {T1}

    async def go() -> Any:
        async with make(fake) as graph:
            return await graph.load_all([TenantRef(T1), TenantRef(T2)])

    first, second = run(go())
    assert first.status == "failed" and "refused @odata.nextLink to https://evil.test:443" in (first.error or "")
    assert first.users == [] and first.domains == []
    assert second.status == "loaded" and len(second.users) == 3
    assert all(r.url.host == "graph.test" for r in fake.requests)  # FakeGraph also asserts it


def test_consent_revoked_fails_one_tenant_while_others_load() -> None:
    fake = FakeGraph({T1: [_user(1)], T2: [_user(2)]})
    fake.forbidden = {T1}

    async def go() -> Any:
        async with make(fake) as graph:
            return await graph.load_all([TenantRef(T1), TenantRef(T2)])

    first, second = run(go())
    assert first.status == "failed" and "403" in (first.error or "") and "consent" in (first.error or "")
    assert second.status == "loaded" and second.users == [_user(2)]


def test_malformed_user_fails_the_tenant_and_its_data_is_dropped() -> None:
    fake = FakeGraph({T1: [_user(1), {"id": "x-without-upn"}]})

    async def go() -> Any:
        async with make(fake) as graph:
            return await graph.load_tenant(TenantRef(T1))

    load = run(go())
    assert load.status == "failed" and "user #1 (id 'x-without-upn', upn None) has no userPrincipalName" in (
        load.error or ""
    )
    assert load.users == [] and load.domains == []


def test_a_user_without_a_selected_property_fails_its_tenant_alone() -> None:
    """Graph left assignedLicenses out: reading it as "no licence" would deactivate everyone, so the tenant fails."""
    incomplete = _user(2)
    del incomplete["assignedLicenses"]
    unset = _user(3) | {"assignedLicenses": None, "accountEnabled": None}  # null is Graph's "not set": fine
    fake = FakeGraph({T1: [_user(1), incomplete], T2: [unset]})

    async def go() -> Any:
        async with make(fake) as graph:
            return await graph.load_all([TenantRef(T1), TenantRef(T2)])

    first, second = run(go())
    assert first.status == "failed" and first.users == [] and first.domains == []
    assert f"tenant {T1}: user #1 (id '{incomplete['id']}', upn 'u2@x.com') lacks assignedLicenses" in (
        first.error or ""
    )
    assert second.status == "loaded" and second.users == [unset]


def test_a_domain_without_a_selected_property_fails_its_tenant() -> None:
    fake = FakeGraph({T1: [_user(1)]})
    inner = fake.__call__

    def graph(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1.0/domains":
            return httpx.Response(200, json={"value": [{"id": "one.com", "isDefault": True}]})
        return inner(request)

    async def go() -> Any:
        async with make(graph) as client:
            return await client.load_tenant(TenantRef(T1))

    load = run(go())
    assert load.status == "failed" and "domain #0 ('one.com') lacks isVerified" in (load.error or "")


def test_a_graph_refusal_names_the_tenant() -> None:
    fake = FakeGraph({T1: [_user(1)]})
    fake.forbidden = {T1}

    async def go() -> Any:
        async with make(fake) as graph:
            return await graph.load_tenant(TenantRef(T1))

    load = run(go())
    assert (load.error or "").startswith(f"tenant {T1}: Graph GET /v1.0/domains answered 403")


def test_401_mid_run_renews_the_token_once() -> None:
    fake, identity = FakeGraph({T1: [_user(i) for i in range(4)]}), FakeIdentity()
    inner = fake.__call__
    expired = {f"token.{T1}.1"}

    def graph(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"].removeprefix("Bearer ") in expired and request.url.path == "/v1.0/users":
            return httpx.Response(401, json={"error": {"code": "InvalidAuthenticationToken", "message": "expired"}})
        return inner(request)

    async def go() -> Any:
        async with make(graph, identity) as client:
            return await client.load_tenant(TenantRef(T1))

    load = run(go())
    assert load.status == "loaded" and len(load.users) == 4
    assert identity.issued == 2


def test_a_tenants_msal_app_is_released_after_its_read_and_rebuilt_for_a_renewal() -> None:
    """2,000 kept msal apps slowed every full garbage collection; the token itself stays cached."""
    fake, identity = FakeGraph({T1: [_user(i) for i in range(2)]}), FakeIdentity()
    inner = fake.__call__
    refused: set[str] = set()

    def graph(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"].removeprefix("Bearer ") in refused:
            return httpx.Response(401, json={"error": {"code": "InvalidAuthenticationToken", "message": "expired"}})
        return inner(request)

    async def go() -> Any:
        async with make(graph, identity) as client:
            first = await client.load_tenant(TenantRef(T1))
            apps_after_first, cached = dict(client._msal._apps), client._msal.cached.get(T1)
            refused.add(cached[0])  # Graph now refuses the cached token: the renewal needs an app again
            second = await client.load_tenant(TenantRef(T1))
            return first, second, apps_after_first, cached, dict(client._msal._apps)

    first, second, apps_after_first, cached, apps_after_second = run(go())
    assert first.status == "loaded" and second.status == "loaded" and len(second.users) == 2
    assert apps_after_first == {} and apps_after_second == {}
    assert cached is not None and cached[0] == f"token.{T1}.1"  # kept: the second read started with it
    assert identity.issued == 2  # one token per read: the cached one, then the renewal after the 401
    assert sum(1 for path in identity.discoveries if T1 in path) == 2  # the app was built twice


def test_429_with_retry_after_is_waited_out() -> None:
    fake = FakeGraph({T1: [_user(1)]})
    inner = fake.__call__
    throttled = {"done": False}

    def graph(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1.0/users" and not throttled["done"]:
            throttled["done"] = True
            return httpx.Response(429, headers={"Retry-After": "0"})
        return inner(request)

    async def go() -> Any:
        async with make(graph) as client:
            return await client.load_tenant(TenantRef(T1))

    load = run(go())
    assert load.status == "loaded" and load.request_counts["GET /v1.0/users"] == 2


def test_token_refusal_fails_the_tenant_without_secrets() -> None:
    def identity(request: httpx.Request) -> httpx.Response:
        if "openid-configuration" in request.url.path:
            return FakeIdentity()(request)
        return httpx.Response(400, json={"error": "invalid_grant", "error_description": f"bad token {REFRESH}"})

    async def go() -> Any:
        async with make(FakeGraph({T1: []}), identity=None) as graph:
            graph._msal.http._client._transport = httpx.MockTransport(identity)  # swap identity answers
            return await graph.load_tenant(TenantRef(T1)), repr(graph)

    load, graph_repr = run(go())
    assert load.status == "failed" and "invalid_grant" in (load.error or "")
    for text in (load.error or "", repr(load), graph_repr):
        assert REFRESH not in text and SECRET not in text


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        GraphClient(LOGIN, GRAPH, PARTNER, "c", SECRET, **graph_settings())
    with pytest.raises(ValueError, match="https"):
        GraphClient(LOGIN, "http://graph.test", PARTNER, "c", SECRET, app_only=True, **graph_settings())


class MeetingIdentity(FakeIdentity):
    """Each tenant's OpenID discovery waits until the other tenant's discovery has arrived too: it only
    answers when two are in flight at once (the barrier's timeout only guards against a hang)."""

    def __init__(self) -> None:
        super().__init__()
        self.meeting = threading.Barrier(2, timeout=10)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/.well-known/openid-configuration"):
            self.meeting.wait()
        return super().__call__(request)


def test_tenants_discover_their_authorities_at_the_same_time() -> None:
    # msal's constructor makes the discovery request; building every tenant's app under one lock
    # serialised all tenants' first token (500 tenants at 100 ms: 50 s at any concurrency).
    fake = FakeGraph({T1: [_user(1)], T2: [_user(2)]})

    async def go() -> list[Any]:
        async with make(fake, MeetingIdentity(), concurrency=2) as graph:
            return await graph.load_all([TenantRef(T1), TenantRef(T2)])

    assert [(load.status, load.error) for load in run(go())] == [("loaded", None), ("loaded", None)]


def test_default_concurrency_fits_500_tenants_in_about_15_seconds() -> None:
    graph = make(FakeGraph({}))
    try:
        assert graph.concurrency == M365Resource.model_fields["concurrency"].default == 16
        assert graph._msal.threads._max_workers == 16  # a token thread per concurrent tenant
    finally:
        run(graph.aclose())


def test_a_tenants_domains_and_users_are_read_at_once() -> None:
    # The domains answer waits until the users request has arrived: read one after the other, the tenant
    # would fail (the domains answer gives up after 5 s); read at once, both are answered.
    fake = FakeGraph({T1: [_user(1)]})
    users_asked = asyncio.Event()

    async def graph(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1.0/users":
            users_asked.set()
        elif request.url.path == "/v1.0/domains":
            try:
                await asyncio.wait_for(users_asked.wait(), timeout=5)
            except TimeoutError:
                return httpx.Response(504, json={"error": {"code": "test", "message": "users not asked meanwhile"}})
        return fake(request)

    async def go() -> Any:
        quick = RetryPolicy(deadline_s=0.1, wait_initial_s=0.0, wait_max_s=0.0, wait_jitter_s=0.0)
        async with make(graph, retry_policy=quick) as client:
            return await client.load_all([TenantRef(T1)])

    [load] = run(go())
    assert load.status == "loaded", load.error
    assert load.request_counts == {"GET /v1.0/domains": 1, "GET /v1.0/users": 1}


def _load_both(fake: Any) -> tuple[Any, Any]:
    async def go() -> Any:
        async with make(fake) as graph:
            return await graph.load_all([TenantRef(T1), TenantRef(T2)])

    first, second = run(go())
    return first, second


def test_a_user_paging_repeats_is_kept_once() -> None:
    # Pages of 2: the repeated user comes back on the next page, as Graph paging can do.
    fake = FakeGraph({T1: [_user(1), _user(2), _user(2), _user(3)], T2: [_user(4)]})
    first, second = _load_both(fake)
    assert first.status == "loaded" and first.users == [_user(1), _user(2), _user(3)]
    assert second.status == "loaded" and second.users == [_user(4)]


def test_a_user_listed_twice_with_different_data_fails_its_tenant_alone() -> None:
    changed = _user(2) | {"assignedLicenses": []}
    first, second = _load_both(FakeGraph({T1: [_user(1), _user(2), changed], T2: [_user(4)]}))
    assert first.status == "failed" and first.users == []
    assert f"tenant {T1}: user '{changed['id']}' is listed twice with different data" in (first.error or "")
    assert second.status == "loaded" and second.users == [_user(4)]


def test_two_users_with_one_upn_fail_their_tenant_alone() -> None:
    # Entra keeps UPNs unique in a tenant (case-insensitively); two ids sharing one is not a state to act on.
    other = _user(3) | {"userPrincipalName": "U1@X.com "}
    first, second = _load_both(FakeGraph({T1: [_user(1), other], T2: [_user(4)]}))
    assert first.status == "failed"
    assert f"users '{_user(1)['id']}' and '{other['id']}' share the userPrincipalName 'U1@X.com '" in (
        first.error or ""
    )
    assert second.status == "loaded"


def test_a_domain_listed_twice_is_kept_once() -> None:
    fake = FakeGraph({T1: [_user(1)]})
    inner = fake.__call__
    domain = {"id": "one.com", "isVerified": True, "isDefault": True}

    def graph(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1.0/domains":
            return httpx.Response(200, json={"value": [domain, dict(domain)]})
        return inner(request)

    async def go() -> Any:
        async with make(graph) as client:
            return await client.load_tenant(TenantRef(T1))

    load = run(go())
    assert load.status == "loaded" and load.domains == [domain]


def test_two_default_domains_fail_their_tenant_alone() -> None:
    fake = FakeGraph({T1: [_user(1)], T2: [_user(2)]})
    inner = fake.__call__

    def graph(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1.0/domains" and request.headers["authorization"].split(".")[1] == T1:
            both = [{"id": name, "isVerified": True, "isDefault": True} for name in ("one.com", "uno.com")]
            return httpx.Response(200, json={"value": both})
        return inner(request)

    first, second = _load_both(graph)
    assert first.status == "failed" and f"tenant {T1}: 2 default domains ['one.com', 'uno.com']" in (first.error or "")
    assert second.status == "loaded"
