"""An asynchronous Microsoft Graph client for the partner's customer tenants, with msal tokens.

Tokens: `auth.MsalAuth`, an httpx auth flow per tenant over `msal_tokens.MsalTokens` (msal, the
Secure Application Model or app-only client credentials per customer tenant), renewed once on a 401.
Requests are counted by an httpx event hook, per client and per tenant load.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from .auth import MsalAuth
from .connection import USER_AGENT, ssl_verify
from .errors import ForeignNextLinkError, GraphApiError, MalformedDataError, short_detail
from .json_body import response_json
from .msal_tokens import MsalHttpAdapter, MsalTokens
from .request_counts import RequestCounts, async_counting_hooks, counting_into
from .retry import RetryableStatus, RetryPolicy, gave_up, raise_for_retryable
from .secret_scrubber import SecretScrubber

USER_SELECT = (
    "id", "displayName", "givenName", "surname", "userPrincipalName", "mail", "jobTitle", "businessPhones",
    "mobilePhone", "faxNumber", "streetAddress", "proxyAddresses", "assignedLicenses", "accountEnabled", "userType",
)  # fmt: skip
DOMAIN_SELECT = ("id", "isVerified", "isDefault")
PAGE_SIZE = 999  # Graph's maximum $top for users
READS_PER_TENANT = 2  # a tenant's domains and users are read at the same time

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


class GraphClient:
    """Microsoft Graph reads for the sync. Use as `async with GraphClient(...) as graph:`.

    `concurrency`, `timeout` and `retry_policy` have no defaults here: `M365Resource` is their one source.
    `concurrency` is the number of tenants read at once (and of msal threads). Graph throttles per
    customer tenant, not per partner, so the bound is set by our latency: a tenant of up to 999 users
    costs 4 requests in 3 round trips (OpenID discovery, token, then domains and one users page at once).
    """

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
        concurrency: int,
        timeout: float,
        retry_policy: RetryPolicy,
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
        self.app_only = app_only
        self.tenant_source = tenant_source
        self.concurrency = concurrency
        self.graph_scope = graph_scope or f"{self.graph_url}/.default"
        self.retry_policy = retry_policy
        self.request_counts = RequestCounts()  # Graph calls, all tenants
        self.token_request_counts = RequestCounts()  # identity calls made by msal
        self._scrub = SecretScrubber(client_secret, refresh_token)
        self._graph_origin = _origin(httpx.URL(self.graph_url))
        self._msal = MsalTokens(
            login_url=self.login_url,
            client_id=client_id,
            client_secret=client_secret,
            refresh_token=refresh_token,
            app_only=app_only,
            scope=self.graph_scope,
            http=MsalHttpAdapter(
                verify=verify,
                timeout=timeout,
                retry_policy=self.retry_policy,
                counts=self.token_request_counts,
                transport=token_transport,
            ),
            threads=concurrency,  # a token thread per concurrent tenant
            scrub=self._scrub,
        )
        self._tokens = self._msal.cached  # tenant -> (access token, renewal time)
        self._ssl = ssl_verify(verify)
        self._timeout = timeout
        self._transport = transport
        self._http = self._new_http()  # the partner's reads, and a tenant read outside `load_all`

    def _new_http(self) -> httpx.AsyncClient:
        # Small pools, one per tenant slot of `load_all`: httpcore scans every connection of a pool (and
        # every queued request) on each request, so one shared pool cost the read more client CPU than
        # msal did (200 tenants at 30 ms: 4.3 s of client CPU with one pool, 2.2 s with a pool per slot).
        return httpx.AsyncClient(
            verify=self._ssl,
            timeout=httpx.Timeout(self._timeout),
            limits=httpx.Limits(max_connections=READS_PER_TENANT, max_keepalive_connections=READS_PER_TENANT),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            transport=self._transport,
            follow_redirects=False,
            event_hooks=async_counting_hooks(self.request_counts),
        )

    def __repr__(self) -> str:
        mode = "app_only" if self.app_only else "refresh_token=***"
        return (
            f"GraphClient(login_url={self.login_url!r}, graph_url={self.graph_url!r}, "
            f"partner_tenant_id={self.partner_tenant_id!r}, client_id={self.client_id!r}, client_secret=***, {mode})"
        )

    async def aclose(self) -> None:
        await self._http.aclose()
        self._msal.close()

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- requests -------------------------------------------------------------------------------

    def _check_same_origin(self, url: httpx.URL) -> None:
        if _origin(url) != self._graph_origin:
            scheme, host, port = _origin(url)
            raise ForeignNextLinkError(
                f"refused @odata.nextLink to {scheme}://{host}:{port} (not the configured Graph host "
                f"{self._graph_origin[0]}://{self._graph_origin[1]}:{self._graph_origin[2]}); the token is never sent elsewhere"
            )

    async def _get_json(self, tenant_id: str, url: httpx.URL, http: httpx.AsyncClient) -> dict[str, Any]:
        self._check_same_origin(url)  # defence in depth: every Graph call, not only nextLinks
        path = url.path
        auth = MsalAuth(self._msal, tenant_id)

        async def attempt() -> httpx.Response:
            response = await http.get(url, auth=auth)
            raise_for_retryable(response, "GET", path, lambda: _graph_message(response))
            return response

        try:
            response = await self.retry_policy.call_async(attempt)
        except (RetryableStatus, httpx.TransportError) as exc:
            raise gave_up(exc, GraphApiError, f"Graph GET {path}", method="GET", path=path, scrub=self._scrub) from None
        if response.status_code != 200:
            hint = " (consent revoked or missing?)" if response.status_code in (401, 403) else ""
            raise GraphApiError(
                f"Graph GET {path} answered {response.status_code}{hint}: {self._scrub(_graph_message(response))}",
                status_code=response.status_code,
                method="GET",
                path=path,
            )
        try:
            body = response_json(response)
        except ValueError:
            raise MalformedDataError(f"Graph GET {path}: answer is not JSON", method="GET", path=path) from None
        if not isinstance(body, dict):
            raise MalformedDataError(f"Graph GET {path}: answer is not a JSON object", method="GET", path=path)
        return body

    async def _paged(
        self, tenant_id: str, path: str, params: dict[str, str], http: httpx.AsyncClient | None = None
    ) -> list[dict[str, Any]]:
        """Every `value` record of a collection, following nextLinks one after the other."""
        url: httpx.URL | None = httpx.URL(f"{self.graph_url}{path}", params=params)
        records: list[dict[str, Any]] = []
        while url is not None:
            body = await self._get_json(tenant_id, url, http or self._http)
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
        by_id: dict[str, TenantRef] = {}
        if self.tenant_source == "contracts":
            for index, contract in enumerate(await self._paged(self.partner_tenant_id, "/v1.0/contracts", {})):
                tenant_id = _clean(contract.get("customerId"))
                if not tenant_id:
                    raise MalformedDataError(f"contract #{index} (id {contract.get('id')!r}) has no customerId")
                by_id.setdefault(
                    tenant_id,
                    TenantRef(tenant_id, contract.get("displayName"), _clean(contract.get("defaultDomainName"))),
                )
        else:
            path = "/v1.0/tenantRelationships/delegatedAdminRelationships"
            for index, relation in enumerate(await self._paged(self.partner_tenant_id, path, {})):
                if str(relation.get("status", "")).lower() != "active":
                    continue
                customer = relation.get("customer") or {}
                tenant_id = _clean(customer.get("tenantId"))
                if not tenant_id:
                    raise MalformedDataError(
                        f"GDAP relationship #{index} (id {relation.get('id')!r}) has no customer.tenantId"
                    )
                by_id.setdefault(tenant_id, TenantRef(tenant_id, customer.get("displayName")))
        by_id.pop(self.partner_tenant_id, None)
        return list(by_id.values())

    async def load_tenant(self, tenant: TenantRef, http: httpx.AsyncClient | None = None) -> TenantLoad:
        """Domains and users of one tenant (over `http`, a pool of `_new_http`); never raises for a
        tenant-level failure."""
        with counting_into(RequestCounts()) as counts:  # this tenant's Graph requests (the hook counts them)
            try:
                return await self._load_tenant(tenant, counts, http or self._http)
            finally:
                self._msal.release_app(tenant.tenant_id)

    async def _load_tenant(self, tenant: TenantRef, counts: RequestCounts, http: httpx.AsyncClient) -> TenantLoad:
        try:
            # Domains and users are read at the same time (one round trip fewer per tenant); the first
            # failure cancels the other read.
            async with asyncio.TaskGroup() as reads:
                domains_read = reads.create_task(
                    self._paged(tenant.tenant_id, "/v1.0/domains", {"$select": ",".join(DOMAIN_SELECT)}, http)
                )
                users_read = reads.create_task(
                    self._paged(
                        tenant.tenant_id,
                        "/v1.0/users",
                        {"$select": ",".join(USER_SELECT), "$top": str(PAGE_SIZE)},
                        http,
                    )
                )
            domains, users = domains_read.result(), users_read.result()
            _check_records(tenant.tenant_id, domains, users)
            domains = _listed_once(tenant.tenant_id, "domain", domains, ("id",))
            _check_one_default(tenant.tenant_id, domains)
            users = _listed_once(tenant.tenant_id, "user", users, ("id", "userPrincipalName"))
        except asyncio.CancelledError:
            raise
        except Exception as group_or_error:  # noqa: BLE001 - one tenant's failure is recorded, never fatal for the run
            exc = group_or_error.exceptions[0] if isinstance(group_or_error, ExceptionGroup) else group_or_error
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
        `concurrency` tenants' raw answers are alive at once, not the whole estate's.

        `concurrency` slots each take the next tenant when their last one is done, and each slot has
        its own small connection pool."""
        tenants = list(tenants)
        loads: list[TenantLoad | None] = [None] * len(tenants)
        next_tenant = iter(enumerate(tenants))  # shared by the slots; taken without an await in between

        async def slot() -> None:
            async with self._new_http() as http:
                for index, tenant in next_tenant:
                    load = await self.load_tenant(tenant, http)
                    loads[index] = on_load(load) if on_load is not None else load

        await asyncio.gather(*(slot() for _ in range(min(self.concurrency, len(tenants)))))
        return [load for load in loads if load is not None]


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    default_port = {"https": 443, "http": 80}.get(url.scheme, 0)
    return url.scheme.lower(), url.host.lower(), url.port or default_port


def _clean(value: Any) -> str | None:
    text = str(value).strip().lower() if value is not None else ""
    return text or None


def _graph_message(response: httpx.Response) -> str:
    try:
        body = response_json(response)
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


def _check_one_default(tenant_id: str, domains: list[dict[str, Any]]) -> None:
    """A tenant has one default domain; two fail the tenant (the domains frame's check would stop every tenant)."""
    defaults = [domain.get("id") for domain in domains if domain.get("isDefault") is True]
    if len(defaults) > 1:
        raise MalformedDataError(f"tenant {tenant_id}: {len(defaults)} default domains {defaults!r}")


def _listed_once(tenant_id: str, kind: str, records: list[Any], keys: tuple[str, ...]) -> list[Any]:
    """`records` (checked by `_check_records`) with a record Graph listed twice, identically, kept once:
    paging can repeat a record. Two different records sharing a key (an id, or a user's UPN) fail the tenant
    instead: either may be stale, and this one tenant is held rather than every tenant's run stopped by the
    frame's uniqueness check."""
    first_by_key: dict[tuple[str, str | None], dict[str, Any]] = {}
    kept = []
    for record in records:
        entries = [(key, _clean(record.get(key))) for key in keys]
        repeated = False
        for key, value in entries:
            first = first_by_key.get((key, value))
            if first is None:
                continue
            if first != record:
                what = (
                    f"{kind} {record.get('id')!r} is listed twice with different data"
                    if key == "id"
                    else f"{kind}s {first.get('id')!r} and {record.get('id')!r} share the {key} {record.get(key)!r}"
                )
                raise MalformedDataError(f"tenant {tenant_id}: {what}; it is read again next run")
            repeated = True
        if not repeated:
            first_by_key.update(dict.fromkeys(entries, record))
            kept.append(record)
    return kept


def _missing(record: dict[str, Any], selected: tuple[str, ...]) -> str:
    """The $select-ed properties a record does not carry at all (null is a value: Graph's "not set")."""
    absent = [name for name in selected if name not in record]
    return f"{', '.join(absent)} (asked for with $select, not in Graph's answer)" if absent else ""
