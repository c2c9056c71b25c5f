"""The poller: one request per round, budget respected, finished/expired/running handled."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from workers.completion.continuations import Continuation, ContinuationStore
from workers.completion.poller import Poller


@dataclass
class FakeRecord:
    id: str
    outcome: str

    def model_dump(self, *, mode: str = "json") -> dict[str, Any]:
        return {"id": self.id, "outcome": self.outcome}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _save(
    store: ContinuationStore, api_id: str, clock: Clock, *, deadline_in_s: float = 100
) -> None:
    cont = Continuation(
        celery_task_id="c-" + api_id,
        api_task_id=api_id,
        token_id="tok",
        step_key=api_id,
        action="generate",
        submitted_at=clock.now,
        deadline_at=clock.now + deadline_in_s,
    )
    store.save(cont, first_poll_at=clock.now)


def _poller(
    store: ContinuationStore,
    clock: Clock,
    states: dict[str, str],
    calls: list[list[str]],
    resumed: list[tuple[str, str]],
    budget: list[float] | None = None,
) -> Poller:
    def fetch(ids: Sequence[str]) -> list[FakeRecord]:
        calls.append(list(ids))
        return [FakeRecord(i, states[i]) for i in ids if i in states]

    budget_values = budget if budget is not None else []

    return Poller(
        store=store,
        token_id="tok",
        fetch=fetch,
        take_poll_budget=lambda: budget_values.pop(0) if budget_values else 0.0,
        resume=lambda c, o: resumed.append((c.api_task_id, o.status)),
        batch_size=2,
        first_poll_after_s=5,
        max_interval_s=20,
        clock=clock,
    )


def test_one_batch_request_per_round_and_outcomes(redis_client: redis.Redis) -> None:
    store, clock = ContinuationStore(redis_client), Clock()
    for i in ("a", "b", "c"):
        _save(store, i, clock)
    clock.now += 1
    calls: list[list[str]] = []
    resumed: list[tuple[str, str]] = []
    states = {"a": "succeeded", "b": "pending", "c": "failed"}
    poller = _poller(store, clock, states, calls, resumed)
    report = poller.poll_once()
    assert calls == [["a", "b"]]  # batch_size 2, oldest first, one request
    assert report.finished == 1 and report.still_running == 1
    report = poller.poll_once()
    assert calls[-1] == ["c"]  # b was rescheduled into the future
    assert resumed == [("a", "succeeded"), ("c", "failed")]
    assert poller.poll_once().polled == 0  # nothing due until b's next poll
    clock.now += 6
    states["b"] = "succeeded"
    poller.poll_once()
    assert resumed[-1] == ("b", "succeeded")
    assert store.in_flight("tok") == 0


def test_no_request_without_poll_budget(redis_client: redis.Redis) -> None:
    store, clock = ContinuationStore(redis_client), Clock()
    _save(store, "a", clock)
    calls: list[list[str]] = []
    poller = _poller(store, clock, {"a": "succeeded"}, calls, [], budget=[0.7])
    report = poller.poll_once()
    assert calls == [] and report.waited_s == 0.7
    poller.poll_once()
    assert calls == [["a"]]


def test_deadline_expires_a_task_the_provider_never_finishes(redis_client: redis.Redis) -> None:
    store, clock = ContinuationStore(redis_client), Clock()
    _save(store, "lost", clock, deadline_in_s=30)
    resumed: list[tuple[str, str]] = []
    poller = _poller(store, clock, {}, [], resumed)  # provider answers {} (unknown)
    poller.poll_once()
    assert resumed == []
    clock.now += 31
    report = poller.poll_once()
    assert report.expired == 1 and resumed == [("lost", "expired")]


def test_claimed_by_callback_is_not_resumed_twice(redis_client: redis.Redis) -> None:
    store, clock = ContinuationStore(redis_client), Clock()
    _save(store, "a", clock)
    resumed: list[tuple[str, str]] = []
    poller = _poller(store, clock, {"a": "succeeded"}, [], resumed)
    assert store.claim("a", "tok") is not None  # the callback won
    poller.poll_once()
    assert resumed == []


def test_run_stops_on_event(redis_client: redis.Redis) -> None:
    import threading

    store = ContinuationStore(redis_client)
    poller = _poller(store, Clock(), {}, [], [])
    stop = threading.Event()
    t = threading.Thread(target=poller.run, args=(stop,), kwargs={"idle_sleep_s": 0.01})
    t.start()
    time.sleep(0.05)
    stop.set()
    t.join(timeout=2)
    assert not t.is_alive()
