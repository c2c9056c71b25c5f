"""Eight processes share one limiter and hammer the emulator, which enforces the same limit.

The fleet must never trip the emulator's own bucket (zero 429s) nor put more
than limit + burst requests into any one-second window, while still using
nearly all of the limit. Our burst is one token under the emulator's: the
documented headroom that absorbs network jitter (docs/ratelimit.md).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from multiprocessing.synchronize import Barrier
from typing import Any

import httpx
import pytest
import redis

from producer_emulator import EmulatorConfig, EmulatorServer
from workers.ratelimit import Limiter, LimiterDefaults, Limits, RedisBackend, token_id_for

TOKEN = "multiprocess-token"
RATE, BURST = 20.0, 10
PROCESSES, DURATION_S = 8, 6.0


def hammer(redis_url: str, emulator_url: str, barrier: Barrier, out: Any) -> None:
    """One worker: acquire -> POST -> report until the run ends; puts its status counts."""
    limits = Limits(ceiling=RATE, burst=BURST - 1)
    backend = RedisBackend(redis.Redis.from_url(redis_url))
    limiter = Limiter(backend, defaults=LimiterDefaults(limits))
    headers = {"authorization": f"Bearer {TOKEN}"}
    http = httpx.Client(base_url=emulator_url, headers=headers, trust_env=False, timeout=10)
    tid, statuses = token_id_for(TOKEN), []
    barrier.wait()
    end = time.time() + DURATION_S
    while time.time() < end:
        decision = limiter.acquire(tid)
        if not decision.granted:
            time.sleep(decision.countdown_s())
            continue
        reply = http.post("/producer/lyrics", json={"prompt": "multiprocess"})
        statuses.append(reply.status_code)
        if reply.status_code == 429:
            limiter.report_throttled(tid, epoch=decision.epoch)
        else:
            limiter.report_success(tid)
    out.put(statuses)


def max_in_window(times: list[float], width_s: float = 1.0) -> int:
    """Most events in any window [t, t + width) starting at an event."""
    times, best, lo = sorted(times), 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= width_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


@pytest.mark.slow
def test_eight_processes_share_one_limit_without_a_single_429(redis_url: str) -> None:
    config = EmulatorConfig(
        tokens=[TOKEN], submit_rate_per_s=RATE, submit_burst=BURST, max_concurrency=None
    )
    ctx = mp.get_context("spawn")
    with EmulatorServer(config) as emu:
        barrier, out = ctx.Barrier(PROCESSES + 1), ctx.Queue()
        procs = [
            ctx.Process(target=hammer, args=(redis_url, emu.url, barrier, out))
            for _ in range(PROCESSES)
        ]
        for proc in procs:
            proc.start()
        barrier.wait(timeout=120)
        start = time.time()
        statuses = [s for _ in procs for s in out.get(timeout=120)]
        for proc in procs:
            proc.join(timeout=30)
        counters = emu.counters()
        log = emu.requests(since=start - 1)

    assert counters["rejected_429"]["submit"] == 0
    assert set(statuses) == {200}
    arrivals = [r["t"] for r in log if r["path"] == "/producer/lyrics"]
    assert max_in_window(arrivals) <= RATE + BURST
    expected = (BURST - 1) + RATE * DURATION_S
    assert len(arrivals) == len(statuses)
    assert 0.9 * expected <= len(statuses) <= expected + 1
