"""Request counting: what each client actually sent (retries and token renewals included)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial

import httpx


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


# Counts that also receive the requests of the current context (an asyncio task), so that one async
# client counts all its requests and, say, one tenant's load apart. Threads started by
# `loop.run_in_executor` do not inherit it.
_SCOPED: ContextVar[tuple[RequestCounts, ...]] = ContextVar("halo_sync_scoped_request_counts", default=())


@contextmanager
def counting_into(counts: RequestCounts) -> Iterator[RequestCounts]:
    """Inside the block, the requests this context sends are also counted into `counts`."""
    token = _SCOPED.set((*_SCOPED.get(), counts))
    try:
        yield counts
    finally:
        _SCOPED.reset(token)


def count_request(counts: RequestCounts, request: httpx.Request) -> None:
    """httpx `request` event hook body: runs as each request goes out (auth re-sends and token requests too)."""
    counts.add(request.method, request.url.path)


def counting_hooks(counts: RequestCounts) -> dict[str, list[Callable[[httpx.Request], None]]]:
    """`event_hooks` for an `httpx.Client` that counts every request it sends into `counts`."""
    return {"request": [partial(count_request, counts)]}


def async_counting_hooks(counts: RequestCounts) -> dict[str, list[Callable[[httpx.Request], Awaitable[None]]]]:
    """`event_hooks` for an `httpx.AsyncClient` (whose hooks are awaited): every request into `counts`,
    and into the counts of the sending task's `counting_into` blocks."""

    async def hook(request: httpx.Request) -> None:
        for target in (counts, *_SCOPED.get()):
            count_request(target, request)

    return {"request": [hook]}
