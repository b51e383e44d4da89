"""The two httpx auth flows (Halo's, msal's for Graph) and request counting through httpx event hooks."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from halo_sync_pipeline.clients import GraphClient, HaloApiError, HaloClient, TenantRef
from halo_sync_pipeline.clients.auth import TOKEN_EXPIRY_SKEW_S, HaloAuth, HaloSession, MsalAuth, renew_at
from halo_sync_pipeline.clients.request_counts import (
    RequestCounts,
    async_counting_hooks,
    counting_hooks,
    counting_into,
)
from halo_sync_pipeline.clients.retry import RetryPolicy
from halo_sync_pipeline.clients.secret_scrubber import SecretScrubber
from tests.clients.resource_defaults import graph_settings, halo_settings

FAST = RetryPolicy(deadline_s=5.0, wait_initial_s=0.0, wait_max_s=0.0, wait_jitter_s=0.0)
SECRET = "auth-test-secret-0123456789"


class Tokens:
    """A token source handing out `token-1`, `token-2`, ...; records each request for one."""

    def __init__(self) -> None:
        self.issued = 0

    def next(self) -> str:
        self.issued += 1
        return f"token-{self.issued}"

    def fetch(self) -> tuple[str, Any]:  # HaloAuth's fetch_token
        return self.next(), 3600

    async def token(self, tenant_id: str, *, stale: str | None = None) -> str:  # MsalAuth's TenantTokens
        current = f"token-{self.issued}"
        return current if self.issued and current != stale else self.next()


def refusing(*tokens: str) -> tuple[list[tuple[str, bytes]], httpx.MockTransport]:
    """A server answering 401 to the given bearer tokens and 200 (echoing the body) to any other; it
    records each request's Authorization header and body as received (a re-send is the same object)."""
    sent: list[tuple[str, bytes]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        authorization = request.headers.get("authorization", "")
        sent.append((authorization, request.content))
        if authorization.removeprefix("Bearer ") in tokens:
            return httpx.Response(401, json={"message": f"token {authorization} refused"})
        return httpx.Response(200, content=request.content)

    return sent, httpx.MockTransport(answer)


# --- HaloAuth -------------------------------------------------------------------------------------


def test_halo_auth_renews_once_on_a_401_and_resends_the_same_request_once() -> None:
    tokens = Tokens()
    sent, transport = refusing("token-1")
    auth = HaloAuth(HaloSession(), tokens.fetch, SecretScrubber())
    with httpx.Client(transport=transport, auth=auth) as http:
        response = http.post("https://halo.test/api/Users", json=[{"id": 1}])
    assert response.status_code == 200 and json.loads(response.content) == [{"id": 1}]
    assert tokens.issued == 2
    # The re-send carries the same body, with the renewed token.
    assert sent == [("Bearer token-1", b'[{"id":1}]'), ("Bearer token-2", b'[{"id":1}]')]


def test_halo_auth_returns_a_second_401_as_the_answer() -> None:
    tokens = Tokens()
    sent, transport = refusing("token-1", "token-2", "token-3")
    with httpx.Client(transport=transport, auth=HaloAuth(HaloSession(), tokens.fetch, SecretScrubber())) as http:
        response = http.get("https://halo.test/api/Client")
    assert response.status_code == 401
    assert tokens.issued == 2 and len(sent) == 2  # one renewal, one re-send, no loop


def test_halo_auth_shares_one_token_per_session_and_hides_it() -> None:
    tokens, session = Tokens(), HaloSession()
    scrubs = [SecretScrubber(), SecretScrubber()]
    for scrub in scrubs:
        _, transport = refusing()
        with httpx.Client(transport=transport, auth=HaloAuth(session, tokens.fetch, scrub)) as http:
            assert http.get("https://halo.test/api/Client").status_code == 200
    assert tokens.issued == 1
    assert all(scrub("saw token-1") == "saw ***" for scrub in scrubs)  # also the client that did not fetch it
    assert "token-1" not in repr(session)


def test_a_token_is_renewed_the_skew_before_it_expires_or_at_half_its_life() -> None:
    assert TOKEN_EXPIRY_SKEW_S == 60.0
    for expires_in, ahead in ((3600, 3540.0), ("3600", 3540.0), (60, 30.0), (None, 3540.0), ("soon", 3540.0)):
        before = time.monotonic()
        due = renew_at(expires_in)
        assert before + ahead <= due <= time.monotonic() + ahead, expires_in


def test_halo_client_401_twice_is_an_error_without_the_token_and_counted() -> None:
    issued: list[str] = []

    def halo(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/authinfo":
            return httpx.Response(200, json={"auth_url": "https://halo.test/auth"})
        if request.url.path == "/auth/token":
            issued.append(f"halo-token-{len(issued) + 1}-abcdef")
            return httpx.Response(200, json={"access_token": issued[-1], "expires_in": 3600})
        return httpx.Response(401, json={"message": f"refused {request.headers['authorization']}"})

    client = HaloClient("https://halo.test", "client-id", SECRET, "acme", transport=httpx.MockTransport(halo),
                        reports_mode=False, **halo_settings(retry_policy=FAST))  # fmt: skip
    with client, pytest.raises(HaloApiError, match="answered 401") as caught:
        client.companies()
    assert len(issued) == 2
    for text in (str(caught.value), repr(caught.value), repr(client)):
        assert all(token not in text for token in issued) and SECRET not in text, text
    assert client.request_counts.snapshot() == {"GET /api/Client": 2, "GET /api/authinfo": 1, "POST /auth/token": 2}


# --- MsalAuth -------------------------------------------------------------------------------------


def _msal_get(auth: MsalAuth, transport: httpx.MockTransport) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport) as http:
            return await http.get("https://graph.test/v1.0/users", auth=auth)

    return asyncio.run(go())


def test_msal_auth_renews_once_on_a_401_and_resends_once() -> None:
    tokens = Tokens()
    sent, transport = refusing("token-1")
    assert _msal_get(MsalAuth(tokens, "t1"), transport).status_code == 200
    assert tokens.issued == 2 and [authorization for authorization, _ in sent] == ["Bearer token-1", "Bearer token-2"]


def test_msal_auth_returns_a_second_401_as_the_answer() -> None:
    tokens = Tokens()
    sent, transport = refusing("token-1", "token-2", "token-3")
    assert _msal_get(MsalAuth(tokens, "t1"), transport).status_code == 401
    assert tokens.issued == 2 and len(sent) == 2


def test_graph_client_401_twice_fails_the_tenant_without_the_token() -> None:
    issued: list[str] = []

    def identity(request: httpx.Request) -> httpx.Response:
        tenant = request.url.path.split("/")[1]
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json={"token_endpoint": f"https://login.test/{tenant}/oauth2/v2.0/token",
                                             "authorization_endpoint": f"https://login.test/{tenant}/oauth2/v2.0/authorize",
                                             "issuer": f"https://login.test/{tenant}/v2.0"})  # fmt: skip
        issued.append(f"graph-token-{len(issued) + 1}-abcdef")
        return httpx.Response(200, json={"token_type": "Bearer", "expires_in": 3600, "access_token": issued[-1]})

    def graph(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"code": "InvalidAuthenticationToken",
                                                   "message": f"refused {request.headers['authorization']}"}})  # fmt: skip

    async def go() -> Any:
        async with GraphClient(
            "https://login.test", "https://graph.test", "p", "client-id", SECRET, refresh_token="refresh-xyz",
            transport=httpx.MockTransport(graph), token_transport=httpx.MockTransport(identity),
            **graph_settings(retry_policy=FAST),
        ) as client:  # fmt: skip
            return await client.load_tenant(TenantRef("t1")), client

    load, client = asyncio.run(go())
    assert load.status == "failed" and "answered 401" in (load.error or "")
    # One token and one renewal for the tenant, shared by its two concurrent reads; each read is sent at most
    # twice (the first failure cancels the other read, so how far the users read got is a race).
    assert len(issued) == 2
    assert set(load.request_counts) <= {"GET /v1.0/domains", "GET /v1.0/users"}
    assert 1 <= max(load.request_counts.values()) == 2 and all(n <= 2 for n in load.request_counts.values())
    for text in (load.error or "", repr(load), repr(client)):
        assert all(token not in text for token in issued) and SECRET not in text and "refresh-xyz" not in text, text


# --- counting through event hooks -----------------------------------------------------------------


def test_the_request_hook_counts_every_request_sent_auth_resends_included() -> None:
    counts, tokens = RequestCounts(), Tokens()
    _, transport = refusing("token-1")
    with httpx.Client(transport=transport, event_hooks=counting_hooks(counts)) as http:
        http.get(
            "https://halo.test/api/Client?secret=not-counted",
            auth=HaloAuth(HaloSession(), tokens.fetch, SecretScrubber()),
        )
        http.post("https://halo.test/api/Users", json=[])
    assert counts.snapshot() == {"GET /api/Client": 2, "POST /api/Users": 1}


def test_async_hook_counts_per_client_and_per_task_scope() -> None:
    total = RequestCounts()
    _, transport = refusing()

    async def load(http: httpx.AsyncClient, path: str, times: int) -> dict[str, int]:
        with counting_into(RequestCounts()) as mine:
            for _ in range(times):
                await http.get(f"https://graph.test{path}", headers={"Authorization": "Bearer x"})
            return mine.snapshot()

    async def go() -> list[dict[str, int]]:
        async with httpx.AsyncClient(transport=transport, event_hooks=async_counting_hooks(total)) as http:
            return list(await asyncio.gather(load(http, "/a", 2), load(http, "/b", 3)))

    assert asyncio.run(go()) == [{"GET /a": 2}, {"GET /b": 3}]
    assert total.snapshot() == {"GET /a": 2, "GET /b": 3}
