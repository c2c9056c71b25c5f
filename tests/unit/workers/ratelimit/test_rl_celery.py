"""``requeue``: a task without a token re-publishes itself instead of sleeping in its slot.

A real Celery worker (threads pool) on a real Redis, per DESIGN.md: never eager.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery, chain, group
from celery.contrib.testing.worker import start_worker

from workers.ratelimit import Limiter, LimiterDefaults, Limits, RedisBackend
from workers.ratelimit.celery_requeue import requeue

RUNS: Counter[str] = Counter()
RETRIES: list[int] = []


@pytest.fixture(scope="module")
def app(redis_server_url: str) -> Iterator[Celery]:
    """One app and one worker for the module (Celery task names are registered once)."""
    redis_url = redis_server_url
    redis.Redis.from_url(redis_url).flushdb()
    app = Celery("rl-test", broker=redis_url, backend=redis_url, set_as_current=False)
    app.conf.update(task_default_queue="rl-test", broker_connection_retry_on_startup=False)
    limiter = Limiter(
        RedisBackend(redis.Redis.from_url(redis_url)),
        defaults=LimiterDefaults(submit=Limits(ceiling=10.0, burst=1.0)),
    )

    @app.task(bind=True, name="rl_test.double", max_retries=0)
    def double(self: Any, x: int, tid: str) -> int:
        RUNS[self.request.id] += 1
        decision = limiter.acquire(tid)
        if not decision.granted:
            requeue(self, decision)
        RETRIES.append(self.request.retries)
        return x * 2

    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False):
        yield app


@pytest.fixture(autouse=True)
def _fresh_counts() -> None:
    RUNS.clear()
    RETRIES.clear()


def test_waiting_tasks_are_requeued_and_all_complete(app: Celery) -> None:
    double = app.tasks["rl_test.double"]
    start = time.monotonic()
    results = group(double.s(i, "t1") for i in range(6)).apply_async().get(timeout=30)
    elapsed = time.monotonic() - start
    assert results == [0, 2, 4, 6, 8, 10]
    assert elapsed >= 0.45  # 1 + 5 tokens at 10/s
    assert sum(RUNS.values()) > 6  # some runs found no token and re-queued
    assert len(RUNS) == 6  # ... under their own task ids
    assert RETRIES == [0] * 6  # waiting burned no retries (max_retries=0 would have failed)


def test_a_chain_survives_requeues(app: Celery) -> None:
    double = app.tasks["rl_test.double"]
    steps = chain(double.s(1, "t2"), double.s("t2"), double.s("t2"))
    assert steps.apply_async().get(timeout=30) == 8
    assert sum(RUNS.values()) >= 3
