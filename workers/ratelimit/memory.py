"""The in-memory twin of :class:`~workers.ratelimit.redis_backend.RedisBackend`.

Same contract, same algorithm (it runs ``bucket.py`` and ``leases.py``, which the
Lua scripts mirror), one process only. Use it in unit tests of code that uses
the limiter; give it a :class:`FakeClock` to make waits, refills and lease
expiry deterministic::

    clock = FakeClock()
    limiter = Limiter(MemoryBackend(clock=clock), defaults=...)
    clock.advance(1.5)
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

from workers.ratelimit import bucket, leases
from workers.ratelimit.backend import (
    BucketCall,
    BucketReply,
    EndpointClass,
    LeaseOp,
    LeaseReply,
    Snapshot,
)


class FakeClock:
    """A clock for tests: epoch seconds that move only when told.

    It counts whole microseconds and reports ``sec + usec / 1e6``, exactly what
    ``token_bucket.lua`` computes from Redis ``TIME``; :meth:`time` is what a
    patched fakeredis ``TIME`` reads. So the twin and the script, driven by one
    FakeClock, see bit-identical times.
    """

    def __init__(self, start_s: int = 1_700_000_000) -> None:
        self.micros = start_s * 1_000_000

    def __call__(self) -> float:
        sec, usec = divmod(self.micros, 1_000_000)
        return sec + usec / 1_000_000

    def time(self) -> float:
        """Seconds as ``time.time()`` would give them (for patching ``time`` modules)."""
        return self.micros / 1_000_000

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (rounded to the microsecond)."""
        self.micros += round(seconds * 1_000_000)


class MemoryBackend:
    """Limiter state in a dict guarded by a lock; thread-safe, not shared across processes."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: defaultdict[tuple[str, EndpointClass], dict[str, float]] = defaultdict(dict)
        self._leases: defaultdict[str, dict[str, float]] = defaultdict(dict)

    def bucket(self, token_id: str, endpoint: EndpointClass, call: BucketCall) -> BucketReply:
        """Run one bucket operation under the lock."""
        with self._lock:
            now = self._clock()
            state = self._buckets[(token_id, endpoint)]
            code, wait_ms = self._run(state, call, now)
            limits = bucket.limits_of(state, call.defaults)
            return BucketReply(
                code,
                wait_ms,
                int(bucket.field(state, "epoch")),
                bucket.current_rate(state, limits),
                bucket.field(state, "pause_until"),
            )

    @staticmethod
    def _run(state: dict[str, float], call: BucketCall, now: float) -> tuple[int, int]:
        if call.op == "take":
            granted, wait_ms = bucket.take(
                state, call.defaults, call.cost, now, call.tuning.queue_horizon_s
            )
            return int(granted), wait_ms
        if call.op == "success":
            bucket.on_success(state, call.defaults, call.tuning, now, call.cost)
            return 1, 0
        pause_until = bucket.on_throttle(
            state, call.defaults, call.tuning, now, call.retry_after_s, call.epoch
        )
        return 0, max(0, math.ceil((pause_until - now) * 1000.0))

    def lease(
        self, token_id: str, op: LeaseOp, lease_id: str, ttl_s: float, default_cap: int
    ) -> LeaseReply:
        """Acquire or renew a lease under the lock."""
        with self._lock:
            now = self._clock()
            held = self._leases[token_id]
            if op == "renew":
                renewed = leases.renew(held, lease_id, ttl_s, now)
                return LeaseReply(renewed, 0, len(held))
            override = self._buckets[(token_id, EndpointClass.SUBMIT)].get("max_in_flight")
            cap = default_cap if override is None else int(override)
            return LeaseReply(*leases.acquire(held, lease_id, ttl_s, cap, now))

    def release(self, token_id: str, lease_id: str) -> bool:
        """Drop a lease; False if it was not held."""
        with self._lock:
            return self._leases[token_id].pop(lease_id, None) is not None

    def snapshot(self, token_id: str) -> Snapshot:
        """Copy the token's state, with the twin's clock."""
        with self._lock:
            buckets = {ep: dict(self._buckets[(token_id, ep)]) for ep in EndpointClass}
            return Snapshot(self._clock(), buckets, dict(self._leases[token_id]))

    def update(
        self,
        token_id: str,
        endpoint: EndpointClass,
        values: Mapping[str, float],
        remove: Iterable[str] = (),
    ) -> None:
        """Set and remove bucket fields under the lock."""
        with self._lock:
            state = self._buckets[(token_id, endpoint)]
            state.update({k: float(v) for k, v in values.items()})
            for name in remove:
                state.pop(name, None)

    def clear(self, token_id: str) -> None:
        """Forget the token."""
        with self._lock:
            for endpoint in EndpointClass:
                self._buckets.pop((token_id, endpoint), None)
            self._leases.pop(token_id, None)
