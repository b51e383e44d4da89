"""The Halo PSA API of the sandbox (the parts the sync uses) plus the sandbox admin API under /_sandbox/.

Response shapes follow what public Halo clients read: `{record_count, clients|sites|users|reports}`,
`report.rows` / `report.load_error`, `mappings_client`. List rows of /api/Users and /api/Site carry
Halo's list models (Users_List: `azure_id`, no email2/email3; Site_List: `delivery_address_line1`);
detail GETs carry the detail models (`azureoid`; a client's `azure_tenants` as AreaAzureTenant).
POST bodies are JSON arrays validated against Halo's OpenAPI request schemas: a type error rejects
the whole request (400, nothing written); a field the schema does not know is accepted and counted in
the stats, as real Halo silently drops it. A client's `azure_tenants` in a POST is its whole new list
(see HaloStore._write_azure_tenants).
"""

from __future__ import annotations

import copy
import hmac
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from halo_sync_pipeline.halo_api_schema import ShapeCheck
from halo_sync_pipeline.sandbox.credentials import SandboxCredentials
from halo_sync_pipeline.sandbox.estate import EstateError
from halo_sync_pipeline.sandbox.halo_store import HaloStore, ReportSqlError, WriteRejected
from halo_sync_pipeline.sandbox.runtime import (
    JSONResponse,
    SandboxMiddleware,
    SandboxRuntime,
    SlidingWindowLimit,
    bearer,
)

DEFAULT_PAGE_SIZE = 50
MAX_ERRORS_SHOWN = 10


@dataclass(frozen=True)
class SandboxControl:
    """What the admin API needs from the server that owns both apps."""

    current_m365: Callable[[], dict[str, Any]]
    reset: Callable[[dict[str, Any] | None], None]  # None: back to the estate the sandbox started from


class HttpError(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(body)
        self.status, self.body, self.headers = status, body, headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


def _bad_request(message: str) -> HttpError:
    return HttpError(400, {"error": message})


def _bool_param(request: Request, name: str, default: bool = False) -> bool:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    if value.lower() not in ("true", "false", "1", "0"):
        raise _bad_request(f"query parameter {name} must be true or false, got {value!r}")
    return value.lower() in ("true", "1")


def _int_param(request: Request, name: str, default: int | None = None, minimum: int = 0) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise _bad_request(f"query parameter {name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise _bad_request(f"query parameter {name} must be at least {minimum}")
    return number


def _page(request: Request, key: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Halo list paging: `pageinate=true` with page_size/page_no (1-based), else all (or `count`) records."""
    total = len(records)
    if _bool_param(request, "pageinate"):
        size = _int_param(request, "page_size", DEFAULT_PAGE_SIZE, minimum=1) or DEFAULT_PAGE_SIZE
        number = _int_param(request, "page_no", 1, minimum=1) or 1
        start = (number - 1) * size
        return {"page_no": number, "page_size": size, "record_count": total, key: records[start : start + size]}
    count = _int_param(request, "count", 0)
    return {"record_count": total, key: records[:count] if count else records}


def _one_or_many(saved: list[dict[str, Any]]) -> Any:
    return saved[0] if len(saved) == 1 else saved


class _HaloApi:
    def __init__(
        self, store: HaloStore, runtime: SandboxRuntime, credentials: SandboxCredentials, control: SandboxControl
    ) -> None:
        self.store, self.runtime, self.credentials, self.control = store, runtime, credentials, control

    # ------------------------------------------------------------------ auth

    async def authinfo(self, request: Request) -> Response:
        base = f"{request.url.scheme}://{request.url.netloc}"
        return JSONResponse(
            {"auth_url": f"{base}/auth", "resource_server": f"{base}/api", "tenant": self.credentials.halo_tenant}
        )

    async def token(self, request: Request) -> Response:
        self._rate_limit()
        form = _form(await request.body())
        if request.query_params.get("tenant") != self.credentials.halo_tenant:
            raise HttpError(400, {"error": "invalid_request", "error_description": "unknown or missing tenant"})
        if form.get("grant_type") != "client_credentials":
            raise HttpError(400, {"error": "unsupported_grant_type"})
        client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        if not (
            hmac.compare_digest(client_id.encode(), self.credentials.halo_client_id.encode())
            and hmac.compare_digest(secret.encode(), self.credentials.halo_client_secret.encode())
        ):
            raise HttpError(401, {"error": "invalid_client"})
        lifetime = self.runtime.token_lifetime_s
        scope = str(form.get("scope") or "all")
        token = self.runtime.tokens.issue({"server": "halo", "client_id": client_id, "scope": scope}, lifetime)
        return JSONResponse(
            {"token_type": "Bearer", "access_token": token, "expires_in": math.floor(lifetime), "scope": scope}
        )

    def _rate_limit(self) -> None:
        limit: SlidingWindowLimit | None = self.runtime.halo_rate_limit
        wait = limit.take() if limit is not None else None
        if wait is not None:
            raise HttpError(429, {"error": "rate limit exceeded"}, {"Retry-After": str(max(1, math.ceil(wait)))})

    def _authorise(self, request: Request) -> None:
        self._rate_limit()
        claims = self.runtime.tokens.lookup(bearer(request.headers))
        if claims is None or claims.get("server") != "halo":
            raise HttpError(401, {"error": "invalid_token"}, {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    # ------------------------------------------------------------------ reads

    async def clients(self, request: Request) -> Response:
        self._authorise(request)
        records = await run_in_threadpool(self.store.clients, include_inactive=_bool_param(request, "includeinactive"))
        return JSONResponse(_page(request, "clients", records))

    async def _detail(
        self, request: Request, read: Callable[..., Any], what: str, details: tuple[str, ...] = ("includedetails",)
    ) -> Response:
        """GET /api/{Resource}/{id}: the record (with its details when one of the `details` query flags is
        set), or 404 naming the id."""
        self._authorise(request)
        record_id = request.path_params["id"]
        with_details = any(_bool_param(request, flag) for flag in details)
        record = await run_in_threadpool(read, record_id, details=with_details)
        if record is None:
            raise HttpError(404, {"error": f"no {what} with id {record_id}"})
        return JSONResponse(record)

    async def client(self, request: Request) -> Response:
        return await self._detail(request, self.store.client, "client")

    async def sites(self, request: Request) -> Response:
        self._authorise(request)
        records = await run_in_threadpool(self.store.sites, client_id=_int_param(request, "client_id"))
        return JSONResponse(_page(request, "sites", records))

    async def users(self, request: Request) -> Response:
        self._authorise(request)
        records = await run_in_threadpool(
            self.store.users,
            include_inactive=_bool_param(request, "includeinactive"),
            client_id=_int_param(request, "client_id"),
            site_id=_int_param(request, "site_id"),
        )
        return JSONResponse(_page(request, "users", records))

    async def user(self, request: Request) -> Response:
        return await self._detail(request, self.store.user, "user")

    async def azure_connections(self, request: Request) -> Response:
        self._authorise(request)
        found = await run_in_threadpool(self.store.azure_connections, type_=_int_param(request, "type"))
        return JSONResponse(found)

    async def azure_connection(self, request: Request) -> Response:
        flags = ("includedetails", "includetenants")
        return await self._detail(request, self._connection_with_tenants, "Azure AD connection", flags)

    def _connection_with_tenants(self, connection_id: int, *, details: bool) -> dict[str, Any] | None:
        record = self.store.azure_connection(connection_id)
        if record is not None and details:
            # Only the azure_tenants entries of this connection: a type-1 connection's are not the partner's.
            record["mappings_client"] = self.store.tenant_mappings(connection_id)
        return record

    # ------------------------------------------------------------------ writes

    async def _validated_array(self, request: Request, endpoint: str) -> list[dict[str, Any]]:
        """The POSTed array once every element passes Halo's schema; unknown fields are counted."""
        try:
            body = await request.json()
        except ValueError:
            raise _bad_request("body is not valid JSON") from None
        if not isinstance(body, list):
            raise _bad_request(f"POST /api/{endpoint} takes a JSON array of records")
        errors, unknown = [], []
        check = ShapeCheck(endpoint)  # Halo's schema once per shape of element, not once per element
        for index, element in enumerate(body):
            problems = check(element)
            errors += [f"element [{index}]: {e}" for e in problems.errors]
            unknown += problems.unknown_fields
        if errors:
            more = f" (and {len(errors) - MAX_ERRORS_SHOWN} more)" if len(errors) > MAX_ERRORS_SHOWN else ""
            raise _bad_request("; ".join(errors[:MAX_ERRORS_SHOWN]) + more)
        if unknown:
            self.runtime.stats.record_unknown_fields(endpoint, unknown)
        return body

    async def _write(
        self, request: Request, endpoint: str, upsert: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
    ) -> Response:
        self._authorise(request)
        elements = await self._validated_array(request, endpoint)
        try:
            saved = await run_in_threadpool(upsert, elements)
        except WriteRejected as exc:
            raise _bad_request(str(exc)) from None
        return JSONResponse(_one_or_many(saved))

    async def post_clients(self, request: Request) -> Response:
        return await self._write(request, "Client", self.store.upsert_clients)

    async def post_users(self, request: Request) -> Response:
        return await self._write(request, "Users", self.store.upsert_users)

    # ------------------------------------------------------------------ reports

    async def reports(self, request: Request) -> Response:
        self._authorise(request)
        found = await run_in_threadpool(self.store.reports, request.query_params.get("search"))
        return JSONResponse({"record_count": len(found), "reports": found})

    async def post_reports(self, request: Request) -> Response:
        return await self._write(request, "Report", self.store.save_reports)

    async def report(self, request: Request) -> Response:
        return await self._detail(request, self._report_with_rows, "report", ("loadreport",))

    def _report_with_rows(self, report_id: int, *, details: bool) -> dict[str, Any] | None:
        saved = self.store.report(report_id)
        if saved is not None and details:
            saved["report"] = self._load_report(saved["sql"])
        return saved

    def _load_report(self, sql: str) -> dict[str, Any]:
        try:
            return {"loaded": True, "rows": self.store.run_report_sql(sql)}
        except ReportSqlError as exc:
            # Halo answers 200 and puts the SQL error into the report content.
            return {"loaded": False, "rows": [], "load_error": str(exc)}

    # ------------------------------------------------------------------ admin (/_sandbox/)

    async def admin_estate(self, _request: Request) -> Response:
        halo = await run_in_threadpool(self.store.export)
        return JSONResponse({"halo": halo, "m365": self.control.current_m365()})

    async def admin_stats(self, _request: Request) -> Response:
        return JSONResponse(self.runtime.stats.snapshot())

    async def admin_faults(self, request: Request) -> Response:
        body = await _json_object(request)
        runtime_keys = {"token_lifetime_s", "halo_rate_limit", "graph_rate", "graph_burst"}
        fault_part = {k: v for k, v in body.items() if k not in runtime_keys}
        try:
            copy.deepcopy(self.runtime.faults).update(fault_part)  # validate before changing anything
            settings = _runtime_settings(self.runtime, body)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise _bad_request(f"invalid faults: {exc!r}") from None
        self.runtime.faults.update(fault_part)
        _apply_runtime_settings(self.runtime, settings)
        return JSONResponse(current_faults(self.runtime))

    async def admin_reset(self, request: Request) -> Response:
        body = await _json_object(request) if await request.body() else {}
        try:
            await run_in_threadpool(self.control.reset, body.get("estate"))
        except EstateError as exc:
            raise _bad_request(str(exc)) from None
        return JSONResponse({"reset": True})

    async def admin_expire_tokens(self, _request: Request) -> Response:
        self.runtime.tokens.expire_all()
        return JSONResponse({"expired": True})


def _form(body: bytes) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (last value wins), without python-multipart."""
    return {key: values[-1] for key, values in parse_qs(body.decode("utf-8", "replace")).items()}


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _bad_request("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _bad_request("body must be a JSON object")
    return body


def parse_rate_limit(value: Any) -> tuple[int, float] | None:
    """`"300/300"`, `[300, 300]`, or None / "off" (no limit) -> (requests, seconds) or None."""
    if value is None or value == "off":
        return None
    parts = value.split("/") if isinstance(value, str) else list(value)
    if len(parts) != 2:
        raise ValueError(f"a Halo rate limit is N/SECONDS or off, got {value!r}")
    requests, seconds = int(parts[0]), float(parts[1])
    if requests < 1 or seconds <= 0:
        raise ValueError(f"a Halo rate limit needs N >= 1 and SECONDS > 0, got {value!r}")
    return requests, seconds


def _runtime_settings(runtime: SandboxRuntime, body: dict[str, Any]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if "token_lifetime_s" in body:
        settings["token_lifetime_s"] = float(body["token_lifetime_s"])
    if "halo_rate_limit" in body:
        settings["halo_rate_limit"] = parse_rate_limit(body["halo_rate_limit"])
    if "graph_rate" in body or "graph_burst" in body:
        settings["graph"] = (
            float(body.get("graph_rate", runtime.graph_rate)),
            int(body.get("graph_burst", runtime.graph_burst)),
        )
    return settings


def _apply_runtime_settings(runtime: SandboxRuntime, settings: dict[str, Any]) -> None:
    if "token_lifetime_s" in settings:
        runtime.token_lifetime_s = settings["token_lifetime_s"]
    if "halo_rate_limit" in settings:
        limit = settings["halo_rate_limit"]
        runtime.halo_rate_limit = None if limit is None else SlidingWindowLimit(*limit)
    if "graph" in settings:
        runtime.set_graph_throttle(*settings["graph"])


def current_faults(runtime: SandboxRuntime) -> dict[str, Any]:
    limit = runtime.halo_rate_limit
    return runtime.faults.as_dict() | {
        "token_lifetime_s": runtime.token_lifetime_s,
        "halo_rate_limit": None if limit is None else f"{limit.limit}/{limit.seconds:g}",
        "graph_rate": runtime.graph_rate,
        "graph_burst": runtime.graph_burst,
    }


def build_halo_app(
    store: HaloStore, runtime: SandboxRuntime, credentials: SandboxCredentials, control: SandboxControl
) -> SandboxMiddleware:
    """The Halo server's ASGI app, wrapped in the runtime's middleware (faults, latency, stats)."""
    api = _HaloApi(store, runtime, credentials, control)
    routes = [
        Route("/api/authinfo", api.authinfo, methods=["GET"]),
        Route("/auth/token", api.token, methods=["POST"]),
        Route("/api/Client", api.clients, methods=["GET"]),
        Route("/api/Client", api.post_clients, methods=["POST"]),
        Route("/api/Client/{id:int}", api.client, methods=["GET"]),
        Route("/api/Site", api.sites, methods=["GET"]),
        Route("/api/Users", api.users, methods=["GET"]),
        Route("/api/Users", api.post_users, methods=["POST"]),
        Route("/api/Users/{id:int}", api.user, methods=["GET"]),
        Route("/api/Report", api.reports, methods=["GET"]),
        Route("/api/Report", api.post_reports, methods=["POST"]),
        Route("/api/Report/{id:int}", api.report, methods=["GET"]),
        Route("/api/azureadconnection", api.azure_connections, methods=["GET"]),
        Route("/api/azureadconnection/{id:int}", api.azure_connection, methods=["GET"]),
        Route("/_sandbox/estate", api.admin_estate, methods=["GET"]),
        Route("/_sandbox/stats", api.admin_stats, methods=["GET"]),
        Route("/_sandbox/faults", api.admin_faults, methods=["POST"]),
        Route("/_sandbox/reset", api.admin_reset, methods=["POST"]),
        Route("/_sandbox/expire-tokens", api.admin_expire_tokens, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HttpError: lambda _request, exc: exc.response()})
    return SandboxMiddleware(_case_insensitive_api(app), runtime, "halo")


_API_RESOURCES = {name.lower(): name for name in ("Client", "Site", "Users", "Report", "authinfo", "azureadconnection")}


def _case_insensitive_api(app: ASGIApp) -> ASGIApp:
    """Halo's routes ignore case (/api/users is /api/Users); Starlette's do not."""

    async def normalised(scope: Scope, receive: Receive, send: Send) -> None:
        parts = scope.get("path", "").split("/")
        if scope["type"] == "http" and len(parts) > 2 and parts[1].lower() == "api":
            parts[1], parts[2] = "api", _API_RESOURCES.get(parts[2].lower(), parts[2])
            scope = dict(scope, path="/".join(parts))
        await app(scope, receive, send)

    return normalised
