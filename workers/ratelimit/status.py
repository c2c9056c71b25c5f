"""What ``limits show`` reports: the effective limits and learned state of one token."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from workers.ratelimit import bucket
from workers.ratelimit.backend import EndpointClass, Snapshot
from workers.ratelimit.bucket import Limits, Tuning

OVERRIDE_FIELDS = ("ceiling", "burst", "max_in_flight")
"""Bucket fields written by ``limits set``; they win over the settings."""


@dataclass(frozen=True, slots=True)
class BucketStatus:
    """One endpoint class of one token, as of the backend's clock."""

    endpoint: EndpointClass
    ceiling: float
    """Configured maximum, tokens/s."""
    rate: float
    """Learned rate in force now, tokens/s (<= ceiling)."""
    burst: float
    tokens: float
    """Tokens available now."""
    paused_for_s: float
    """Seconds until admissions resume (0 when not paused)."""
    pause_until: float | None
    """Epoch seconds the pause ends, if one is in force."""
    throttles: int
    """Rate decreases so far (the epoch)."""
    accepted_per_s: float
    """Recent successes per second."""
    w_max: float | None
    """Rate the provider accepted when it last refused more."""
    overrides: tuple[str, ...]
    """Fields set at runtime (``limits set``) rather than from settings."""


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """Every limit of one token: the buckets and the in-flight cap."""

    token_id: str
    at: float
    submit: BucketStatus
    poll: BucketStatus
    in_flight: int
    max_in_flight: int
    max_in_flight_overridden: bool

    def bucket(self, endpoint: EndpointClass) -> BucketStatus:
        """The status of one endpoint class."""
        return self.submit if endpoint is EndpointClass.SUBMIT else self.poll

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


def bucket_status(
    endpoint: EndpointClass,
    state: Mapping[str, float],
    defaults: Limits,
    tuning: Tuning,
    now: float,
) -> BucketStatus:
    """Compute the reportable view of one bucket's raw fields at ``now``."""
    limits = bucket.limits_of(state, defaults)
    pause_until = bucket.field(state, "pause_until")
    w_max = bucket.field(state, "w_max")
    return BucketStatus(
        endpoint=endpoint,
        ceiling=limits.ceiling,
        rate=bucket.current_rate(state, limits),
        burst=limits.burst,
        tokens=bucket.tokens_at(state, limits, now),
        paused_for_s=max(0.0, pause_until - now),
        pause_until=pause_until if pause_until > now else None,
        throttles=int(bucket.field(state, "epoch")),
        accepted_per_s=bucket.accepted_rate(state, tuning, now),
        w_max=w_max or None,
        overrides=tuple(name for name in OVERRIDE_FIELDS if name in state),
    )


def limit_status(
    token_id: str,
    snap: Snapshot,
    defaults: Mapping[EndpointClass, Limits],
    default_cap: int,
    tuning: Tuning,
) -> LimitStatus:
    """Build the full status of a token from a backend snapshot."""
    views = {
        ep: bucket_status(ep, snap.buckets.get(ep, {}), defaults[ep], tuning, snap.now)
        for ep in EndpointClass
    }
    override = snap.buckets.get(EndpointClass.SUBMIT, {}).get("max_in_flight")
    live = sum(1 for expiry in snap.leases.values() if expiry > snap.now)
    return LimitStatus(
        token_id=token_id,
        at=snap.now,
        submit=views[EndpointClass.SUBMIT],
        poll=views[EndpointClass.POLL],
        in_flight=live,
        max_in_flight=default_cap if override is None else int(override),
        max_in_flight_overridden=override is not None,
    )
