"""The clients' bearer tokens as httpx auth flows, one for Halo and one over msal for Graph.

Each flow sets the token on the request, sends it and looks at the answer: on a 401 (a token expired
or revoked before its time) it gets one renewed token and sends the same request once more; whatever
comes back then, a second 401 included, is the answer. Retries of 429/5xx are the retry policy's
job (`retry.py`), around the whole flow.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any, Protocol

import httpx

from .secret_scrubber import SecretScrubber

# A token is renewed this long before it expires (at most half its lifetime), so that it never
# expires between our check and the server's. The one definition, for Halo's and Microsoft's tokens.
TOKEN_EXPIRY_SKEW_S = 60.0
DEFAULT_TOKEN_LIFETIME_S = 3600.0


def renew_at(expires_in: Any) -> float:
    """The `time.monotonic()` after which a token issued now with this `expires_in` is renewed."""
    try:
        lifetime = float(expires_in)
    except (TypeError, ValueError):
        lifetime = DEFAULT_TOKEN_LIFETIME_S
    return time.monotonic() + max(0.0, lifetime - min(TOKEN_EXPIRY_SKEW_S, lifetime / 2))


def with_bearer(request: httpx.Request, token: str) -> httpx.Request:
    request.headers["Authorization"] = f"Bearer {token}"
    return request


class HaloSession:
    """Authorisation state of one Halo API application: its auth server URL and current bearer token.

    Several clients may share one (a Dagster run makes one client per asset), so that they ask
    Halo for a token once instead of once each, against Halo's request rate limit.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.auth_url: str | None = None
        self.token: str | None = None
        self.expires_at = 0.0  # time.monotonic() after which the token is renewed

    def __repr__(self) -> str:
        return f"HaloSession(auth_url={self.auth_url!r}, token={'***' if self.token else None})"


# (access token, expires_in as Halo gave it)
HaloTokenFetch = Callable[[], tuple[str, Any]]


class HaloAuth(httpx.Auth):
    """Halo's client-credentials bearer, shared by every client of a `HaloSession`, renewed once on a 401.

    `fetch_token` asks Halo's authorisation server for a new token (the client's own request, with its
    retries). Each token is added to `scrub`: it may come from another client of the session.
    """

    requires_request_body = True  # the re-send after a 401 carries the same body
    # The 401 is read (its connection freed) before the token request: a client has few connections.
    requires_response_body = True

    def __init__(self, session: HaloSession, fetch_token: HaloTokenFetch, scrub: SecretScrubber) -> None:
        self._session = session
        self._fetch_token = fetch_token
        self._scrub = scrub

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        response = yield with_bearer(request, self._token(renew=False))
        if response.status_code == 401:
            yield with_bearer(request, self._token(renew=True))

    def _token(self, *, renew: bool) -> str:
        session = self._session
        with session.lock:  # one token request for all the session's clients, not one each
            if renew or session.token is None or time.monotonic() >= session.expires_at:
                token, expires_in = self._fetch_token()
                session.token, session.expires_at = token, renew_at(expires_in)
            assert session.token is not None
            self._scrub.add(session.token)
            return session.token

    def __repr__(self) -> str:
        return f"HaloAuth({self._session!r})"


class TenantTokens(Protocol):
    """A tenant's Graph token, cached until it is due for renewal (see `msal_tokens.MsalTokens`)."""

    async def token(self, tenant_id: str, *, stale: str | None = None) -> str: ...


class MsalAuth(httpx.Auth):
    """Graph's bearer for one customer tenant, from msal through `tokens`, renewed once on a 401.

    msal blocks, so `tokens` runs it in threads: this flow is for `httpx.AsyncClient` only (Graph
    reads are GETs: there is no body to keep for the re-send).
    """

    def __init__(self, tokens: TenantTokens, tenant_id: str) -> None:
        self._tokens = tokens
        self.tenant_id = tenant_id

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._tokens.token(self.tenant_id)
        response = yield with_bearer(request, token)
        if response.status_code == 401:
            await response.aread()  # free its connection while msal asks for the renewed token
            yield with_bearer(request, await self._tokens.token(self.tenant_id, stale=token))

    def __repr__(self) -> str:
        return f"MsalAuth(tenant_id={self.tenant_id!r})"
