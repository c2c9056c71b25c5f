"""The :class:`Limiter` facade: admission, feedback, in-flight leases, runtime limits.

A limiter is the algorithm (``bucket.py`` / ``token_bucket.lua``) over a backend
(:class:`~workers.ratelimit.redis_backend.RedisBackend` for the fleet,
:class:`~workers.ratelimit.memory.MemoryBackend` in tests). It never sleeps: a
call that may not go now gets a :class:`Decision` saying how long to wait, and
the caller decides what to do with the time (a Celery task re-publishes itself,
see ``docs/ratelimit.md``). It has no Celery import.

Callers identify a token by :func:`token_id_for` of the API token, never by the
token itself.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from workers.constants import (
    DEFAULT_POLL_BURST,
    LEASE_TTL_S,
    MAX_REQUEUE_COUNTDOWN_S,
    REQUEUE_JITTER_FRACTION,
    TOKEN_ID_HEX_CHARS,
)
from workers.ratelimit.backend import Backend, BucketCall, BucketOp, BucketReply, EndpointClass
from workers.ratelimit.bucket import Limits, Tuning
from workers.ratelimit.status import LimitStatus, limit_status
from workers.settings import Settings

RESET_FIELDS = (
    "ceiling",
    "burst",
    "rate",
    "w_max",
    "pause_until",
    "strikes",
    "tokens",
    "ts",
    "acc",
    "acc_ts",
    "inc_ts",
    "queue_until",
)
"""Everything ``reset`` forgets; ``epoch`` stays so late replies remain recognisably stale."""

POLL_PATHS = frozenset({"/producer/tasks"})
"""Paths that spend the poll budget; every other Producer path is a submission."""


def token_id_for(api_token: str) -> str:
    """The id a token is known by in Redis keys, logs and the CLI: a sha256 prefix."""
    return hashlib.sha256(api_token.encode()).hexdigest()[:TOKEN_ID_HEX_CHARS]


def endpoint_class_for(path: str) -> EndpointClass:
    """Which budget a request path spends: ``/producer/tasks`` polls, the rest submit."""
    return EndpointClass.POLL if path.rstrip("/") in POLL_PATHS else EndpointClass.SUBMIT


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to an admission request: granted, or wait ``wait_ms`` and ask again."""

    granted: bool
    wait_ms: int = 0
    epoch: int = 0
    """Rate epoch the call was admitted in; hand it back to ``report_throttled``."""
    reason: str = ""
    """Why not granted: ``"rate"`` (no token yet) or ``"in_flight"`` (cap reached)."""

    @property
    def wait_s(self) -> float:
        """The wait in seconds."""
        return self.wait_ms / 1000.0

    def countdown_s(
        self,
        cap_s: float = MAX_REQUEUE_COUNTDOWN_S,
        jitter: float | None = None,
        rng: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to re-queue a waiting task for: the wait, spread by ``jitter``, capped.

        A wait for a token is the waiter's own slot in the bucket's queue: it is
        already apart from the others', so it gets no spread by default (coming back
        late would only let tokens pile up to the burst and be lost). Other waits
        (the in-flight cap) are spread by :data:`REQUEUE_JITTER_FRACTION`, so tasks
        told the same wait do not all come back at once. The cap keeps ETAs short.
        """
        if jitter is None:
            jitter = 0.0 if self.reason == "rate" else REQUEUE_JITTER_FRACTION
        return min(cap_s, self.wait_s * (1.0 + jitter * rng()))


@dataclass(frozen=True, slots=True)
class LimiterDefaults:
    """Limits used until ``limits set`` overrides them at runtime (from :class:`Settings`)."""

    submit: Limits = field(default_factory=lambda: Limits(ceiling=1.0, burst=5.0))
    poll: Limits = field(default_factory=lambda: Limits(ceiling=1.0, burst=DEFAULT_POLL_BURST))
    max_in_flight: int = 5
    lease_ttl_s: float = LEASE_TTL_S

    @classmethod
    def from_settings(cls, settings: Settings) -> LimiterDefaults:
        """Read the submit/poll rates, burst and in-flight cap from settings."""
        return cls(
            submit=Limits(ceiling=settings.submit_rate_per_s, burst=settings.submit_burst),
            poll=Limits(ceiling=settings.poll_rate_per_s, burst=DEFAULT_POLL_BURST),
            max_in_flight=settings.max_in_flight,
        )

    def limits(self, endpoint: EndpointClass) -> Limits:
        """Default limits of one endpoint class."""
        return self.submit if endpoint is EndpointClass.SUBMIT else self.poll


def tuning_for(settings: Settings) -> Tuning:
    """The default tuning, with the queue horizon at the workers' real re-queue cap.

    A step's countdown is capped at :data:`MAX_REQUEUE_COUNTDOWN_S` and at half the
    visibility timeout (``workers/tasks/base.py``): a slot beyond that is never used.
    """
    horizon = min(MAX_REQUEUE_COUNTDOWN_S, settings.visibility_timeout_s / 2)
    return Tuning(queue_horizon_s=horizon)


class Limiter:
    """One adaptive limit per (token, endpoint class) plus an in-flight cap per token."""

    def __init__(
        self,
        backend: Backend,
        *,
        defaults: LimiterDefaults | None = None,
        tuning: Tuning | None = None,
    ) -> None:
        self.backend = backend
        self.defaults = defaults or LimiterDefaults()
        self.tuning = tuning or Tuning()

    def _call(
        self, token_id: str, endpoint: EndpointClass, op: BucketOp, cost: float, **extra: float
    ) -> BucketReply:
        call = BucketCall(op, cost, self.defaults.limits(endpoint), self.tuning, **extra)
        return self.backend.bucket(token_id, endpoint, call)

    def acquire(
        self, token_id: str, endpoint: EndpointClass = EndpointClass.SUBMIT, cost: float = 1.0
    ) -> Decision:
        """Take ``cost`` tokens now, or learn how long until they exist. Never blocks."""
        if cost <= 0:
            raise ValueError("cost must be positive")
        reply = self._call(token_id, endpoint, "take", cost)
        return Decision(bool(reply.code), reply.wait_ms, reply.epoch, "" if reply.code else "rate")

    def report_success(
        self, token_id: str, endpoint: EndpointClass = EndpointClass.SUBMIT, cost: float = 1.0
    ) -> float:
        """Tell the limiter a call went through; returns the learned rate (tokens/s)."""
        return self._call(token_id, endpoint, "success", cost).rate

    def report_throttled(
        self,
        token_id: str,
        endpoint: EndpointClass = EndpointClass.SUBMIT,
        *,
        retry_after_s: float | None = None,
        epoch: int | None = None,
    ) -> float:
        """Tell the limiter the provider said 429 (or 504); returns the pause in seconds.

        Pass the ``Retry-After`` the provider sent, if any, and the
        :attr:`Decision.epoch` the call was admitted in, so that the replies of
        calls sent before the last decrease do not cut the rate again.
        """
        extra = {
            "retry_after_s": -1.0 if retry_after_s is None else max(0.0, retry_after_s),
            "epoch": -1.0 if epoch is None else float(epoch),
        }
        return self._call(token_id, endpoint, "throttle", 1.0, **extra).wait_ms / 1000.0

    def lease(self, token_id: str, lease_id: str, ttl_s: float | None = None) -> Decision:
        """Take an in-flight slot for ``lease_id`` (idempotent: a held id is renewed)."""
        ttl = ttl_s or self.defaults.lease_ttl_s
        reply = self.backend.lease(token_id, "acquire", lease_id, ttl, self.defaults.max_in_flight)
        return Decision(reply.granted, reply.wait_ms, 0, "" if reply.granted else "in_flight")

    def renew(self, token_id: str, lease_id: str, ttl_s: float | None = None) -> bool:
        """Extend a lease (e.g. from the poller while the generation runs); False if gone."""
        ttl = ttl_s or self.defaults.lease_ttl_s
        return self.backend.lease(token_id, "renew", lease_id, ttl, self.defaults.max_in_flight)[0]

    def release(self, token_id: str, lease_id: str) -> bool:
        """Give an in-flight slot back; False if it was not held (released or expired)."""
        return self.backend.release(token_id, lease_id)

    def show(self, token_id: str) -> LimitStatus:
        """Current limits, learned rates, tokens, pause and in-flight count of a token."""
        defaults = {ep: self.defaults.limits(ep) for ep in EndpointClass}
        snap = self.backend.snapshot(token_id)
        return limit_status(token_id, snap, defaults, self.defaults.max_in_flight, self.tuning)

    def set_limits(
        self,
        token_id: str,
        endpoint: EndpointClass = EndpointClass.SUBMIT,
        *,
        ceiling: float | None = None,
        burst: float | None = None,
        rate: float | None = None,
    ) -> None:
        """Change limits at runtime, for every worker at once.

        A new ``ceiling`` also resets the learned rate to it (the operator said
        so) unless ``rate`` is given too; ``rate`` alone sets the learned rate,
        which then adapts as usual.
        """
        values = {"ceiling": ceiling, "burst": burst, "rate": rate}
        if any(v is not None and v <= 0 for v in values.values()):
            raise ValueError("limits must be positive")
        remove = ["rate", "w_max"] if ceiling is not None and rate is None else []
        changes = {k: float(v) for k, v in values.items() if v is not None}
        self.backend.update(token_id, endpoint, changes, remove)

    def set_max_in_flight(self, token_id: str, value: int) -> None:
        """Change the in-flight cap at runtime (leases already held are kept)."""
        if value < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.backend.update(token_id, EndpointClass.SUBMIT, {"max_in_flight": float(value)})

    def reset(self, token_id: str) -> None:
        """Drop runtime overrides, the learned rate and any pause: a full bucket at the
        settings' limits. Leases stay (they are generations really in flight)."""
        for endpoint in EndpointClass:
            extra = ["max_in_flight"] if endpoint is EndpointClass.SUBMIT else []
            self.backend.update(token_id, endpoint, {}, [*RESET_FIELDS, *extra])
