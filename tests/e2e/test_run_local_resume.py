"""``run --resume`` in local mode (REDIS_URL set, no token) refuses instead of failing rows.

Issue 9 item 10: the run would start a new emulator that never heard of the batch's
earlier tasks, so rows failed ``audio_id ... not found`` or waited for ever. Now it
exits 2 with a message saying what to do, before anything is started or written.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from pipelines.batches.submit import submit_batch
from pipelines.specs.loader import get_pipeline
from pipelines.spend.prices import PriceTable

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "prompts.csv"
PIPELINE = ("-p", "generate-extend-stems")


def _snapshot(client: redis.Redis) -> dict[bytes, bytes | None]:
    return {key: client.dump(key) for key in client.scan_iter()}


@pytest.mark.parametrize("option", ["--resume", "--batch-id"])
def test_resuming_a_batch_on_a_new_emulator_is_refused(
    option: str, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    submit_batch(
        redis_client,
        source=str(EXAMPLES),
        pipeline=get_pipeline("generate-extend-stems", None),
        prices=PriceTable.load(),
        batch_id="local-1",
    )
    before = _snapshot(redis_client)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRODUCER_", "REDIS_URL"))}
    env.update(PYTHONPATH=str(ROOT), REDIS_URL=redis_url)
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines", "run", str(EXAMPLES), *PIPELINE, option, "local-1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    message = " ".join(proc.stderr.split())
    assert "batch local-1 exists, but PRODUCER_API_TOKEN is not set" in message
    assert "producer-batch emulator" in message and "Nothing was written" in message
    assert "Traceback" not in proc.stderr
    assert _snapshot(redis_client) == before
    assert not (tmp_path / "producer-results").exists()
