"""The in-flight cap as expiring leases, as pure functions: the reference of ``leases.lua``.

A generation holds one lease from just before its submission until its result
is collected. Leases expire ``ttl`` seconds after they were taken or last
renewed, so a worker that dies mid-flight gives its slot back after at most one
ttl instead of leaking it forever. Acquiring a lease id that is already held
renews it: the id is the step's idempotency key, so a redelivered step does not
count twice.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping

Leases = MutableMapping[str, float]
"""Lease id -> expiry (epoch seconds)."""


def purge(leases: Leases, now: float) -> None:
    """Drop the leases that expired at or before ``now``."""
    for lease_id in [k for k, expiry in leases.items() if expiry <= now]:
        del leases[lease_id]


def acquire(
    leases: Leases, lease_id: str, ttl_s: float, cap: int, now: float
) -> tuple[bool, int, int]:
    """Take (or renew) ``lease_id`` under ``cap``: ``(granted, wait_ms, in_flight)``.

    When the cap is reached, ``wait_ms`` is the time until the oldest lease
    expires: an upper bound, since a release usually comes first.
    """
    purge(leases, now)
    if lease_id in leases or len(leases) < cap:
        leases[lease_id] = now + ttl_s
        return True, 0, len(leases)
    wait_s = min(leases.values()) - now
    return False, max(1, math.ceil(wait_s * 1000.0)), len(leases)


def renew(leases: Leases, lease_id: str, ttl_s: float, now: float) -> bool:
    """Extend a held lease to ``now + ttl_s``; False when it expired or was released."""
    purge(leases, now)
    if lease_id not in leases:
        return False
    leases[lease_id] = now + ttl_s
    return True
