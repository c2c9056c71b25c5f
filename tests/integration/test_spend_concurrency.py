"""Several processes, each with threads, reserve and settle on two batches through one Redis.

Each process is a feeder: it reserves a row's estimate before "submitting" it, then
settles what "succeeded" (a random part of the estimate) or releases it. The caps are
far below the demand, so most of the run is spent refused at the caps. While it runs
the parent takes snapshots; every reply and every snapshot must keep
``spent + reserved <= cap`` per batch and for the fleet, and at the end the spend in
Redis equals what the processes settled, to the micro-unit.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import threading
from multiprocessing.synchronize import Barrier
from typing import Any

import redis

from pipelines.spend.guard import SpendDecision, SpendGuard
from pipelines.spend.prices import from_micro, to_micro

CAPS = {"batch-a": 3.0, "batch-b": 2.2}
GLOBAL_CAP = 4.0
AMOUNTS = (0.005, 0.01, 0.05, 0.08, 0.1, 0.23)
PROCESSES, THREADS, ROWS = 4, 2, 150


def fits(spent: float, reserved: float, cap: float | None) -> bool:
    """``spent + reserved <= cap`` in integer micro-units."""
    return cap is None or to_micro(spent) + to_micro(reserved) <= to_micro(cap)


def reply_fits(d: SpendDecision) -> bool:
    return fits(d.batch_spent, d.batch_reserved, d.batch_cap) and fits(
        d.global_spent, d.global_reserved, d.global_cap
    )


def feed(guard: SpendGuard, name: str, out: dict[str, Any]) -> None:
    """One feeder thread: rows alternate between the batches; records settles and breaches."""
    rng = random.Random(name)
    for i in range(ROWS):
        batch, key = ("batch-a", "batch-b")[i % 2], f"{name}-{i}"
        amount = rng.choice(AMOUNTS) * rng.randint(1, 4)
        d = guard.reserve(batch, key, amount, batch_cap=CAPS[batch], global_cap=GLOBAL_CAP)
        out["breaches"] += 0 if reply_fits(d) else 1
        out["refused"] += 0 if d.granted else 1
        if not d.granted:
            continue
        if rng.random() < 0.2:
            guard.release(batch, key)
            continue
        actual = rng.randint(0, to_micro(amount))
        guard.settle(batch, key, actual=from_micro(actual))
        out[batch] += actual


def process_main(redis_url: str, index: int, barrier: Barrier, queue: Any) -> None:
    """One process: THREADS feeder threads, then its totals on the queue."""
    client = redis.Redis.from_url(redis_url)
    outs = [{"breaches": 0, "refused": 0, **dict.fromkeys(CAPS, 0)} for _ in range(THREADS)]
    threads = [
        threading.Thread(target=feed, args=(SpendGuard(client), f"p{index}t{t}", out))
        for t, out in enumerate(outs)
    ]
    barrier.wait()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put({k: sum(o[k] for o in outs) for k in outs[0]})


def watch(guard: SpendGuard, stop: threading.Event, breaches: list[str]) -> int:
    """Snapshot the counters until ``stop``; returns how many snapshots were taken."""
    count = 0
    while not stop.is_set():
        count += 1
        for batch, cap in CAPS.items():
            s = guard.status(batch)
            if not fits(s.spent, s.reserved, cap):
                breaches.append(f"{batch}: {s}")
        g = guard.global_status()
        if not fits(g.spent, g.reserved, GLOBAL_CAP):
            breaches.append(f"global: {g}")
    return count


def test_processes_and_threads_never_exceed_a_cap(redis_url: str) -> None:
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(PROCESSES + 1), ctx.Queue()
    procs = [
        ctx.Process(target=process_main, args=(redis_url, i, barrier, queue))
        for i in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    guard = SpendGuard(redis.Redis.from_url(redis_url))
    stop, snapshots = threading.Event(), [0]
    breaches: list[str] = []
    watcher = threading.Thread(target=lambda: snapshots.append(watch(guard, stop, breaches)))
    barrier.wait(timeout=120)
    watcher.start()
    results = [queue.get(timeout=120) for _ in procs]
    stop.set()
    watcher.join(timeout=30)
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0

    assert breaches == [] and sum(r["breaches"] for r in results) == 0
    assert snapshots[-1] > 0
    assert sum(r["refused"] for r in results) > PROCESSES * THREADS * ROWS // 4  # caps bit
    for batch in CAPS:
        status = guard.status(batch)
        assert to_micro(status.spent) == sum(r[batch] for r in results)
        assert (status.reserved, status.overrun) == (0, 0)
    fleet = guard.global_status()
    assert to_micro(fleet.spent) == sum(r[b] for r in results for b in CAPS)
    assert fleet.reserved == 0
    assert to_micro(fleet.spent) <= to_micro(GLOBAL_CAP)
