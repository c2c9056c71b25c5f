"""The adaptive token bucket, as pure functions: the reference the Lua scripts mirror.

One bucket exists per (API token, endpoint class). Its state is a flat mapping
of numbers (the same fields the Redis hash holds, see ``token_bucket.lua``) and
every function here takes the state, the parameters and the time ``now`` (in
seconds) and returns what changed. :class:`~workers.ratelimit.memory.MemoryBackend`
runs these functions under a lock; the Redis backend runs the same steps in Lua,
where they are atomic and read the clock from Redis ``TIME``.

The algorithm, in four rules:

* **Bucket.** Tokens refill at the *learned* ``rate`` up to ``burst``; a call of
  weight ``cost`` is granted when ``cost`` tokens are there, else it is told how
  many milliseconds until its turn: the waiters form a virtual queue
  (``queue_until``, the slot last given out), each told to come back one token
  interval after the one before, so they do not return together and race for one
  token. Nothing is reserved for a caller that must wait, so a caller that never
  comes back wastes nothing (its token goes to whoever asks next).
* **Decrease.** A throttle (429 or 504) multiplies the learned rate by
  ``decrease`` (at most once per *epoch*: replies to calls admitted before the
  last decrease do not count twice), empties the bucket and pauses every
  admission for ``Retry-After`` or, without one, an exponential backoff.
* **Increase.** Each success raises the rate additively, ``ceiling /
  recovery_s`` per second of traffic, up to the configured ``ceiling``. Near
  ``w_max`` -- the rate the provider was seen to accept when it last said no --
  the climb slows ``probe_slowdown`` times, so the limit is probed gently and
  429s stay rare instead of recurring on every cycle (the idea of TCP CUBIC's
  plateau).
* **Evidence.** The accepted rate is estimated from successes by an
  exponentially decaying counter with time constant ``window_s``; a rate rise is
  credited only for time in which calls kept succeeding (at most ``2 / rate``
  per success), so an idle fleet does not "learn" a rate it never tried.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

from workers.constants import MAX_REQUEUE_COUNTDOWN_S

State = MutableMapping[str, float]
"""Bucket fields, all numbers; absent fields take their initial value (see :func:`field`)."""

View = Mapping[str, float]
"""Read-only bucket fields."""

NO_VALUE = -1.0
"""Sentinel for "not given" in numeric script arguments (retry-after, epoch)."""

CLOCK_RESOLUTION_S = 1e-6
"""Redis ``TIME`` resolution. Tokens due within one tick count as there, so a
caller that waits exactly the ``wait_ms`` it was told is not told "wait 1 ms"
again because of float rounding at epoch-sized times."""


@dataclass(frozen=True, slots=True)
class Tuning:
    """How fast the learned rate moves; the same for every bucket of a limiter.

    Durations are seconds of wall clock; scale them together with the rates
    (``Tuning.scaled``) to replay production behaviour faster in a benchmark.
    """

    decrease: float = 0.7
    recovery_s: float = 60.0
    probe_band: float = 0.05
    probe_slowdown: float = 20.0
    backoff_s: float = 1.0
    max_backoff_s: float = 16.0
    window_s: float = 10.0
    min_rate_fraction: float = 0.01
    queue_horizon_s: float = MAX_REQUEUE_COUNTDOWN_S
    """A waiter told to come back later than this (the re-queue cap) comes back early
    and asks again, so it is not given a slot: a slot it would not use would push
    every later waiter back."""

    def scaled(self, factor: float) -> Tuning:
        """The same tuning with every duration divided by ``factor`` (rates times ``factor``)."""
        return Tuning(
            decrease=self.decrease,
            recovery_s=self.recovery_s / factor,
            probe_band=self.probe_band,
            probe_slowdown=self.probe_slowdown,
            backoff_s=self.backoff_s / factor,
            max_backoff_s=self.max_backoff_s / factor,
            window_s=self.window_s / factor,
            min_rate_fraction=self.min_rate_fraction,
            queue_horizon_s=self.queue_horizon_s,
        )

    def as_args(self) -> list[float]:
        """The tuning as script arguments, in the order the Lua header lists them."""
        return [
            self.decrease,
            self.recovery_s,
            self.probe_band,
            self.probe_slowdown,
            self.backoff_s,
            self.max_backoff_s,
            self.window_s,
            self.min_rate_fraction,
            self.queue_horizon_s,
        ]


@dataclass(frozen=True, slots=True)
class Limits:
    """The configured limits of one bucket: ``ceiling`` (per second) and ``burst`` (tokens)."""

    ceiling: float
    burst: float


def field(state: View, name: str) -> float:
    """Read a state field; absent fields are 0 (``rate`` absent means "at the ceiling")."""
    return float(state.get(name, 0.0))


def limits_of(state: View, defaults: Limits) -> Limits:
    """Runtime overrides stored in the bucket win over the configured defaults."""
    ceiling = state.get("ceiling", defaults.ceiling)
    burst = state.get("burst", defaults.burst)
    return Limits(ceiling=float(ceiling), burst=float(burst))


def current_rate(state: View, limits: Limits) -> float:
    """The learned rate, never above the ceiling (which may have been lowered at runtime)."""
    rate = state.get("rate")
    return limits.ceiling if rate is None else min(float(rate), limits.ceiling)


def tokens_at(state: View, limits: Limits, now: float) -> float:
    """Tokens in the bucket at ``now``: none accrue before ``ts`` (the end of a pause)."""
    if "ts" not in state:
        return limits.burst
    elapsed = max(0.0, now - field(state, "ts"))
    return min(limits.burst, field(state, "tokens") + elapsed * current_rate(state, limits))


def take(
    state: State,
    defaults: Limits,
    cost: float,
    now: float,
    horizon_s: float = MAX_REQUEUE_COUNTDOWN_S,
) -> tuple[bool, int]:
    """Grant ``cost`` tokens or give the caller its slot: ``(granted, wait_ms)``.

    A cost above the burst is charged as a full bucket, so it can still pass. A slot
    further than ``horizon_s`` away is told but not kept (see :class:`Tuning`).
    """
    limits = limits_of(state, defaults)
    cost = min(cost, limits.burst)
    tokens = tokens_at(state, limits, now)
    start = max(now, field(state, "ts"))
    state["ts"] = start
    if tokens + current_rate(state, limits) * CLOCK_RESOLUTION_S >= cost:
        state["tokens"] = tokens - cost
        return True, 0
    state["tokens"] = tokens
    rate = current_rate(state, limits)
    # Each waiter gets its own slot, one token interval after the last one given out,
    # so waiters told to wait come back one by one and find their token there
    # instead of all returning at once to race for one (and all but one re-queue).
    due = start + (cost - tokens) / rate
    slot = max(due, field(state, "queue_until") + cost / rate)
    if slot - now <= horizon_s:
        state["queue_until"] = slot
    return False, max(1, math.ceil((slot - now) * 1000.0))


def accepted_rate(state: View, tuning: Tuning, now: float) -> float:
    """Recent successes per second (decaying count over ``window_s``)."""
    age = max(0.0, now - field(state, "acc_ts"))
    return field(state, "acc") * math.exp(-age / tuning.window_s) / tuning.window_s


def on_success(state: State, defaults: Limits, tuning: Tuning, now: float, cost: float) -> float:
    """Record a success of weight ``cost``; raise the rate additively. Returns the new rate."""
    limits = limits_of(state, defaults)
    state["acc"] = accepted_rate(state, tuning, now) * tuning.window_s + cost
    state["acc_ts"] = now
    state["strikes"] = 0.0
    rate = current_rate(state, limits)
    if rate < limits.ceiling:
        rise = _slope(state, limits, tuning, rate) * _credit(state, now, rate)
        rate = min(limits.ceiling, rate + rise)
        state["rate"] = rate
    state["inc_ts"] = max(now, field(state, "inc_ts"))
    return rate


def _slope(state: View, limits: Limits, tuning: Tuning, rate: float) -> float:
    slope = limits.ceiling / tuning.recovery_s
    w_max = field(state, "w_max")
    if w_max > 0 and abs(rate - w_max) <= tuning.probe_band * w_max:
        slope /= tuning.probe_slowdown
    return slope


def _credit(state: View, now: float, rate: float) -> float:
    # Seconds of traffic that justify a rise: since the last rise, but at most two
    # call intervals, so sparse (application-limited) traffic climbs slowly.
    return min(max(0.0, now - field(state, "inc_ts")), 2.0 / rate)


def on_throttle(
    state: State, defaults: Limits, tuning: Tuning, now: float, retry_after_s: float, epoch: float
) -> float:
    """Record a 429/504. ``retry_after_s``/``epoch`` are :data:`NO_VALUE` when unknown.

    Returns the pause end (epoch seconds). A throttle from an older epoch only
    extends the pause (when the provider named one); it does not cut the rate again.
    """
    limits = limits_of(state, defaults)
    current = field(state, "epoch")
    pause_until = field(state, "pause_until")
    stale = epoch != current if epoch >= 0 else now < pause_until
    if not stale:
        _decrease(state, limits, tuning, now)
        if retry_after_s < 0:
            backoff = tuning.backoff_s * 2.0 ** (field(state, "strikes") - 1.0)
            retry_after_s = min(tuning.max_backoff_s, backoff)
    if retry_after_s >= 0:
        pause_until = max(pause_until, now + retry_after_s)
        state["pause_until"] = pause_until
        state["tokens"] = 0.0
        state["ts"] = max(field(state, "ts"), pause_until)
        state["inc_ts"] = max(field(state, "inc_ts"), pause_until)
    return pause_until


def _decrease(state: State, limits: Limits, tuning: Tuning, now: float) -> None:
    rate = current_rate(state, limits)
    accepted = accepted_rate(state, tuning, now)
    # What the provider demonstrably took is the better guess of its limit.
    state["w_max"] = min(rate, accepted) if accepted > 0 else rate
    state["rate"] = max(limits.ceiling * tuning.min_rate_fraction, rate * tuning.decrease)
    state["epoch"] = field(state, "epoch") + 1.0
    state["strikes"] = field(state, "strikes") + 1.0
