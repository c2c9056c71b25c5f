"""Broker churn under 429 pressure: a step waiting for capacity costs few messages.

40 generations are published at once to a worker whose limiter believes the provider
takes 5 submissions/s while the emulator accepts 4/s: the limiter learns the rate from
429s, and the waiting steps re-queue themselves (``workers/tasks/base.py``). Every
publish is counted (``before_task_publish``); a wait must cost about one re-publish,
not one per token that another waiter took first.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from celery import signals

from tests.integration.fleet import Fleet, fast_emulator_config, fleet
from workers.ledger import State
from workers.tasks.audios import generate

STEPS = 40
PROVIDER_RATE_PER_S = 4.0
MAX_REPUBLISHES_PER_SUBMISSION = 2.5
BATCH = "churn"
DONE_BUDGET_S = 90.0


class PublishCounter:
    """Counts the messages published for ``producer.generate``."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, headers: dict[str, Any] | None = None, **_: Any) -> None:
        if headers and headers.get("task") == "producer.generate":
            with self._lock:
                self.count += 1


def wait_all_done(f: Fleet) -> None:
    """Wait until the ledger has every step done."""
    deadline = time.monotonic() + DONE_BUDGET_S
    while time.monotonic() < deadline:
        entries = f.services.ledger.scan(f"{BATCH}/")
        if sum(e.state is State.DONE for e in entries) == STEPS:
            return
        time.sleep(0.2)
    raise AssertionError("not every step was done in time")


@pytest.mark.timeout(120)
def test_waiting_steps_cost_few_broker_messages(redis_url: str, tmp_path: Path) -> None:
    counter = PublishCounter()
    signals.before_task_publish.connect(counter, weak=False, dispatch_uid="churn-counter")
    emulator = fast_emulator_config(submit_rate_per_s=PROVIDER_RATE_PER_S, submit_burst=4)
    try:
        with fleet(
            redis_url,
            tmp_path,
            emulator=emulator,
            concurrency=8,
            submit_rate_per_s=5.0,
            submit_burst=5.0,
            max_transient_retries=10,
        ) as f:
            for i in range(STEPS):
                # Only the id is kept: the ledger says when every step is done.
                generate.apply_async(
                    kwargs={
                        "params": {"prompt": f"churn {i}", "seed": str(i)},
                        "context": {"batch": BATCH, "row": i, "step": "generate"},
                    },
                    # No result subscription: nothing left to unsubscribe at exit.
                    ignore_result=True,
                )
            wait_all_done(f)
            counters = f.counters
    finally:
        signals.before_task_publish.disconnect(dispatch_uid="churn-counter")
    submissions = STEPS
    republished = counter.count - STEPS
    per_submission = republished / submissions
    print(f"re-publishes per submission: {per_submission:.2f} ({republished}/{submissions})")
    print(f"provider 429s: {counters['rejected_429']['submit']}")
    assert counters["submissions_total"] == STEPS
    assert counters["submissions_duplicated"] == 0
    assert per_submission <= MAX_REPUBLISHES_PER_SUBMISSION
