"""Figures from the emulator's request log: rates, windows, 429 fractions, settling."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class Arrival:
    """One request the emulator saw: wall time and status."""

    t: float
    status: int


def arrivals(log: Sequence[dict[str, Any]], path: str) -> list[Arrival]:
    """The log entries of ``path``, oldest first."""
    return sorted(Arrival(r["t"], r["status"]) for r in log if r["path"] == path)


def between(items: Sequence[Arrival], t0: float, t1: float) -> list[Arrival]:
    """Arrivals with ``t0 <= t < t1``."""
    return [a for a in items if t0 <= a.t < t1]


def ok_rate(items: Sequence[Arrival], t0: float, t1: float) -> float:
    """Accepted requests per second over ``[t0, t1)``."""
    return sum(a.status == 200 for a in between(items, t0, t1)) / max(1e-9, t1 - t0)


def attempt_rate(items: Sequence[Arrival], t0: float, t1: float) -> float:
    """Requests per second over ``[t0, t1)``, whatever their answer."""
    return len(between(items, t0, t1)) / max(1e-9, t1 - t0)


def throttled_fraction(items: Sequence[Arrival], t0: float, t1: float) -> float:
    """Share of requests in ``[t0, t1)`` that got a 429."""
    window = between(items, t0, t1)
    return sum(a.status == 429 for a in window) / max(1, len(window))


def max_window(items: Sequence[Arrival], width_s: float = 1.0) -> int:
    """Most requests in any window ``[t, t + width)`` that starts at a request."""
    times = sorted(a.t for a in items)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= width_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def settle_time(items: Sequence[Arrival], t0: float, t1: float, target: float = 0.01) -> float:
    """Seconds after ``t0`` from which the 429 share over the rest of ``[t0, t1)`` <= ``target``."""
    step = 0.25
    offset = 0.0
    while t0 + offset < t1:
        if throttled_fraction(items, t0 + offset, t1) <= target:
            return offset
        offset += step
    return t1 - t0


def recovery_time(
    items: Sequence[Arrival], t0: float, t1: float, rate: float, share: float = 0.9
) -> float | None:
    """Seconds after ``t0`` until a 2-second window accepts ``share`` of ``rate``."""
    offset = 0.0
    while t0 + offset + 2.0 <= t1:
        if ok_rate(items, t0 + offset, t0 + offset + 2.0) >= share * rate:
            return offset
        offset += 0.25
    return None


def mean_sample(samples: Sequence[tuple[float, float]], t0: float, t1: float) -> float:
    """Mean of the sampled values taken in ``[t0, t1)``."""
    values = [v for t, v in samples if t0 <= t < t1]
    return statistics.fmean(values) if values else float("nan")


def percentile_ms(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of durations in seconds, in milliseconds."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))
    return ordered[index] * 1000


def series(
    items: Sequence[Arrival], samples: Sequence[tuple[float, float]], t0: float, t1: float
) -> list[dict[str, float]]:
    """Per-second bins of ``[t0, t1)``: attempts, accepted, 429s and the mean learned rate."""
    bins = []
    for second in range(int(t1 - t0)):
        lo, hi = t0 + second, t0 + second + 1
        window = between(items, lo, hi)
        bins.append(
            {
                "t": second,
                "attempts": len(window),
                "ok": sum(a.status == 200 for a in window),
                "throttled": sum(a.status == 429 for a in window),
                "learned_rate": round(mean_sample(samples, lo, hi), 3),
            }
        )
    return bins
