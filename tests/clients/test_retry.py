"""The shared retry policy: what is retried, Retry-After parsing, the total deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from halo_sync_pipeline.clients.retry import RetryableStatus, RetryPolicy, parse_retry_after

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
