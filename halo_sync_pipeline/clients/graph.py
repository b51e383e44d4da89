"""An asynchronous Microsoft Graph client for the partner's customer tenants, with msal tokens.

Tokens: one msal `ConfidentialClientApplication` per tenant authority, all sharing one
`SerializableTokenCache`, all given `MsalHttpAdapter` (a sync httpx.Client with the same TLS
settings, so a CA bundle applies to identity calls too). Either the Secure Application Model (the
partner's refresh token redeemed per customer tenant, as the seed does) or app-only client
credentials per customer tenant. msal is blocking, so its calls run in threads.

Reads: tenants from `contracts` or GDAP `delegatedAdminRelationships`; per tenant `domains` and
`users` (only the properties the sync uses, `$top=999`), paging sequentially inside a tenant and
following `@odata.nextLink` only to the configured Graph origin, so a bearer token never leaves it.
Tenants load concurrently (bounded). A failing tenant never raises: its `TenantLoad` says why (naming
the tenant) and carries no partial data. A record without a property that was `$select`ed fails its
tenant as malformed: Graph answers null for an unset property, so a missing key means the answer is
incomplete, and reading it as empty would, say, turn every user of the tenant into an unlicensed one.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import msal

from .errors import ForeignNextLinkError, GraphApiError, GraphAuthError, MalformedDataError, short_detail
from .connection import USER_AGENT, ssl_verify
from .request_counts import RequestCounts
from .retry import RetryableStatus, RetryPolicy, raise_for_retryable
from .secret_scrubber import SecretScrubber

MICROSOFT_LOGIN_HOSTS = frozenset({"login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn"})
USER_SELECT = (
    "id", "displayName", "givenName", "surname", "userPrincipalName", "mail", "jobTitle", "businessPhones",
    "mobilePhone", "faxNumber", "streetAddress", "proxyAddresses", "assignedLicenses", "accountEnabled", "userType",
)  # fmt: skip
DOMAIN_SELECT = ("id", "isVerified", "isDefault")
PAGE_SIZE = 999  # Graph's maximum $top for users
TOKEN_REFRESH_SKEW_S = 60.0
# Tenants read at once. Graph throttles per customer tenant (each has its own budget), not per partner,
# so the bound is set by our latency, not by Microsoft. A tenant of up to 999 users costs 4 requests one
# after the other: OpenID discovery and the token (msal, per tenant authority), domains, one users page.
# At 100 ms a request that is 0.4 s per tenant, so 500 tenants are 200 tenant-seconds: 16 at a time
# read them in 500 / 16 × 0.4 s ≈ 12.5 s, plus the partner's own token and contracts (≈ 0.3 s) and
# tenants with more than 999 users (one more request each), about 15 s. 16 connections and 16 msal
# threads are nothing for the client; Halo is not involved (its 300 requests / 5 min is a separate budget).
DEFAULT_CONCURRENCY = 16

TenantSource = Literal["contracts", "gdap"]


@dataclass(frozen=True)
class TenantRef:
    """A customer tenant of the partner, as listed by contracts or GDAP."""

    tenant_id: str
    display_name: str | None = None
    default_domain: str | None = None


@dataclass
class TenantLoad:
    """The result of reading one tenant: loaded (domains and users) or failed (error, no data)."""

    tenant: TenantRef
    status: Literal["loaded", "failed"]
    error: str | None = None
    domains: list[dict[str, Any]] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)
    request_counts: dict[str, int] = field(default_factory=dict)
    # Set by `frames.compact_tenant_load`: the users typed, one tuple per column (`users` is then
    # empty, the raw JSON dropped), and per $select-ed property some user lacks, the first such user.
    user_columns: dict[str, tuple[Any, ...]] | None = None
    user_gaps: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def user_count(self) -> int:
        return len(self.users) if self.user_columns is None else len(self.user_columns.get("user_id", ()))

    def __repr__(self) -> str:
        return (
            f"TenantLoad(tenant_id={self.tenant.tenant_id!r}, status={self.status!r}, error={self.error!r}, "
            f"domains={len(self.domains)}, users={self.user_count})"
        )


class MsalHttpAdapter:
    """The requests-like object msal wants (`get`/`post` returning a response with `status_code`,
    `text`, `headers`, `raise_for_status()`), over a sync httpx.Client, with the shared retry policy
    so msal only ever sees final answers (msal would otherwise cache 429/5xx answers as throttles)."""

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
        )
        self._policy = retry_policy
        self._counts = counts

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
            self._counts.add(method, path)
            response = self._client.send(request)
            response.read()
            raise_for_retryable(response, method, path)
            return response

        try:
            return self._policy.call(attempt)
        except RetryableStatus as exc:
            raise GraphAuthError(f"identity {method} {path} still answered {exc.status_code} after retries", status_code=exc.status_code, method=method, path=path) from None
        except httpx.TransportError as exc:
            raise GraphAuthError(f"identity {method} {path}: connection failed ({type(exc).__name__})", method=method, path=path) from None

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._request("POST", url, **kwargs)

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return "MsalHttpAdapter()"


class GraphClient:
    """Microsoft Graph reads for the sync. Use as `async with GraphClient(...) as graph:`."""

    def __init__(
        self,
        login_url: str,
        graph_url: str,
        partner_tenant_id: str,
        client_id: str,
        client_secret: str,
        *,
        refresh_token: str | None = None,
        app_only: bool = False,
        tenant_source: TenantSource = "contracts",
        verify: str | bool = True,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout: float = 30.0,
        retry_deadline_s: float = 120.0,
        retry_policy: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        token_transport: httpx.BaseTransport | None = None,
        graph_scope: str | None = None,
    ) -> None:
        if app_only == bool(refresh_token):
            raise ValueError("give exactly one of refresh_token (Secure Application Model) or app_only=True")
        if tenant_source not in ("contracts", "gdap"):
            raise ValueError(f"tenant_source must be 'contracts' or 'gdap', got {tenant_source!r}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        for name, url in (("login_url", login_url), ("graph_url", graph_url)):
            if not url.startswith("https://"):
                raise ValueError(f"{name} must be an https URL, got {url!r}")
        self.login_url = login_url.rstrip("/")
        self.graph_url = graph_url.rstrip("/")
        self.partner_tenant_id = partner_tenant_id.strip().lower()
        self.client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self.app_only = app_only
        self.tenant_source = tenant_source
        self.concurrency = concurrency
        self.graph_scope = graph_scope or f"{self.graph_url}/.default"
        self.retry_policy = retry_policy or RetryPolicy(deadline_s=retry_deadline_s)
        self.request_counts = RequestCounts()  # Graph calls, all tenants
        self.token_request_counts = RequestCounts()  # identity calls made by msal
        self._scrub = SecretScrubber(client_secret, refresh_token)
        self._graph_origin = _origin(httpx.URL(self.graph_url))
        self._token_cache = msal.SerializableTokenCache()
        self._msal_http = MsalHttpAdapter(
            verify=verify, timeout=timeout, retry_policy=self.retry_policy, counts=self.token_request_counts, transport=token_transport
        )
        self._apps: dict[str, msal.ConfidentialClientApplication] = {}
        self._apps_lock = threading.Lock()
        self._app_locks: dict[str, threading.Lock] = {}  # tenant -> lock held while its msal app is built
        self._tokens: dict[str, tuple[str, float]] = {}  # tenant -> (access token, monotonic expiry)
        # msal blocks, so token requests run in threads: our own pool, one per concurrent tenant. The loop's
        # default pool has min(32, CPUs + 4) threads (6 on 2 cores) and would cap the token steps below
        # `concurrency`.
        self._msal_threads = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="graph-msal")
        self._http = httpx.AsyncClient(
            verify=ssl_verify(verify),
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        mode = "app_only" if self.app_only else "refresh_token=***"
        return (
            f"GraphClient(login_url={self.login_url!r}, graph_url={self.graph_url!r}, "
            f"partner_tenant_id={self.partner_tenant_id!r}, client_id={self.client_id!r}, client_secret=***, {mode})"
        )

    async def aclose(self) -> None:
        await self._http.aclose()
        self._msal_threads.shutdown(wait=False, cancel_futures=True)
        self._msal_http.close()

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- tokens ---------------------------------------------------------------------------------

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
            token_cache=self._token_cache,
            http_client=self._msal_http,
            # msal validates authorities against Microsoft's list; a sandbox or sovereign
            # test host is not on it, and instance discovery would call Microsoft.
            validate_authority=microsoft,
            instance_discovery=False if not microsoft else None,
        )

    def _acquire_token_blocking(self, tenant_id: str, force: bool) -> tuple[str, float]:
        try:
            app = self._app(tenant_id)
            scopes = [self.graph_scope]
            if self.app_only:
                if force:
                    app.remove_tokens_for_client()  # otherwise msal hands back the cached token
                result = app.acquire_token_for_client(scopes=scopes)
            else:
                assert self._refresh_token is not None
                result = app.acquire_token_by_refresh_token(self._refresh_token, scopes=scopes)
        except GraphApiError:
            raise
        except Exception as exc:  # msal raises ValueError/RuntimeError/MsalServiceError on discovery problems
            raise GraphAuthError(f"token for tenant {tenant_id}: {type(exc).__name__}: {self._scrub(short_detail(str(exc)))}") from None
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
        try:
            lifetime = float(result.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        return token, time.monotonic() + max(0.0, lifetime - min(TOKEN_REFRESH_SKEW_S, lifetime / 2))

    async def _token(self, tenant_id: str, *, force: bool = False) -> str:
        cached = self._tokens.get(tenant_id)
        if cached and not force and time.monotonic() < cached[1]:
            return cached[0]
        loop = asyncio.get_running_loop()
        token, expires_at = await loop.run_in_executor(self._msal_threads, self._acquire_token_blocking, tenant_id, force)
        self._tokens[tenant_id] = (token, expires_at)
        return token

    # --- requests -------------------------------------------------------------------------------

    def _check_same_origin(self, url: httpx.URL) -> None:
        if _origin(url) != self._graph_origin:
            scheme, host, port = _origin(url)
            raise ForeignNextLinkError(
                f"refused @odata.nextLink to {scheme}://{host}:{port} (not the configured Graph host "
                f"{self._graph_origin[0]}://{self._graph_origin[1]}:{self._graph_origin[2]}); the token is never sent elsewhere"
            )

    async def _get_json(self, tenant_id: str, url: httpx.URL, counts: RequestCounts) -> dict[str, Any]:
        self._check_same_origin(url)  # defence in depth: every Graph call, not only nextLinks
        path = url.path
        renewed = False

        async def attempt() -> httpx.Response:
            nonlocal renewed
            token = await self._token(tenant_id)
            response = await self._send(url, token, counts)
            if response.status_code == 401 and not renewed:
                renewed = True  # token expired or revoked mid-run: one fresh token, then give up
                response = await self._send(url, await self._token(tenant_id, force=True), counts)
            raise_for_retryable(response, "GET", path, lambda: _graph_message(response))
            return response

        try:
            response = await self.retry_policy.call_async(attempt)
        except RetryableStatus as exc:
            raise GraphApiError(
                f"Graph GET {path} still answered {exc.status_code} after retries: {self._scrub(exc.detail)}",
                status_code=exc.status_code, method="GET", path=path,
            ) from None
        except httpx.TransportError as exc:
            raise GraphApiError(f"Graph GET {path}: connection failed ({type(exc).__name__})", method="GET", path=path) from None
        if response.status_code != 200:
            hint = " (consent revoked or missing?)" if response.status_code in (401, 403) else ""
            raise GraphApiError(
                f"Graph GET {path} answered {response.status_code}{hint}: {self._scrub(_graph_message(response))}",
                status_code=response.status_code, method="GET", path=path,
            )
        try:
            body = response.json()
        except ValueError:
            raise MalformedDataError(f"Graph GET {path}: answer is not JSON", method="GET", path=path) from None
        if not isinstance(body, dict):
            raise MalformedDataError(f"Graph GET {path}: answer is not a JSON object", method="GET", path=path)
        return body

    async def _send(self, url: httpx.URL, token: str, counts: RequestCounts) -> httpx.Response:
        counts.add("GET", url.path)
        self.request_counts.add("GET", url.path)
        response = await self._http.get(url, headers={"Authorization": f"Bearer {token}"})
        await response.aread()
        return response

    async def _paged(self, tenant_id: str, path: str, params: dict[str, str], counts: RequestCounts) -> list[dict[str, Any]]:
        """Every `value` record of a collection, following nextLinks one after the other."""
        url: httpx.URL | None = httpx.URL(f"{self.graph_url}{path}", params=params)
        records: list[dict[str, Any]] = []
        while url is not None:
            body = await self._get_json(tenant_id, url, counts)
            page = body.get("value")
            if not isinstance(page, list):
                raise MalformedDataError(f"Graph GET {path}: answer has no 'value' list")
            records.extend(page)
            next_link = body.get("@odata.nextLink")
            url = None
            if next_link:
                url = httpx.URL(str(next_link))
                self._check_same_origin(url)
        return records

    # --- reads ----------------------------------------------------------------------------------

    async def tenants(self) -> list[TenantRef]:
        """The partner's customer tenants (GDAP: active relationships only), one per tenant id."""
        counts = RequestCounts()
        by_id: dict[str, TenantRef] = {}
        if self.tenant_source == "contracts":
            for index, contract in enumerate(await self._paged(self.partner_tenant_id, "/v1.0/contracts", {}, counts)):
                tenant_id = _clean(contract.get("customerId"))
                if not tenant_id:
                    raise MalformedDataError(f"contract #{index} (id {contract.get('id')!r}) has no customerId")
                by_id.setdefault(
                    tenant_id, TenantRef(tenant_id, contract.get("displayName"), _clean(contract.get("defaultDomainName")))
                )
        else:
            path = "/v1.0/tenantRelationships/delegatedAdminRelationships"
            for index, relation in enumerate(await self._paged(self.partner_tenant_id, path, {}, counts)):
                if str(relation.get("status", "")).lower() != "active":
                    continue
                customer = relation.get("customer") or {}
                tenant_id = _clean(customer.get("tenantId"))
                if not tenant_id:
                    raise MalformedDataError(f"GDAP relationship #{index} (id {relation.get('id')!r}) has no customer.tenantId")
                by_id.setdefault(tenant_id, TenantRef(tenant_id, customer.get("displayName")))
        by_id.pop(self.partner_tenant_id, None)
        return list(by_id.values())

    async def load_tenant(self, tenant: TenantRef) -> TenantLoad:
        """Domains and users of one tenant; never raises for a tenant-level failure."""
        counts = RequestCounts()
        try:
            domains = await self._paged(tenant.tenant_id, "/v1.0/domains", {"$select": ",".join(DOMAIN_SELECT)}, counts)
            users = await self._paged(
                tenant.tenant_id, "/v1.0/users", {"$select": ",".join(USER_SELECT), "$top": str(PAGE_SIZE)}, counts
            )
            _check_records(tenant.tenant_id, domains, users)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one tenant's failure is recorded, never fatal for the run
            error = str(exc) if isinstance(exc, GraphApiError) else f"{type(exc).__name__}: {exc}"
            if tenant.tenant_id not in error:  # e.g. a Graph refusal: its text names the path, not the tenant
                error = f"tenant {tenant.tenant_id}: {error}"
            return TenantLoad(tenant, "failed", error=self._scrub(error), request_counts=counts.snapshot())
        return TenantLoad(tenant, "loaded", domains=domains, users=users, request_counts=counts.snapshot())

    async def load_all(
        self, tenants: Iterable[TenantRef], on_load: Callable[[TenantLoad], TenantLoad] | None = None
    ) -> list[TenantLoad]:
        """Every tenant's load, at most `concurrency` at a time, in the order given.

        `on_load` replaces each load as soon as it is read, before the next tenant starts (e.g.
        `frames.compact_tenant_load`, which types the users and drops the raw JSON): then at most
        `concurrency` tenants' raw answers are alive at once, not the whole estate's."""
        gate = asyncio.Semaphore(self.concurrency)

        async def bounded(tenant: TenantRef) -> TenantLoad:
            async with gate:
                load = await self.load_tenant(tenant)
                return on_load(load) if on_load is not None else load

        return list(await asyncio.gather(*(bounded(t) for t in tenants)))


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    default_port = {"https": 443, "http": 80}.get(url.scheme, 0)
    return url.scheme.lower(), url.host.lower(), url.port or default_port


def _clean(value: Any) -> str | None:
    text = str(value).strip().lower() if value is not None else ""
    return text or None


def _graph_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return short_detail(response.text)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return short_detail(f"{error.get('code', '')}: {error.get('message', '')}".strip(": "))
    if isinstance(error, str):
        return short_detail(error)
    return short_detail(response.text)


def _check_records(tenant_id: str, domains: list[Any], users: list[Any]) -> None:
    """Malformed records fail the tenant (rather than a half-typed frame, or wrong defaults, later)."""
    for index, domain in enumerate(domains):
        if not isinstance(domain, dict) or not _clean(domain.get("id")):
            raise MalformedDataError(f"tenant {tenant_id}: domain #{index} has no id")
        missing = _missing(domain, DOMAIN_SELECT)
        if missing:
            raise MalformedDataError(f"tenant {tenant_id}: domain #{index} ({domain.get('id')!r}) lacks {missing}")
    for index, user in enumerate(users):
        if not isinstance(user, dict):
            raise MalformedDataError(f"tenant {tenant_id}: user #{index} is not an object")
        label = f"tenant {tenant_id}: user #{index} (id {user.get('id')!r}, upn {user.get('userPrincipalName')!r})"
        for required in ("id", "userPrincipalName"):
            if not _clean(user.get(required)):
                raise MalformedDataError(f"{label} has no {required}")
        missing = _missing(user, USER_SELECT)
        if missing:
            raise MalformedDataError(f"{label} lacks {missing}")


def _missing(record: dict[str, Any], selected: tuple[str, ...]) -> str:
    """The $select-ed properties a record does not carry at all (null is a value: Graph's "not set")."""
    absent = [name for name in selected if name not in record]
    return f"{', '.join(absent)} (asked for with $select, not in Graph's answer)" if absent else ""
