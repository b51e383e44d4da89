"""Shared machinery of both sandbox servers: request stats, fault injection, throttling, tokens.

One `SandboxRuntime` is shared by the Halo and the Microsoft app so that the admin API on the
Halo server (`/_sandbox/stats`, `/_sandbox/faults`) sees and steers both.
"""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette import responses
from starlette.types import ASGIApp, Receive, Scope, Send


class JSONResponse(responses.JSONResponse):
    """starlette's JSONResponse with orjson's encoder: the same compact UTF-8 JSON, 6× faster on a saved
    report of 165k contacts (42 MB: 0.08 s against 0.49 s). The sandbox's encoding time would otherwise
    count against the pipeline in every benchmark."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


@dataclass
class EndpointFault:
    """Random failures for requests whose path matches `path` (a regex searched in the path)."""

    path: str = ".*"
    method: str | None = None  # None: any method
    server: str | None = None  # "halo", "ms" or None for both
    error_rate: float = 0.0  # probability of a failure per matching request
    kinds: tuple[str, ...] = ("500",)  # chosen at random: an HTTP status ("500", "503", "429", ...) or "reset"
    retry_after_s: float = 1.0  # the Retry-After an injected 429 carries, as the real services send one

    def matches(self, server: str, method: str, path: str) -> bool:
        return (
            (self.server is None or self.server == server)
            and (self.method is None or self.method.upper() == method)
            and re.search(self.path, path) is not None
        )


@dataclass
class Faults:
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    endpoints: list[EndpointFault] = field(default_factory=list)
    # 1-based index of the Halo write (POST) that fails with 500; counted from when this was set.
    fail_nth_write: int | None = None
    writes_seen: int = 0
    revoked_tenants: set[str] = field(default_factory=set)  # lower-case tenant ids: Graph answers 403
    foreign_next_link_tenants: set[str] = field(default_factory=set)  # their users nextLink points elsewhere
    foreign_host: str = "https://graph.evil.example"
    # lower-case tenant ids whose users paging repeats each page's last user on the next page, as Graph's can
    repeated_paging_tenants: set[str] = field(default_factory=set)
    # lower-case tenant id -> Graph user properties its users answers leave out, even when $select-ed
    omit_user_properties: dict[str, frozenset[str]] = field(default_factory=dict)

    def update(self, body: dict[str, Any]) -> None:
        """Apply a `POST /_sandbox/faults` body; only the keys given change."""
        if "latency_ms" in body:
            self.latency_ms = float(body["latency_ms"])
        if "jitter_ms" in body:
            self.jitter_ms = float(body["jitter_ms"])
        if "endpoints" in body:
            self.endpoints = [
                EndpointFault(
                    path=e.get("path", ".*"),
                    method=e.get("method"),
                    server=e.get("server"),
                    error_rate=float(e.get("error_rate", 1.0)),
                    kinds=tuple(e.get("kinds", ["500"])),
                    retry_after_s=float(e.get("retry_after_s", 1.0)),
                )
                for e in body["endpoints"]
            ]
        if "fail_nth_write" in body:
            self.fail_nth_write = body["fail_nth_write"]
            self.writes_seen = 0
        if "revoked_tenants" in body:
            self.revoked_tenants = {t.lower() for t in body["revoked_tenants"]}
        if "foreign_next_link_tenants" in body:
            self.foreign_next_link_tenants = {t.lower() for t in body["foreign_next_link_tenants"]}
        if "foreign_host" in body:
            self.foreign_host = body["foreign_host"]
        if "repeated_paging_tenants" in body:
            self.repeated_paging_tenants = {t.lower() for t in body["repeated_paging_tenants"]}
        if "omit_user_properties" in body:
            # Lazy: ms_app imports this module. Unknown names are refused, so a typo cannot silently omit nothing.
            from halo_sync_pipeline.sandbox.ms_app import user_property_names

            self.omit_user_properties = {
                str(tenant).lower(): user_property_names(names, f"omit_user_properties[{tenant!r}]")
                for tenant, names in body["omit_user_properties"].items()
            }

    def as_dict(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "jitter_ms": self.jitter_ms,
            "endpoints": [e.__dict__ | {"kinds": list(e.kinds)} for e in self.endpoints],
            "fail_nth_write": self.fail_nth_write,
            "writes_seen": self.writes_seen,
            "revoked_tenants": sorted(self.revoked_tenants),
            "foreign_next_link_tenants": sorted(self.foreign_next_link_tenants),
            "foreign_host": self.foreign_host,
            "repeated_paging_tenants": sorted(self.repeated_paging_tenants),
            "omit_user_properties": {t: sorted(names) for t, names in sorted(self.omit_user_properties.items())},
        }


class Stats:
    """Request counts per (server, method, path) and unknown fields seen in Halo write bodies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str, str]] = Counter()
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.unknown_fields: Counter[tuple[str, str]] = Counter()  # (endpoint, field)

    def record(self, server: str, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests[(server, method, path)] += 1
            self.statuses[(server, status)] += 1

    def record_unknown_fields(self, endpoint: str, fields: list[str]) -> None:
        with self._lock:
            for f in fields:
                self.unknown_fields[(endpoint, f)] += 1

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.statuses.clear()
            self.unknown_fields.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": [
                    {"server": s, "method": m, "path": p, "count": n} for (s, m, p), n in sorted(self.requests.items())
                ],
                "statuses": [{"server": s, "status": c, "count": n} for (s, c), n in sorted(self.statuses.items())],
                "unknown_fields": [
                    {"endpoint": e, "field": f, "count": n} for (e, f), n in sorted(self.unknown_fields.items())
                ],
                "total": sum(self.requests.values()),
            }


class SlidingWindowLimit:
    """At most `limit` requests in any `seconds` window (Halo's hosted limit is 300 per 300 s)."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit, self.seconds = limit, seconds
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def take(self) -> float | None:
        """None if allowed, else the seconds until a slot frees."""
        now = time.monotonic()
        with self._lock:
            while self._times and now - self._times[0] >= self.seconds:
                self._times.popleft()
            if len(self._times) >= self.limit:
                return self.seconds - (now - self._times[0])
            self._times.append(now)
            return None


class TokenBucket:
    """Graph-style per-tenant throttle: `rate` requests per second, bursts up to `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> float | None:
        """None if allowed, else the seconds until the next token."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return None
            return (1 - self._tokens) / self.rate


@dataclass
class Token:
    claims: dict[str, Any]
    expires_at: float


class TokenStore:
    """Opaque bearer tokens with an expiry. Lookup of an unknown or expired token gives None."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._lock = threading.Lock()

    def issue(self, claims: dict[str, Any], lifetime_s: float) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = Token(claims, time.time() + lifetime_s)
        return token

    def lookup(self, token: str | None) -> dict[str, Any] | None:
        if not token:
            return None
        with self._lock:
            found = self._tokens.get(token)
            if found is None or found.expires_at <= time.time():
                return None
            return found.claims

    def expire_all(self) -> None:
        with self._lock:
            self._tokens.clear()


def bearer(scope_headers: Any) -> str | None:
    """The bearer token of a Starlette request's headers, if any."""
    auth = scope_headers.get("authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else None


@dataclass
class SandboxRuntime:
    faults: Faults = field(default_factory=Faults)
    stats: Stats = field(default_factory=Stats)
    tokens: TokenStore = field(default_factory=TokenStore)
    token_lifetime_s: float = 3600.0
    halo_rate_limit: SlidingWindowLimit | None = field(default_factory=lambda: SlidingWindowLimit(300, 300))
    graph_rate: float = 50.0  # per tenant, requests per second (None-like when <= 0: throttling off)
    graph_burst: int = 100
    _graph_buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def graph_throttle(self, tenant_id: str) -> float | None:
        """None if the tenant may make a Graph call now, else seconds to put in Retry-After."""
        if self.graph_rate <= 0:
            return None
        bucket = self._graph_buckets.get(tenant_id)
        if bucket is None:
            bucket = self._graph_buckets.setdefault(tenant_id, TokenBucket(self.graph_rate, self.graph_burst))
        return bucket.take()

    def set_graph_throttle(self, rate: float, burst: int) -> None:
        self.graph_rate, self.graph_burst = rate, burst
        self._graph_buckets.clear()


class SandboxMiddleware:
    """Pure-ASGI middleware: latency, random 500/503/connection resets, Nth-write failure, stats.

    A "reset" starts a response and then aborts it, so the client sees the connection drop
    mid-response (httpx raises RemoteProtocolError), which is what a real reset looks like to it.
    """

    def __init__(self, app: ASGIApp, runtime: SandboxRuntime, server: str) -> None:
        self.app, self.runtime, self.server = app, runtime, server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        faults = self.runtime.faults
        status_seen = 0

        async def send_and_count(message: MutableMapping[str, Any]) -> None:
            nonlocal status_seen
            if message["type"] == "http.response.start":
                status_seen = message["status"]
            await send(message)

        admin = path.startswith("/_sandbox/")
        try:
            if not admin:
                if faults.latency_ms or faults.jitter_ms:
                    await asyncio.sleep((faults.latency_ms + random.uniform(0, faults.jitter_ms)) / 1000)
                kind, retry_after_s = self._fault_for(method, path)
                if kind == "reset":
                    status_seen = 599
                    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
                    await send({"type": "http.response.body", "body": b'{"partial":', "more_body": True})
                    raise ConnectionResetError("sandbox fault: connection reset")
                if kind is not None:
                    status = int(kind)
                    headers = {"Retry-After": f"{retry_after_s:g}"} if status == 429 else None
                    await JSONResponse(
                        {"error": f"sandbox fault: injected {status}"}, status_code=status, headers=headers
                    )(scope, receive, send_and_count)
                    return
            await self.app(scope, receive, send_and_count)
        finally:
            self.runtime.stats.record(self.server, method, path, status_seen)

    def _fault_for(self, method: str, path: str) -> tuple[str | None, float]:
        """The fault to inject for this request, if any, and the Retry-After of an injected 429."""
        faults = self.runtime.faults
        if self.server == "halo" and method == "POST" and path.lower().startswith("/api/") and faults.fail_nth_write:
            faults.writes_seen += 1
            if faults.writes_seen == faults.fail_nth_write:
                return "500", 0.0
        for fault in faults.endpoints:
            if fault.matches(self.server, method, path) and random.random() < fault.error_rate:
                return random.choice(fault.kinds), fault.retry_after_s
        return None, 0.0
