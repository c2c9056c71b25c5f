"""The small contract a limiter backend fulfils, and the names of its keys.

Two backends implement it: :class:`~workers.ratelimit.redis_backend.RedisBackend`
(the fleet-wide one: atomic Lua, Redis clock) and
:class:`~workers.ratelimit.memory.MemoryBackend` (its in-process twin for unit
tests). The algorithm lives behind the contract (``bucket.py``/``token_bucket.lua``,
``leases.py``/``leases.lua``); :class:`~workers.ratelimit.limiter.Limiter` is the
facade callers use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, NamedTuple, Protocol

from workers.constants import LIMITER_PREFIX
from workers.ratelimit.bucket import Limits, Tuning


class EndpointClass(StrEnum):
    """Budgets of one token: submissions and polls are limited separately."""

    SUBMIT = "submit"
    POLL = "poll"


BucketOp = Literal["take", "success", "throttle"]
LeaseOp = Literal["acquire", "renew"]


class BucketCall(NamedTuple):
    """One call of the bucket algorithm (the arguments of ``token_bucket.lua``)."""

    op: BucketOp
    cost: float
    defaults: Limits
    tuning: Tuning
    retry_after_s: float = -1.0
    epoch: float = -1.0


class BucketReply(NamedTuple):
    """What the bucket said: ``code`` 1 = granted, else wait ``wait_ms``."""

    code: int
    wait_ms: int
    epoch: int
    rate: float
    pause_until: float


class LeaseReply(NamedTuple):
    """What the lease set said: granted (or renewed), wait, live leases after the call."""

    granted: bool
    wait_ms: int
    in_flight: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Raw state of one token at ``now`` (backend clock, epoch seconds)."""

    now: float
    buckets: Mapping[EndpointClass, Mapping[str, float]]
    leases: Mapping[str, float] = field(default_factory=dict)


class Backend(Protocol):
    """Storage and atomicity for the limiter; every method is one atomic step."""

    def bucket(self, token_id: str, endpoint: EndpointClass, call: BucketCall) -> BucketReply:
        """Run one bucket operation (take, success, throttle)."""
        ...

    def lease(
        self, token_id: str, op: LeaseOp, lease_id: str, ttl_s: float, default_cap: int
    ) -> LeaseReply:
        """Acquire or renew an in-flight lease."""
        ...

    def release(self, token_id: str, lease_id: str) -> bool:
        """Drop a lease; False if it was not held (already released or expired)."""
        ...

    def snapshot(self, token_id: str) -> Snapshot:
        """Read every bucket and lease of a token, with the backend's clock."""
        ...

    def update(
        self,
        token_id: str,
        endpoint: EndpointClass,
        values: Mapping[str, float],
        remove: Iterable[str] = (),
    ) -> None:
        """Set and remove bucket fields at once (runtime limit changes)."""
        ...

    def clear(self, token_id: str) -> None:
        """Forget everything about a token: overrides, learned rate, leases."""
        ...


def bucket_key(token_id: str, endpoint: EndpointClass) -> str:
    """Redis key of one bucket; the braces keep a token's keys in one cluster slot."""
    return f"{LIMITER_PREFIX}{{{token_id}}}:{endpoint.value}"


def leases_key(token_id: str) -> str:
    """Redis key of a token's in-flight leases (a sorted set by expiry)."""
    return f"{LIMITER_PREFIX}{{{token_id}}}:leases"
