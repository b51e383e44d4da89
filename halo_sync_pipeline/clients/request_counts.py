"""Request counting: what each client actually sent (retries and token renewals included)."""

from __future__ import annotations

import threading
from collections import Counter


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
