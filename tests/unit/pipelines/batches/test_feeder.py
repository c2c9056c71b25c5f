"""The feeder over a real Redis, with publishing recorded instead of sent.

Admission (window, round-robin, one admission per row under concurrency), spend
caps (pause, retry), row ends (once, failure then success, cancel, resume, retry).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
import redis
from celery import Celery
from celery.canvas import Signature

from pipelines.app import app
from pipelines.batches.admission import Admission
from pipelines.batches.cancel import cancel_batch
from pipelines.batches.failures import retry_failed
from pipelines.batches.feeder import Feeder
from pipelines.batches.ledger_reads import row_step_keys
from pipelines.batches.settle import charges
from pipelines.batches.state import BatchInfo, BatchState
from pipelines.batches.submit import submit_batch
from pipelines.specs.loader import get_pipeline
from pipelines.spend.guard import Paid, SpendGuard
from pipelines.spend.prices import PriceTable
from workers.ledger import Ledger, step_key
from workers.ratelimit import Limiter, LimiterDefaults, MemoryBackend

HEADER = "prompt,title,model,instrumental,seed,weirdness,extend_prompt\n"
GES = get_pipeline("generate-extend-stems")
TOKEN = "tok"
PRICES = PriceTable.load()  # the built-in table (no prices file in tests)


class RecordingFeeder(Feeder):
    """Records admissions instead of publishing canvases."""

    def __init__(self, client: redis.Redis, **kwargs: object) -> None:
        limiter = Limiter(MemoryBackend(), defaults=LimiterDefaults(max_in_flight=4))
        kwargs.setdefault("prices", PRICES)
        super().__init__(client, app, limiter=limiter, token_id=TOKEN, **kwargs)  # type: ignore[arg-type]
        self.started: list[tuple[str, int]] = []

    def _canvas(self, adm: Admission, info: BatchInfo) -> Signature:
        started = self.started

        class Recorded(Signature):  # type: ignore[misc]
            def apply_async(self, *args: object, **kwargs: object) -> None:
                started.append((adm.batch_id, adm.row))

        return Recorded("noop")


@pytest.fixture
def make_batch(redis_client: redis.Redis, tmp_path: Path) -> Callable[..., str]:
    def make(batch_id: str, rows: int, **kwargs: object) -> str:
        path = tmp_path / f"{batch_id}.csv"
        path.write_text(
            HEADER + "".join(f"song {i},T,FUZZ-2.0,true,{i},0.3,x\n" for i in range(1, rows + 1)),
            encoding="utf-8",
        )
        report = submit_batch(
            redis_client, prices=PRICES, source=str(path), pipeline=GES, batch_id=batch_id, **kwargs
        )  # type: ignore[arg-type]
        assert report.accepted == rows
        return batch_id

    return make


def test_the_window_follows_the_in_flight_cap_and_its_override(
    redis_client: redis.Redis, make_batch: Callable[..., str]
) -> None:
    make_batch("a", 10)
    feeder = RecordingFeeder(redis_client)
    assert feeder.feed_once() == 4 and feeder.feed_once() == 0
    feeder.limiter.set_max_in_flight(TOKEN, 6)
    assert feeder.window() == 6 and feeder.feed_once() == 2
    feeder.state.set_window(7)
    assert feeder.feed_once() == 1
    assert BatchState(redis_client).record("a")["running"] == "7"  # type: ignore[index]


def test_two_batches_take_turns(redis_client: redis.Redis, make_batch: Callable[..., str]) -> None:
    make_batch("a", 6)
    make_batch("b", 6)
    feeder = RecordingFeeder(redis_client, window=2)
    feeder.feed_once()
    while any(b == "a" for b, _ in feeder.started) and len(feeder.started) < 12:
        batch, row = feeder.started[len(feeder.started) - 2]  # the oldest still running
        feeder.row_ended(batch, row)  # feeds the next row itself
        if len(feeder.started) == 12:
            break
    order = [b for b, _ in feeder.started]
    assert order == ["a", "b"] * 6


def test_concurrent_feeders_admit_each_row_once(
    redis_server_url: str, redis_client: redis.Redis, make_batch: Callable[..., str]
) -> None:
    make_batch("a", 300)
    make_batch("b", 300)
    feeders = [
        RecordingFeeder(redis.Redis.from_url(redis_server_url), window=1000) for _ in range(6)
    ]
    threads = [threading.Thread(target=f.feed_once) for f in feeders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    started = [item for f in feeders for item in f.started]
    assert len(started) == len(set(started)) == 600
    assert BatchState(redis_client).states("a") == b"x" + b"r" * 300


def test_a_spend_cap_pauses_the_batch_and_never_lets_spend_pass_it(
    redis_client: redis.Redis, make_batch: Callable[..., str]
) -> None:
    row_cost = PriceTable.load().row_cost(GES)
    make_batch("a", 5, max_spend=2.5 * row_cost)
    feeder = RecordingFeeder(redis_client, window=10, pause_retry_s=0.2)
    assert feeder.feed_once() == 2
    state = BatchState(redis_client)
    record = state.record("a") or {}
    assert (record["status"], record["paused_reason"]) == ("paused", "batch_cap")
    spend = SpendGuard(redis_client).status("a")
    assert spend.reserved == pytest.approx(2 * row_cost) and spend.refused == "batch_cap"
    assert feeder.feed_once() == 0  # not before the retry time
    feeder.row_ended("a", 1)  # nothing paid (no ledger entries): the hold is released
    time.sleep(0.25)
    assert feeder.feed_once() == 1  # one hold came back: one more row, then paused again
    assert (state.record("a") or {})["status"] == "paused"
    assert SpendGuard(redis_client).status("a").reserved <= 2.5 * row_cost


def test_a_row_ends_once_and_a_success_overrides_a_failure(
    redis_client: redis.Redis, make_batch: Callable[..., str]
) -> None:
    make_batch("a", 2)
    feeder = RecordingFeeder(redis_client, window=10)
    feeder.feed_once()
    state = BatchState(redis_client)
    failure = {"step": "extend", "code": "api_error", "message": "Generation failed."}
    assert state.finish("a", 1, failure=failure)[0] is True
    assert state.finish("a", 1, failure=failure)[0] is False
    assert state.errors("a") == {1: failure}
    assert state.finish("a", 1)[0] is True and state.errors("a") == {}
    assert state.finish("a", 1)[0] is False
    assert state.finish("a", 2)[0] is True
    record = state.record("a") or {}
    assert (record["status"], record["done"], record["failed"]) == ("finished", "2", "0")


class FakeControl:
    def __init__(self) -> None:
        self.revoked: list[str] = []

    def revoke(self, ids: list[str]) -> None:
        self.revoked.extend(ids)


class FakeApp:
    """Only what cancel_batch uses: ``control.revoke`` (no broker in unit tests)."""

    def __init__(self) -> None:
        self.control = FakeControl()


def test_cancel_lets_rows_in_flight_finish_abandon_does_not(
    redis_client: redis.Redis, make_batch: Callable[..., str]
) -> None:
    fake = FakeApp()
    control, fake_app = fake.control, cast(Celery, fake)
    make_batch("a", 5)
    make_batch("b", 5)
    feeder = RecordingFeeder(redis_client, window=4)
    feeder.feed_once()
    assert cancel_batch(redis_client, fake_app, "a", abandon=False, prices=PRICES) == "cancelling"
    feeder.row_ended("a", 1)
    assert [b for b, _ in feeder.started].count("a") == 2  # no new row of "a"
    feeder.row_ended("a", 2)
    state = BatchState(redis_client)
    assert (state.record("a") or {})["status"] == "cancelled"
    assert cancel_batch(redis_client, fake_app, "b", abandon=True, prices=PRICES) == "cancelled"
    assert state.finish("b", 1)[0] is False  # late news of an abandoned row is ignored
    assert state.states("b") == b"xccccp" and state.in_window() == 0  # a's ends fed b
    # The steps after each row's current one are revoked, with its row_done; never the
    # current step (its collect would run under a revoked id).
    assert len(control.revoked) == 4 * 3 and "b:1:extend:1" in control.revoked
    assert "b:1:generate:1" not in control.revoked


def test_resume_runs_running_and_abandoned_rows_again(
    redis_client: redis.Redis, make_batch: Callable[..., str], tmp_path: Path
) -> None:
    make_batch("a", 4)
    feeder = RecordingFeeder(redis_client, window=3)
    feeder.feed_once()
    feeder.row_ended("a", 1)  # row 4 goes out
    cancel_batch(redis_client, FakeApp(), "a", abandon=True, prices=PRICES)  # type: ignore[arg-type]
    again = submit_batch(
        redis_client, prices=PRICES, source=str(tmp_path / "a.csv"), pipeline=GES, batch_id="a"
    )
    assert (again.resumed, again.status) == (True, "queued")
    state = BatchState(redis_client)
    assert state.states("a") == b"xdppp" and state.in_window() == 0
    feeder.started.clear()
    assert feeder.feed_once() == 3 and sorted(r for _, r in feeder.started) == [2, 3, 4]


def test_retry_failed_forgets_only_the_failed_steps(
    redis_client: redis.Redis, make_batch: Callable[..., str]
) -> None:
    make_batch("a", 2)
    feeder = RecordingFeeder(redis_client, window=10)
    feeder.feed_once()
    ledger = Ledger(redis_client)
    for step, done in (("generate", True), ("extend", False)):
        key = step_key("a", 1, step)
        ledger.reserve(key, fingerprint="f" + step, owner="t")
        if done:
            ledger.mark_done(key, result={"action": step})
        else:
            ledger.mark_failed(key, code="api_error", message="Generation failed.")
    assert feeder.row_ended("a", 1, {"step": "extend", "code": "api_error", "message": "x"})
    assert retry_failed(redis_client, "a") == 1
    assert ledger.get(step_key("a", 1, "generate")) is not None
    assert ledger.get(step_key("a", 1, "extend")) is None
    state = BatchState(redis_client)
    record = state.record("a") or {}
    assert (record["status"], record["failed"], record["pending"]) == ("running", "0", "1")
    feeder.started.clear()
    assert feeder.feed_once() == 1 and feeder.started == [("a", 1)]


def test_spend_charges_follow_the_ledger(redis_client: redis.Redis) -> None:
    prices = PriceTable.load()
    plan = [("generate", "generate"), ("extend", "extend"), ("stems", "stems")]
    ledger = Ledger(redis_client)
    for step in ("generate", "extend", "stems"):
        ledger.reserve(step_key("z", 1, step), fingerprint=step, owner="t")
    ledger.mark_done(step_key("z", 1, "generate"), result={})
    ledger.mark_failed(step_key("z", 1, "extend"), code="x", message="y")
    from pipelines.batches.ledger_reads import ledger_entries

    entries = ledger_entries(redis_client, row_step_keys("z", 1, plan))
    assert [(c.key, c.paid) for c in charges(1, plan, entries, prices)] == [
        ("row-1/step-generate", Paid.YES),
        ("row-1/step-extend", Paid.NO),
        ("row-1/step-stems", Paid.PENDING),  # reserved: the POST may be under way
    ]


def test_rows_that_stopped_moving_are_admitted_again(
    redis_client: redis.Redis, make_batch: Callable[..., str]
) -> None:
    from pipelines.batches.stale import requeue_stale

    make_batch("a", 2)
    feeder = RecordingFeeder(redis_client, window=10)
    feeder.feed_once()
    ledger = Ledger(redis_client)  # row 1's first step waits at the provider: not stale
    ledger.reserve(step_key("a", 1, "generate"), fingerprint="g", owner="t")
    ledger.mark_submitted(step_key("a", 1, "generate"), api_task_id="api-1")
    assert requeue_stale(feeder, 60.0) == 0  # admitted just now
    time.sleep(0.05)
    assert requeue_stale(feeder, 0.01) == 1
    state = BatchState(redis_client)
    assert state.states("a") == b"xrw" and state.in_window() == 1
    feeder.started.clear()
    assert feeder.feed_once() == 1 and feeder.started == [("a", 2)]


def test_a_row_without_a_canvas_fails_and_a_refused_publish_pauses(
    redis_client: redis.Redis, make_batch: Callable[..., str]
) -> None:
    make_batch("a", 2)

    class Broken(RecordingFeeder):
        def _canvas(self, adm: Admission, info: BatchInfo) -> Signature:
            if adm.row == 1:
                raise ValueError("no canvas for you")

            class Refused(Signature):  # type: ignore[misc]
                def apply_async(self, *args: object, **kwargs: object) -> None:
                    raise ConnectionError("broker down")

            return Refused("noop")

    feeder = Broken(redis_client, window=10)
    assert feeder.feed_once() == 0  # row 1: no canvas
    assert feeder.feed_once() == 0  # row 2: the broker refuses it
    state = BatchState(redis_client)
    assert state.errors("a") == {
        1: {"step": "-", "code": "canvas_error", "message": "ValueError: no canvas for you"}
    }
    record = state.record("a") or {}
    assert (record["status"], record["paused_reason"]) == ("paused", "publish_failed")
    assert state.states("a") == b"xfp" and state.in_window() == 0
    assert SpendGuard(redis_client).status("a").reserved == 0
