"""The retry policy shared by the Halo and Graph clients, on top of stamina.

Retried: 429 (waiting `Retry-After` when the server gives one, in seconds or as an HTTP date),
5xx, and transport errors (connection refused/reset, timeouts, a response cut off mid-body).
Not retried: any other 4xx. Everything is bounded by one total deadline per call; a `Retry-After`
longer than what is left of the deadline is not waited for (the call fails at once instead).

Clients signal a retryable answer by raising `RetryableStatus` inside the retried block; when the
retries are exhausted that exception escapes and the client turns it into its own error type.
`stamina.retry_context` is used (not the decorator) so stamina's retry log records never carry
call arguments, which could hold secrets.

Also here, because both clients need it: the User-Agent, TLS `verify` from a CA bundle path,
request counters and the secret scrubber applied to every error text.
"""

from __future__ import annotations

import email.utils
import importlib.metadata
import math
import ssl
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import stamina

T = TypeVar("T")

# Transport errors after which a request certainly did not reach the server's application.
NOT_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)


class RetryableStatus(Exception):
    """A 429 or 5xx answer, raised inside a retried block. Carries no URL query, body or header."""

    def __init__(self, method: str, path: str, status_code: int, retry_after_s: float | None, detail: str = "") -> None:
        self.method, self.path, self.status_code = method, path, status_code
        self.retry_after_s = retry_after_s
        self.detail = detail
        super().__init__(f"{method} {path} answered {status_code}{': ' + detail if detail else ''}")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date); None if absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # HTTP dates are GMT by definition
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """Back-off bounds for one logical call (all attempts and waits together stay within `deadline_s`)."""

    deadline_s: float = 120.0
    wait_initial_s: float = 0.5
    wait_max_s: float = 30.0
    wait_jitter_s: float = 1.0
    # Retry transport errors that happen after the request may have been processed (reads are safe to repeat).
    retry_after_send_errors: bool = True

    def __post_init__(self) -> None:
        if self.deadline_s <= 0:
            raise ValueError(f"retry deadline must be > 0 seconds, got {self.deadline_s}")
        if self.wait_initial_s < 0 or self.wait_max_s < 0 or self.wait_jitter_s < 0:
            raise ValueError("retry waits must be >= 0")

    def for_writes(self) -> RetryPolicy:
        """The same bounds, but a connection lost after sending is not retried (the write may have landed)."""
        return RetryPolicy(self.deadline_s, self.wait_initial_s, self.wait_max_s, self.wait_jitter_s, False)

    def _hook(self, started: float) -> Callable[[Exception], bool | float]:
        def should_retry(exc: Exception) -> bool | float:
            if isinstance(exc, RetryableStatus):
                if exc.retry_after_s is None:
                    return True
                remaining = self.deadline_s - (time.monotonic() - started)
                # Waiting past the deadline only to give up is pointless: fail now with the 429.
                return exc.retry_after_s if exc.retry_after_s <= remaining else False
            if isinstance(exc, httpx.TransportError):
                return self.retry_after_send_errors or isinstance(exc, NOT_SENT_ERRORS)
            return False

        return should_retry

    def _context(self) -> Any:  # stamina's retry-context iterator (a private type)
        return stamina.retry_context(
            on=self._hook(time.monotonic()),
            attempts=None,
            timeout=self.deadline_s,
            wait_initial=self.wait_initial_s,
            wait_max=self.wait_max_s,
            wait_jitter=self.wait_jitter_s,
        )

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` until it returns, a non-retryable error escapes, or the deadline passes."""
        for attempt in self._context():
            with attempt:
                return fn()
        raise AssertionError("unreachable: stamina either returns or re-raises")  # pragma: no cover

    async def call_async(self, fn: Callable[[], Awaitable[T]]) -> T:
        async for attempt in self._context():
            with attempt:
                return await fn()
        raise AssertionError("unreachable: stamina either returns or re-raises")  # pragma: no cover


def raise_for_retryable(response: httpx.Response, method: str, path: str, detail: Callable[[], str] | None = None) -> None:
    """Raise `RetryableStatus` for a 429 or 5xx answer; `detail` (called only then) explains it, scrubbed."""
    if response.status_code == 429 or response.status_code >= 500:
        raise RetryableStatus(
            method,
            path,
            response.status_code,
            parse_retry_after(response.headers.get("retry-after")),
            detail() if detail else "",
        )


# --- HTTP plumbing shared by both clients -------------------------------------------------------


def _package_version() -> str:
    try:
        return importlib.metadata.version("halo-sync-pipeline")
    except importlib.metadata.PackageNotFoundError:
        return "0"


USER_AGENT = f"halo-sync-pipeline/{_package_version()}"


def ssl_verify(verify: str | bool) -> ssl.SSLContext | bool:
    """httpx's `verify` from a CA bundle path (e.g. the sandbox's) or a bool."""
    if isinstance(verify, bool):
        return verify
    if not verify:
        raise ValueError("verify must be True, False or the path of a CA bundle file")
    return ssl.create_default_context(cafile=verify)


class RequestCounts:
    """Requests actually sent (retries included), by "METHOD /path" (no query string); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, method: str, path: str) -> None:
        with self._lock:
            self._counts[f"{method.upper()} {path}"] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def __repr__(self) -> str:
        return f"RequestCounts(total={self.total})"


class SecretScrubber:
    """Replaces known secret values in any text that may reach an error message or a log line."""

    def __init__(self, *secrets: str | None) -> None:
        self._secrets = [s for s in secrets if s]

    def add(self, secret: str | None) -> None:
        if secret and secret not in self._secrets:
            self._secrets.append(secret)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def __repr__(self) -> str:
        return f"SecretScrubber({len(self._secrets)} secrets hidden)"
