"""The whole local run SIGKILLed mid-batch, then resumed: every step paid exactly once.

The emulator runs in this process (its counters survive the kill) and Redis is the
test's (``REDIS_URL``), so the batch, the ledger and the broker's messages survive too.
``producer-batch run ... --batch-id`` is killed with SIGKILL once a few rows are done
(worker, poller and feeder die with it, mid-step); ``run ... --resume`` finishes the
batch. Then: one paid submission per request at the emulator, every row done, one
manifest line per row and step, and each step's files stored once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from pipelines.batches.state import BatchState
from pipelines.batches.status import batch_status
from pipelines.spend.prices import PriceTable
from producer_emulator import EmulatorConfig, EmulatorServer
from workers.storage.urlguard import allow_entry_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "prompts.csv"
TOKEN = "kill-test-token"
BATCH = "kill-1"
STEPS = ("generate", "extend", "stems")


def _env(redis_url: str, emulator_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRODUCER_", "REDIS_URL"))}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "REDIS_URL": redis_url,
            "PRODUCER_API_TOKEN": TOKEN,
            "PRODUCER_BASE_URL": emulator_url,
            # The emulator serves its songs from loopback: downloads may reach it, no more.
            "PRODUCER_DOWNLOAD_ALLOW_HOSTS": allow_entry_for(emulator_url),
            # Messages the killed worker held come back within seconds, not half an hour.
            "PRODUCER_VISIBILITY_TIMEOUT_S": "20",
            "PRODUCER_POLL_FIRST_AFTER_S": "0.3",
            "PRODUCER_POLL_MAX_INTERVAL_S": "0.5",
            "PRODUCER_POLL_RATE_PER_S": "20",
            "PRODUCER_SUBMIT_RATE_PER_S": "50",
            "PRODUCER_SUBMIT_BURST": "50",
            "PRODUCER_MAX_IN_FLIGHT": "8",
            "PRODUCER_TASK_DEADLINE_S": "120",
        }
    )
    return env


def _args(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipelines",
        "run",
        str(EXAMPLES),
        "--pipeline",
        "generate-extend-stems",
        "--out",
        str(out),
        *extra,
    ]


def test_a_killed_run_resumes_and_pays_each_step_once(redis_url: str, tmp_path: Path) -> None:
    config = EmulatorConfig(
        tokens=[TOKEN],
        generation_s=40.0,
        generation_jitter_s=10.0,
        time_scale=0.04,
        sample_rate=8000,
        song_low_s=20.0,
        song_high_s=40.0,
        submit_rate_per_s=None,
        poll_rate_per_s=None,
        max_concurrency=None,
        seed=5,
    )
    out = tmp_path / "results"
    client = redis.Redis.from_url(redis_url)
    state = BatchState(client)
    with EmulatorServer(config) as emu:
        env = _env(redis_url, emu.url)
        first = subprocess.Popen(
            _args(out, "--batch-id", BATCH),
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 90
        while int((state.record(BATCH) or {}).get("done", 0)) < 5:
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed = state.record(BATCH) or {}
        assert int(killed["running"]) > 0  # it really died mid-batch
        second = subprocess.run(
            _args(out, "--resume", BATCH),
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert second.returncode == 0, second.stderr[-3000:]
        counters = emu.counters()
    rows = len(EXAMPLES.read_text(encoding="utf-8").splitlines()) - 1
    assert counters["submissions_total"] == rows * len(STEPS)
    assert counters["submissions_duplicated"] == 0
    assert set(counters["submissions_by_fingerprint"].values()) == {1}
    record = state.record(BATCH) or {}
    assert (record["status"], record["done"], record["failed"]) == ("finished", str(rows), "0")
    # Every paid step counted once (issue 9 item 8: 4.32 USD were paid, status said 3.92).
    prices = PriceTable.load()
    spend = (batch_status(client, BATCH) or {})["spend"]
    assert spend["spent"] == pytest.approx(rows * sum(prices.call_cost(s) for s in STEPS))
    assert spend["reserved"] == pytest.approx(0)
    lines = [json.loads(line) for line in (out / BATCH / "manifest.jsonl").open()]
    assert sorted((line["row"], line["step"]) for line in lines) == sorted(
        (row, step) for row in range(1, rows + 1) for step in STEPS
    )
    for row in range(1, rows + 1):
        for step, kinds in (
            ("generate", ("wav", "png", "json")),
            ("extend", ("wav", "png", "json")),
            ("stems", ("zip", "json")),
        ):
            files = sorted(p.suffix.lstrip(".") for p in (out / BATCH / str(row) / step).iterdir())
            assert files == sorted(kinds), (row, step, files)
    client.close()
