"""The shared retry policy: what is retried, Retry-After parsing, the total deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from halo_sync_pipeline.clients.errors import GraphAuthError, HaloApiError
from halo_sync_pipeline.clients.retry import RetryableStatus, RetryPolicy, gave_up, parse_retry_after
from halo_sync_pipeline.clients.secret_scrubber import SecretScrubber

FAST = RetryPolicy(deadline_s=5.0, wait_initial_s=0.0, wait_max_s=0.0, wait_jitter_s=0.0)


def _status(code: int, retry_after: float | None = None) -> RetryableStatus:
    return RetryableStatus("GET", "/api/Client", code, retry_after)


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") == 0.0


def test_hook_decides_what_is_retried() -> None:
    import time

    hook = RetryPolicy(deadline_s=10.0)._hook(time.monotonic())
    assert hook(_status(429, 2.0)) == 2.0  # Retry-After is waited exactly
    assert hook(_status(429)) is True  # no Retry-After: exponential back-off
    assert hook(_status(503)) is True
    assert hook(_status(429, 60.0)) is False  # longer than the deadline left: fail now
    assert hook(httpx.RemoteProtocolError("peer closed connection")) is True
    assert hook(httpx.ConnectError("refused")) is True
    assert hook(ValueError("a 400 is not retried")) is False


def test_writes_do_not_retry_a_connection_lost_after_sending() -> None:
    import time

    hook = RetryPolicy(deadline_s=10.0).for_writes()._hook(time.monotonic())
    assert hook(httpx.RemoteProtocolError("peer closed connection")) is False
    assert hook(httpx.ReadTimeout("read timed out")) is False
    assert hook(httpx.ConnectError("refused")) is True  # never reached the server
    assert hook(_status(500)) is True


def test_call_retries_until_success() -> None:
    answers = iter([_status(503), httpx.ConnectError("refused"), _status(429, 0.0), "ok"])
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert FAST.call(flaky) == "ok"
    assert calls == 4


def test_call_does_not_retry_other_errors() -> None:
    calls = 0

    def refused() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("400 bad request")

    with pytest.raises(ValueError):
        FAST.call(refused)
    assert calls == 1


def test_call_gives_up_at_the_deadline() -> None:
    policy = RetryPolicy(deadline_s=0.2, wait_initial_s=0.01, wait_max_s=0.02, wait_jitter_s=0.0)
    calls = 0

    def always_503() -> None:
        nonlocal calls
        calls += 1
        raise _status(503)

    with pytest.raises(RetryableStatus) as caught:
        policy.call(always_503)
    assert caught.value.status_code == 503
    assert calls > 1


def test_async_call_retries() -> None:
    import asyncio

    answers = iter([_status(500), "ok"])

    async def flaky() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert asyncio.run(FAST.call_async(flaky)) == "ok"


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(deadline_s=0)


def test_gave_up_names_the_call_and_shows_server_text_only_through_the_scrubber() -> None:
    secret = "s3cret-value-0123456789"
    scrubber = SecretScrubber(secret)
    last_answer = RetryableStatus("GET", "/api/Client", 503, None, detail=f"busy, token {secret}")
    refused = httpx.ConnectError(f"refused while sending {secret}")

    error = gave_up(last_answer, HaloApiError, "Halo GET /api/Client", method="GET", path="/api/Client", scrub=scrubber)
    assert isinstance(error, HaloApiError) and error.status_code == 503 and error.path == "/api/Client"
    assert str(error).startswith("Halo GET /api/Client still answered 503 after retries: busy, token ")
    assert secret not in str(error)

    error = gave_up(refused, GraphAuthError, "identity POST /t/token", method="POST", path="/t/token", scrub=scrubber)
    assert isinstance(error, GraphAuthError) and "connection failed (ConnectError: refused while sending" in str(error)
    assert secret not in str(error)

    # Without a scrubber only the status or the error's type: no server or exception text at all.
    assert str(gave_up(last_answer, HaloApiError, "Halo GET /x", method="GET", path="/x")) == (
        "Halo GET /x still answered 503 after retries"
    )
    assert str(gave_up(refused, GraphAuthError, "identity POST /t", method="POST", path="/t")) == (
        "identity POST /t: connection failed (ConnectError)"
    )
