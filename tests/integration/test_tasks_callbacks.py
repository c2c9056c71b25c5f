"""Completion by callback: the receiver in uvicorn, a real worker, the emulator calling back.

The fleet binds the receiver first and gives its URL to the workers as
``public_base_url``; each submission then carries a signed callback URL. With the
poller off, only a callback can finish a step; forged, replayed and duplicated
callbacks must change nothing; a dropped callback leaves the poller to finish it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import signals

from producer_emulator import FaultConfig
from tests.integration.fleet import Fleet, check_artifacts, fast_emulator_config, fleet
from workers.completion.callbacks import CALLBACK_PATH, callback_url, sign
from workers.completion.resume import COLLECT_TASK_NAME
from workers.ledger import State
from workers.tasks.audios import generate

RESULT_TIMEOUT_S = 30

# Songs of ~1 s: the callback comes well after the submitter saved its continuation.
SLOW_ENOUGH = {"generation_s": 100.0, "generation_jitter_s": 0.0}


class CollectCounter:
    """Counts ``collect`` runs in this process (the test worker runs on a thread here)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, sender: Any = None, **_: Any) -> None:
        if getattr(sender, "name", None) == COLLECT_TASK_NAME:
            with self._lock:
                self.count += 1


@pytest.fixture
def collects() -> Iterator[CollectCounter]:
    counter = CollectCounter()
    signals.task_prerun.connect(counter, weak=False)
    yield counter
    signals.task_prerun.disconnect(counter)


def run_generation(f: Fleet, prompt: str) -> dict[str, Any]:
    """Run one generation to its result and check what it stored."""
    pending = generate.delay(params={"prompt": prompt, "seed": "5"})
    result: dict[str, Any] = pending.get(timeout=RESULT_TIMEOUT_S)
    check_artifacts(f.storage_dir, result)
    return result


def ledger_done_once(f: Fleet, result: dict[str, Any]) -> None:
    """The step's ledger entry is done, with the result the task returned."""
    entry = f.services.ledger.get(result["step_key"])
    assert entry is not None
    assert entry.state is State.DONE
    assert entry.result == result


def test_generation_completes_by_callback_with_the_poller_off(
    redis_url: str, tmp_path: Path, collects: CollectCounter
) -> None:
    with fleet(
        redis_url,
        tmp_path,
        callbacks=True,
        poller=False,
        emulator=fast_emulator_config(**SLOW_ENOUGH),
    ) as f:
        result = run_generation(f, "only a callback can finish this")
        counters = f.counters
        record = f.services.client.tasks.retrieve(result["api_task_id"])
    assert record is not None
    assert str(record.request["callback_url"]).startswith(f"{f.receiver_url}{CALLBACK_PATH}/")
    assert counters["callbacks_sent"] == 1
    # One poll: the receiver confirms the callback with the provider's record.
    assert counters["polls"] == 1
    assert collects.count == 1
    ledger_done_once(f, result)


def test_forged_and_replayed_callbacks_are_rejected(
    redis_url: str, tmp_path: Path, collects: CollectCounter
) -> None:
    with fleet(
        redis_url,
        tmp_path,
        callbacks=True,
        poller=False,
        emulator=fast_emulator_config(**SLOW_ENOUGH),
    ) as f:
        result = run_generation(f, "replay me")
        record = f.services.client.tasks.retrieve(result["api_task_id"])
        assert record is not None
        assert record.response is not None
        url, body = str(record.request["callback_url"]), record.response
        forged = url.rsplit("/", 1)[0] + "/" + "0" * 32
        with httpx.Client(timeout=10) as http:
            replies = {
                "replayed": http.post(url, json=body).status_code,
                "forged": http.post(forged, json=body).status_code,
                "wrong_secret": http.post(_signed_with(f, b"guess", "x1"), json=body).status_code,
                "unknown_id": http.post(_signed(f, "never-issued"), json=body).status_code,
                "not_json": http.post(url, content=b"{").status_code,
            }
        entry = f.services.ledger.get(result["step_key"])
    assert replies == {
        "replayed": 409,
        "forged": 403,
        "wrong_secret": 403,
        "unknown_id": 202,
        "not_json": 400,
    }
    assert collects.count == 1
    assert entry is not None
    assert entry.result == result


def test_callback_for_another_task_is_rejected(redis_url: str, tmp_path: Path) -> None:
    # A valid URL replayed with another task's body must not finish the waiting step.
    emulator = fast_emulator_config(generation_s=300.0, generation_jitter_s=0.0)
    with fleet(redis_url, tmp_path, callbacks=True, poller=False, emulator=emulator) as f:
        pending = generate.delay(params={"prompt": "still rendering"})
        cont = _wait_for_continuation(f)
        assert cont.callback_id is not None
        url = _signed(f, cont.callback_id)
        with httpx.Client(timeout=10) as http:
            status = http.post(url, json={"task_id": "someone-else", "success": True}).status_code
        still_waiting = f.services.continuations.get(cont.api_task_id) is not None
        pending.revoke()
    assert status == 403
    assert still_waiting


def test_duplicated_callbacks_are_harmless(
    redis_url: str, tmp_path: Path, collects: CollectCounter
) -> None:
    emulator = fast_emulator_config(**SLOW_ENOUGH, faults=FaultConfig(callback_duplicate=1.0))
    with fleet(redis_url, tmp_path, callbacks=True, poller=False, emulator=emulator) as f:
        result = run_generation(f, "say it twice")
        counters = _after_callbacks(f, expected=2)
    assert counters["callbacks_duplicated"] == 1
    # The first delivery resumed the step; the copy was answered 409 (counted as failed).
    assert (counters["callbacks_sent"], counters["callbacks_failed"]) == (1, 1)
    assert collects.count == 1
    ledger_done_once(f, result)


def test_dropped_callback_is_finished_by_the_poller(
    redis_url: str, tmp_path: Path, collects: CollectCounter
) -> None:
    emulator = fast_emulator_config(**SLOW_ENOUGH, faults=FaultConfig(callback_drop=1.0))
    with fleet(redis_url, tmp_path, callbacks=True, poller=True, emulator=emulator) as f:
        result = run_generation(f, "lost in the mail")
        counters = f.counters
    assert counters["callbacks_dropped"] == 1
    assert counters["callbacks_sent"] == 0
    assert counters["polls"] >= 1
    assert collects.count == 1
    ledger_done_once(f, result)


def test_callbacks_and_poller_together_resume_each_step_once(
    redis_url: str, tmp_path: Path, collects: CollectCounter
) -> None:
    # Both completion paths on, callbacks duplicated: the claim lets one of them win.
    emulator = fast_emulator_config(
        generation_s=20.0, generation_jitter_s=10.0, faults=FaultConfig(callback_duplicate=1.0)
    )
    with fleet(redis_url, tmp_path, callbacks=True, poller=True, emulator=emulator) as f:
        pending = [
            generate.delay(params={"prompt": f"race {i}", "seed": str(i)}) for i in range(12)
        ]
        results = [p.get(timeout=RESULT_TIMEOUT_S) for p in pending]
        counters = _after_callbacks(f, expected=24)
    assert collects.count == 12
    assert all(n == 1 for n in counters["submissions_by_fingerprint"].values())
    for result in results:
        ledger_done_once(f, result)


def _signed(f: Fleet, callback_id: str) -> str:
    assert f.receiver_url is not None
    assert f.services.callback_secret is not None
    return callback_url(f.receiver_url, f.services.callback_secret, callback_id)


def _signed_with(f: Fleet, secret: bytes, callback_id: str) -> str:
    assert f.receiver_url is not None
    return f"{f.receiver_url}{CALLBACK_PATH}/{callback_id}/{sign(secret, callback_id)}"


def _wait_for_continuation(f: Fleet) -> Any:
    """The one continuation the fleet's worker saves, once it exists."""
    store, token = f.services.continuations, f.services.token_id
    for _ in range(500):
        ids = store.due(token, now=float("inf"), limit=1)
        cont = store.get(ids[0]) if ids else None
        if cont is not None:
            return cont
        threading.Event().wait(0.02)
    raise AssertionError("no continuation was saved")


def _after_callbacks(f: Fleet, *, expected: int) -> dict[str, Any]:
    """The emulator's counters once ``expected`` callback deliveries were answered."""
    for _ in range(250):
        counters = f.counters
        if counters["callbacks_sent"] + counters["callbacks_failed"] >= expected:
            return counters
        threading.Event().wait(0.02)
    raise AssertionError(f"fewer than {expected} callbacks were delivered: {f.counters}")
