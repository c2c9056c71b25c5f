"""Fairness: two equal batches running at the same time each get half the throughput.

Real worker, poller and emulator (songs of a fixed length), one feeder thread, a small
window so the batches compete. Batch B is submitted while A already runs; over the
span where both have rows to run, rows finished per batch are counted from Redis.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import redis

import pipelines.app  # the one app: registers row_done / row_failed before the worker starts
import pipelines.batches.tasks
from pipelines.batches.state import BatchState
from pipelines.batches.submit import submit_batch
from pipelines.specs.loader import get_pipeline
from pipelines.spend.prices import PriceTable
from tests.integration.fleet import fast_emulator_config, fleet

PRICES = PriceTable.load()  # the built-in table (no prices file in tests)

ROWS = 36
WINDOW = 4
TIMEOUT_S = 90.0


def _csv(tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}.csv"
    path.write_text(
        "prompt,seed\n" + "".join(f"{name} song {i},{i}\n" for i in range(ROWS)), encoding="utf-8"
    )
    return str(path)


def _done(state: BatchState, batch_id: str) -> tuple[int, int]:
    record = state.record(batch_id) or {}
    return int(record.get("done", 0)), int(record.get("pending", 0))


def test_two_equal_batches_share_the_throughput(redis_url: str, tmp_path: Path) -> None:
    emulator = fast_emulator_config(generation_s=30.0, generation_jitter_s=0.0)
    spec = get_pipeline("generate")
    with fleet(redis_url, tmp_path / "store", emulator=emulator, concurrency=4) as f:
        client: redis.Redis = f.redis
        state = BatchState(client)
        state.set_window(WINDOW)
        submit_batch(
            client, prices=PRICES, source=_csv(tmp_path, "a"), pipeline=spec, batch_id="fair-a"
        )
        feeder = pipelines.batches.tasks.feeder_for(f.services, pipelines.app.app)
        stop = threading.Event()
        thread = threading.Thread(
            target=feeder.run, args=(stop,), kwargs={"idle_sleep_s": 0.05}, daemon=True
        )
        thread.start()
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while _done(state, "fair-a")[0] < 6:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            submit_batch(
                client, prices=PRICES, source=_csv(tmp_path, "b"), pipeline=spec, batch_id="fair-b"
            )
            start = (_done(state, "fair-a")[0], _done(state, "fair-b")[0])
            last = start
            # Both run while both still have rows waiting to be admitted.
            while True:
                (a, a_pending), (b, b_pending) = _done(state, "fair-a"), _done(state, "fair-b")
                if not a_pending or not b_pending:
                    break
                last = (a, b)
                assert time.monotonic() < deadline
                time.sleep(0.02)
        finally:
            stop.set()
            thread.join(timeout=5)
            state.set_window(None)
    got_a, got_b = last[0] - start[0], last[1] - start[1]
    assert got_a + got_b >= 16, (start, last)
    share = got_a / (got_a + got_b)
    assert 0.4 <= share <= 0.6, (start, last, share)
