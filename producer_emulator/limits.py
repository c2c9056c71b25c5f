"""Per-token rate limits and the in-flight cap.

Both run on the server's event loop only, so they need no locks. Clocks are
real monotonic seconds: clients pace themselves with real clocks, so the
limits are not time-scaled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token buckets keyed by ``(token, endpoint class)``.

    Rate and burst are passed on every call rather than stored, so a runtime
    config change applies to existing buckets at once.
    """

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def take(self, key: tuple[str, str], rate: float, burst: int, now: float) -> float | None:
        """Take one token: ``None`` when granted, else the seconds until one exists."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(burst), stamp=now)
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / rate

    def clear(self) -> None:
        """Forget every bucket (they refill to full on next use)."""
        self._buckets.clear()


class InFlight:
    """Generations running per token, each with the monotonic time it is due."""

    def __init__(self) -> None:
        self._by_token: dict[str, dict[str, float]] = {}
        self.total = 0
        self.max_seen = 0

    def count(self, token: str) -> int:
        """Generations in flight for ``token``."""
        return len(self._by_token.get(token, {}))

    def add(self, token: str, task_id: str, due: float) -> None:
        """Start counting ``task_id`` against ``token``."""
        self._by_token.setdefault(token, {})[task_id] = due
        self.total += 1
        self.max_seen = max(self.max_seen, self.total)

    def remove(self, token: str, task_id: str) -> None:
        """Stop counting ``task_id`` (idempotent)."""
        tasks = self._by_token.get(token)
        if tasks is not None and tasks.pop(task_id, None) is not None:
            self.total -= 1

    def seconds_until_free(self, token: str, now: float) -> float:
        """Seconds until the earliest of ``token``'s generations ends."""
        tasks = self._by_token.get(token)
        if not tasks:
            return 0.0
        return max(0.0, min(tasks.values()) - now)

    def by_token(self) -> dict[str, int]:
        """Count per token (keys as given; the caller hashes them for display)."""
        return {token: len(tasks) for token, tasks in self._by_token.items() if tasks}

    def clear(self) -> None:
        """Forget every generation (used by reset)."""
        self._by_token.clear()
        self.total = 0
        self.max_seen = 0


def retry_after_seconds(wait_s: float) -> int:
    """Whole seconds for a ``Retry-After`` header: rounded up, at least 1."""
    return max(1, math.ceil(wait_s))
