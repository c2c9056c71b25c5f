"""A worker without the configuration it needs refuses to start; no row is ever stranded.

Issue 9 item 9: a worker started without ``PRODUCER_API_TOKEN`` used to start silently,
fail every step as ``internal_error``, and crash in the ``row_failed`` errback too, so
the row stayed ``running`` for ever.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from celery.contrib.testing.worker import start_worker

from pipelines.app import build_app
from pipelines.batches.state import BatchState
from pipelines.batches.submit import submit_batch
from pipelines.batches.tasks import feeder_for
from pipelines.specs.loader import get_pipeline
from pipelines.spend.prices import PriceTable
from workers.app import MISSING_API_MESSAGE
from workers.runtime import build_services, set_services
from workers.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "prompts.csv"


def test_a_worker_without_a_token_refuses_to_start(redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODUCER_")}
    env.update(REDIS_URL=redis_url, PYTHONPATH=str(ROOT))
    started = time.monotonic()
    worker = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "pipelines.app", "worker", "--pool=solo"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 2, worker.stderr
    assert MISSING_API_MESSAGE in worker.stderr
    assert "Traceback" not in worker.stderr
    assert time.monotonic() - started < 30


def test_the_errback_ends_the_row_when_the_worker_has_no_services(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose services cannot be built still records its failed rows."""
    monkeypatch.delenv("PRODUCER_API_TOKEN", raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    get_settings.cache_clear()
    set_services(None)
    # The feeder (another process in real life) has its configuration; the worker has not.
    feeding = build_services(
        Settings(redis_url=redis_url, api_token="t", storage_url=f"file://{tmp_path}")
    )
    app = build_app(Settings(redis_url=redis_url))
    source = tmp_path / "rows.csv"
    source.write_text("".join(EXAMPLES.read_text().splitlines(keepends=True)[:3]))
    submit_batch(
        redis_client,
        source=str(source),
        pipeline=get_pipeline("generate-extend-stems", None),
        prices=PriceTable.load(),
        batch_id="no-token",
        store=feeding.store,
    )
    state = BatchState(redis_client)
    try:
        with start_worker(
            app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING"
        ):
            assert feeder_for(feeding, app).feed_once() == 2
            deadline = time.monotonic() + 20
            while state.rows_in("no-token", "f") != [1, 2]:
                assert time.monotonic() < deadline, state.rows_in("no-token", "r")
                time.sleep(0.1)
    finally:
        feeding.close()
        app.close()
        get_settings.cache_clear()
    assert state.rows_in("no-token", "r") == []
