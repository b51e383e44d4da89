"""Graph tokens per customer tenant from msal, for `auth.MsalAuth`.

One msal `ConfidentialClientApplication` per tenant authority, each with its own small token cache,
all given `MsalHttpAdapter` (a sync httpx.Client with the same TLS
settings, so a CA bundle applies to identity calls too). Either the Secure Application Model (the
partner's refresh token redeemed per customer tenant, as the seed does) or app-only client
credentials per customer tenant. msal is blocking, so its calls run in threads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import msal

from .auth import renew_at
from .connection import USER_AGENT, ssl_verify
from .errors import GraphApiError, GraphAuthError, short_detail
from .request_counts import RequestCounts, counting_hooks
from .retry import RetryableStatus, RetryPolicy, gave_up, raise_for_retryable
from .secret_scrubber import SecretScrubber

MICROSOFT_LOGIN_HOSTS = frozenset({"login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn"})


class MsalHttpAdapter:
    """The requests-like object msal wants (`get`/`post` returning a response with `status_code`,
    `text`, `headers`, `raise_for_status()`), over a sync httpx.Client, with the shared retry policy
    so msal only ever sees final answers (msal would otherwise cache 429/5xx answers as throttles).
    Every request it sends is counted into `counts` (an event hook)."""

    def __init__(
        self,
        *,
        verify: str | bool,
        timeout: float,
        retry_policy: RetryPolicy,
        counts: RequestCounts,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._client = httpx.Client(
            verify=ssl_verify(verify),
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": USER_AGENT},
            transport=transport,
            follow_redirects=False,
            event_hooks=counting_hooks(counts),
        )
        self._policy = retry_policy

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        request = self._client.build_request(
            method,
            url,
            params=kwargs.get("params"),
            headers=kwargs.get("headers"),
            data=kwargs.get("data"),
            json=kwargs.get("json"),
        )
        path = request.url.path

        def attempt() -> httpx.Response:
            response = self._client.send(request)
            raise_for_retryable(response, method, path)
            return response

        try:
            return self._policy.call(attempt)
        except (RetryableStatus, httpx.TransportError) as exc:
            raise gave_up(exc, GraphAuthError, f"identity {method} {path}", method=method, path=path) from None

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._request("POST", url, **kwargs)

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return "MsalHttpAdapter()"


class MsalTokens:
    """Each customer tenant's Graph token, cached until `auth.renew_at` says it is due.

    Exactly one of `refresh_token` (Secure Application Model) or `app_only`. Every token obtained
    (and refresh token returned) is added to `scrub`. `threads` bounds the msal calls in flight.
    """

    def __init__(
        self,
        *,
        login_url: str,
        client_id: str,
        client_secret: str,
        refresh_token: str | None,
        app_only: bool,
        scope: str,
        http: MsalHttpAdapter,
        threads: int,
        scrub: SecretScrubber,
    ) -> None:
        self.login_url = login_url
        self.client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self.app_only = app_only
        self.scope = scope
        self.http = http
        self._scrub = scrub
        self._apps: dict[str, msal.ConfidentialClientApplication] = {}
        self._apps_lock = threading.Lock()
        self._app_locks: dict[str, threading.Lock] = {}  # tenant -> lock held while its msal app is built
        self.cached: dict[str, tuple[str, float]] = {}  # tenant -> (access token, monotonic renewal time)
        self._token_locks: dict[str, asyncio.Lock] = {}  # tenant -> held while its token is being obtained
        # msal blocks, so token requests run in threads: our own pool, one per concurrent tenant. The loop's
        # default pool has min(32, CPUs + 4) threads (6 on 2 cores) and would cap the token steps below
        # the client's concurrency.
        self.threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="graph-msal")

    def close(self) -> None:
        self.threads.shutdown(wait=False, cancel_futures=True)
        self.http.close()

    def __repr__(self) -> str:
        return f"MsalTokens(login_url={self.login_url!r}, tenants={len(self.cached)})"

    async def token(self, tenant_id: str, *, stale: str | None = None) -> str:
        """The tenant's cached token, or a new one when there is none, it is due, or it is `stale` (Graph
        refused it). A tenant's reads run concurrently (domains and users), so one of them asks msal
        while the other waits for that answer: one token request per tenant, not one per read."""
        async with self._tenant_lock(tenant_id):
            cached = self.cached.get(tenant_id)
            if cached and cached[0] != stale and time.monotonic() < cached[1]:
                return cached[0]
            loop = asyncio.get_running_loop()
            renew = stale is not None  # msal must not hand back the refused token from its own cache
            token, expires_at = await loop.run_in_executor(self.threads, self._acquire_blocking, tenant_id, renew)
            self.cached[tenant_id] = (token, expires_at)
            return token

    def release_app(self, tenant_id: str) -> None:
        """Drop the tenant's msal app once its read is done; its token stays cached. A run reads each
        tenant once, and 2,000 kept apps (about 100 objects each) only made every full garbage
        collection slower; a renewal after this builds the app again."""
        with self._apps_lock:
            self._apps.pop(tenant_id, None)
            self._app_locks.pop(tenant_id, None)

    def _tenant_lock(self, tenant_id: str) -> asyncio.Lock:
        lock = self._token_locks.get(tenant_id)
        if lock is None:
            lock = self._token_locks[tenant_id] = asyncio.Lock()
        return lock

    def _app(self, tenant_id: str) -> msal.ConfidentialClientApplication:
        # msal's constructor makes the tenant's OpenID discovery request. Under one shared lock every
        # tenant's discovery waited for the others' (500 tenants at 100 ms: 50 s, whatever the
        # concurrency), so the shared lock only hands out a per-tenant lock.
        with self._apps_lock:
            app = self._apps.get(tenant_id)
            if app is not None:
                return app
            tenant_lock = self._app_locks.setdefault(tenant_id, threading.Lock())
        with tenant_lock:
            app = self._apps.get(tenant_id)
            if app is None:
                app = self._new_app(tenant_id)
                with self._apps_lock:
                    self._apps[tenant_id] = app
            return app

    def _new_app(self, tenant_id: str) -> msal.ConfidentialClientApplication:
        microsoft = httpx.URL(self.login_url).host in MICROSOFT_LOGIN_HOSTS
        return msal.ConfidentialClientApplication(
            self.client_id,
            client_credential=self._client_secret,
            authority=f"{self.login_url}/{tenant_id}",
            # One small cache per tenant: msal searches its whole cache on every write; one cache shared by
            # 2,000 tenants cost 12% more client CPU on a full read (22.6 s against 19.9 s, latency 0).
            token_cache=msal.TokenCache(),
            http_client=self.http,
            # msal validates authorities against Microsoft's list; a sandbox or sovereign
            # test host is not on it, and instance discovery would call Microsoft.
            validate_authority=microsoft,
            instance_discovery=False if not microsoft else None,
        )

    def _acquire_blocking(self, tenant_id: str, renew: bool) -> tuple[str, float]:
        try:
            app = self._app(tenant_id)
            scopes = [self.scope]
            if self.app_only:
                if renew:
                    app.remove_tokens_for_client()  # otherwise msal hands back the cached token
                result = app.acquire_token_for_client(scopes=scopes)
            else:
                assert self._refresh_token is not None
                result = app.acquire_token_by_refresh_token(self._refresh_token, scopes=scopes)
        except GraphApiError:
            raise
        except Exception as exc:  # msal raises ValueError/RuntimeError/MsalServiceError on discovery problems
            raise GraphAuthError(
                f"token for tenant {tenant_id}: {type(exc).__name__}: {self._scrub(short_detail(str(exc)))}"
            ) from None
        if not isinstance(result, dict) or "access_token" not in result:
            error = result.get("error", "unknown_error") if isinstance(result, dict) else "no answer"
            description = result.get("error_description", "") if isinstance(result, dict) else ""
            raise GraphAuthError(
                f"no token for tenant {tenant_id}: {error}: {self._scrub(short_detail(str(description)))}".rstrip(": ")
            )
        token = str(result["access_token"])
        self._scrub.add(token)
        if result.get("refresh_token"):
            self._scrub.add(str(result["refresh_token"]))
        return token, renew_at(result.get("expires_in"))
