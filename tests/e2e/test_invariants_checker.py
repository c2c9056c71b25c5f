"""The chaos suite's invariant checker sees what it must: a clean run passes, tampering fails.

A few generations run through the in-process fleet (worker, poller, emulator); the
checker passes on the result. Then the end state is broken in the ways a chaos run
could break it — an extra paid submission, a corrupted and an unrecorded artifact, a
continuation left claimed, a step left submitted, an in-flight slot kept — and one
AssertionError must list each of them.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.invariants import check_fleet
from tests.integration.fleet import fleet
from workers.constants import INFLIGHT_PREFIX, LEDGER_PREFIX
from workers.ledger import State
from workers.runtime import Services
from workers.tasks.audios import generate

PREFIX = "inv"
ROWS = 3


def run_generations(services: Services) -> None:
    for row in range(ROWS):
        context = {"batch": PREFIX, "row": row, "step": "generate"}
        generate.apply_async(kwargs={"params": {"prompt": f"check {row}"}, "context": context})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        entries = list(services.ledger.scan(f"{PREFIX}/"))
        if len(entries) == ROWS and all(e.state is State.DONE for e in entries):
            time.sleep(0.3)  # the slot release and continuation finish trail mark_done
            return
        time.sleep(0.1)
    raise AssertionError("the generations did not finish")


@pytest.mark.timeout(90)
def test_the_checker_passes_a_clean_run_and_lists_every_violation(
    redis_url: str, tmp_path: Path
) -> None:
    storage = tmp_path / "store"
    with fleet(redis_url, storage) as f:
        run_generations(f.services)
        counters = f.counters
        report = check_fleet(redis_url, storage, counters, batch_ids=[], ledger_prefixes=[PREFIX])
        assert report.submissions == report.paid_steps == ROWS
        assert report.duplicates == 0

        # Break the end state, one way per invariant.
        entry = next(iter(f.services.ledger.scan(f"{PREFIX}/")))
        doubled = dict(counters)
        by_fingerprint = dict(counters["submissions_by_fingerprint"])
        # Not the fingerprint of the step copied below as a stranded one: that copy adds a
        # ledger step with this fingerprint, which would account for the extra submission.
        # (Which entry the scan yields first depends on Redis's hash order.)
        other = next(fp for fp in by_fingerprint if fp != entry.fingerprint)
        by_fingerprint[other] += 1
        doubled |= {"submissions_by_fingerprint": by_fingerprint, "submissions_total": ROWS + 1}
        assert entry.result is not None
        artifact = entry.result["artifacts"][0]
        (storage / artifact["key"]).write_bytes(b"not the song")
        (storage / "stray.bin").write_bytes(b"left behind")
        f.redis.set(f"{INFLIGHT_PREFIX}claimed:forgotten", "{}")
        stranded = {**f.redis.hgetall(f"{LEDGER_PREFIX}{entry.key}"), b"state": b"submitted"}
        f.redis.hset(f"{LEDGER_PREFIX}{PREFIX}/9/generate", mapping=stranded)
        f.services.limiter.lease(f.services.token_id, "kept-slot")

        with pytest.raises(AssertionError) as failed:
            check_fleet(redis_url, storage, doubled, batch_ids=[], ledger_prefixes=[PREFIX])
    message = str(failed.value)
    for expected in (
        "1 duplicate submissions",
        f"artifact {artifact['key']}: size or sha256 differs",
        "stored objects no done step records: ['stray.bin']",
        "continuations left claimed",
        f"ledger {PREFIX}/9/generate: not terminal",
        "limiter in-flight 1, not 0",
    ):
        assert expected in message, message
