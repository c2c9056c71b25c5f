"""A fleet of worker processes sharing one limiter, hammering the emulator.

Each process loops acquire -> POST -> report, exactly as a submitting task
would; a "wait N ms" answer is honoured with ``Decision.countdown_s()`` (the
same spread a re-queued Celery task gets). The parent samples the learned rate
while the fleet runs and may reconfigure the emulator on a schedule.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier
from typing import Any

import httpx
import redis

from workers.ratelimit import (
    Limiter,
    LimiterDefaults,
    Limits,
    RedisBackend,
    Tuning,
)

PATH = "/producer/lyrics"
"""A cheap submission: answered at once, spends the submit budget."""


@dataclass(frozen=True)
class FleetSpec:
    """What every process of the fleet needs (picklable for ``spawn``)."""

    redis_url: str
    emulator_url: str
    api_token: str
    token_id: str
    limits: Limits
    tuning: Tuning
    duration_s: float


@dataclass
class FleetResult:
    """Totals of a fleet run; ``start`` is the wall-clock second the fleet began."""

    start: float = 0.0
    attempts: int = 0
    ok: int = 0
    throttled: int = 0
    other: int = 0
    acquire_s: list[float] = field(default_factory=list)
    samples: list[tuple[float, float]] = field(default_factory=list)
    """(wall time, learned rate) sampled by the parent."""


def _limiter(spec: FleetSpec) -> Limiter:
    client = redis.Redis.from_url(spec.redis_url)
    defaults = LimiterDefaults(submit=spec.limits)
    return Limiter(RedisBackend(client), defaults=defaults, tuning=spec.tuning)


def _retry_after(reply: httpx.Response) -> float | None:
    value = reply.headers.get("retry-after")
    return float(value) if value else None


def hammer(spec: FleetSpec, barrier: Barrier, out: Any) -> None:
    """One worker process: acquire, POST, report, until the run ends."""
    limiter = _limiter(spec)
    headers = {"authorization": f"Bearer {spec.api_token}"}
    http = httpx.Client(base_url=spec.emulator_url, headers=headers, trust_env=False, timeout=10)
    stats = FleetResult()
    http.get("/_emulator/counters")  # warm the connection (admin route: not in the request log)
    barrier.wait()
    end = time.time() + spec.duration_s
    while time.time() < end:
        t0 = time.perf_counter()
        decision = limiter.acquire(spec.token_id)
        stats.acquire_s.append(time.perf_counter() - t0)
        if not decision.granted:
            time.sleep(min(decision.countdown_s(), max(0.0, end - time.time())))
            continue
        reply = http.post(PATH, json={"prompt": "bench"})
        stats.attempts += 1
        if reply.status_code == 429:
            stats.throttled += 1
            limiter.report_throttled(
                spec.token_id, retry_after_s=_retry_after(reply), epoch=decision.epoch
            )
        elif reply.status_code < 400:
            stats.ok += 1
            limiter.report_success(spec.token_id)
        else:
            stats.other += 1
    out.put(stats)


def run_fleet(
    spec: FleetSpec,
    processes: int,
    on_tick: Callable[[float], None] | None = None,
    tick_s: float = 0.25,
) -> FleetResult:
    """Run ``processes`` hammers for ``spec.duration_s``; ``on_tick(elapsed)`` runs here."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(processes + 1)
    out = ctx.Queue()
    workers = [ctx.Process(target=hammer, args=(spec, barrier, out)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    barrier.wait(timeout=120)
    total = FleetResult(start=time.time())
    limiter = _limiter(spec)
    while (elapsed := time.time() - total.start) < spec.duration_s:
        total.samples.append((time.time(), limiter.show(spec.token_id).submit.rate))
        if on_tick is not None:
            on_tick(elapsed)
        time.sleep(tick_s)
    for _ in workers:
        _merge(total, out.get(timeout=60))
    for worker in workers:
        worker.join(timeout=30)
    return total


def _merge(total: FleetResult, part: FleetResult) -> None:
    total.attempts += part.attempts
    total.ok += part.ok
    total.throttled += part.throttled
    total.other += part.other
    total.acquire_s.extend(part.acquire_s)
