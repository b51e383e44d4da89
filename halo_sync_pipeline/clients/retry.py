"""The retry policy shared by the Halo and Graph clients, on top of stamina.

Retried: 429 (waiting `Retry-After` when the server gives one, in seconds or as an HTTP date),
5xx, and transport errors (connection refused/reset, timeouts, a response cut off mid-body).
Not retried: any other 4xx. Everything is bounded by one total deadline per call; a `Retry-After`
longer than what is left of the deadline is not waited for (the call fails at once instead).

Clients signal a retryable answer by raising `RetryableStatus` inside the retried block; when the
retries are exhausted that exception escapes and the client turns it into its own error type.
`stamina.retry_context` is used (not the decorator) so stamina's retry log records never carry
call arguments, which could hold secrets.

The rest of what both clients share lives beside this module, one job each: `connection` (User-Agent,
TLS), `request_counts` and `secret_scrubber`.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import stamina

from .errors import ApiError

T = TypeVar("T")
E = TypeVar("E", bound=ApiError)

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
    """Back-off bounds for one logical call (all attempts and waits together stay within `deadline_s`,
    which has no default here: the resources' `retry_deadline_s` is its one source)."""

    deadline_s: float
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


def raise_for_retryable(
    response: httpx.Response, method: str, path: str, detail: Callable[[], str] | None = None
) -> None:
    """Raise `RetryableStatus` for a 429 or 5xx answer; `detail` (called only then) explains it, scrubbed."""
    if response.status_code == 429 or response.status_code >= 500:
        raise RetryableStatus(
            method,
            path,
            response.status_code,
            parse_retry_after(response.headers.get("retry-after")),
            detail() if detail else "",
        )


def gave_up(
    exc: RetryableStatus | httpx.TransportError,
    error: type[E],
    what: str,
    *,
    method: str,
    path: str,
    scrub: Callable[[str], str] | None = None,
) -> E:
    """The client's own error for a call its retry policy gave up on: the last 429/5xx answer, or a
    connection failure. `what` names the call (e.g. "Halo GET /api/Client"). The server's message and the
    connection error's text are included only through `scrub`, which hides secrets; without it, only the
    status or the error's type."""
    if isinstance(exc, RetryableStatus):
        detail = f": {scrub(exc.detail)}" if exc.detail and scrub else ""
        return error(
            f"{what} still answered {exc.status_code} after retries{detail}",
            status_code=exc.status_code,
            method=method,
            path=path,
        )
    reason = f"{type(exc).__name__}: {scrub(str(exc))}" if scrub else type(exc).__name__
    return error(f"{what}: connection failed ({reason})", method=method, path=path)
