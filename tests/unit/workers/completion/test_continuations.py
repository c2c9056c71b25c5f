"""Continuations: save, schedule, claim exactly once, callback ids."""

from __future__ import annotations

import threading
import time

import redis

from workers.completion.continuations import Continuation, ContinuationStore


def make_cont(
    api_task_id: str = "api-1", *, deadline_in_s: float = 600, cb: str | None = None
) -> Continuation:
    now = time.time()
    return Continuation(
        celery_task_id="celery-" + api_task_id,
        api_task_id=api_task_id,
        token_id="tok",
        step_key="b/1/generate",
        action="generate",
        submitted_at=now,
        deadline_at=now + deadline_in_s,
        callback_id=cb,
        delivery={"chain": [{"task": "x"}]},
    )


def test_save_then_claim_once(redis_client: redis.Redis) -> None:
    store = ContinuationStore(redis_client)
    store.save(make_cont(), first_poll_at=time.time())
    assert store.in_flight("tok") == 1
    claimed = store.claim("api-1", "tok")
    assert claimed is not None and claimed.delivery == {"chain": [{"task": "x"}]}
    assert store.claim("api-1", "tok") is None
    assert store.in_flight("tok") == 0


def test_concurrent_claims_have_one_winner(redis_client: redis.Redis) -> None:
    store = ContinuationStore(redis_client)
    store.save(make_cont(), first_poll_at=time.time())
    winners: list[Continuation] = []
    lock = threading.Lock()

    def claim() -> None:
        got = ContinuationStore(redis.Redis(connection_pool=redis_client.connection_pool)).claim(
            "api-1", "tok"
        )
        if got is not None:
            with lock:
                winners.append(got)

    threads = [threading.Thread(target=claim) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1


def test_due_orders_and_reschedule_only_touches_in_flight(redis_client: redis.Redis) -> None:
    store = ContinuationStore(redis_client)
    now = time.time()
    for i, offset in enumerate([5, -2, -1]):
        store.save(make_cont(f"api-{i}"), first_poll_at=now + offset)
    assert store.due("tok", now=now, limit=10) == ["api-1", "api-2"]
    assert store.due("tok", now=now, limit=1) == ["api-1"]
    store.claim("api-2", "tok")
    store.reschedule("tok", {"api-1": now + 100, "api-2": now - 100})
    assert store.due("tok", now=now, limit=10) == []  # api-2 is not re-added
    assert store.token_ids() == ["tok"]


def test_callback_id_maps_to_api_task(redis_client: redis.Redis) -> None:
    store = ContinuationStore(redis_client)
    store.save(make_cont(cb="cb-123"), first_poll_at=time.time())
    assert store.api_task_for_callback("cb-123") == "api-1"
    assert store.api_task_for_callback("cb-unknown") is None
    assert [c.api_task_id if c else None for c in store.load_many(["api-1", "nope"])] == [
        "api-1",
        None,
    ]
