"""A permanent collect failure ends its step completely (issue 9, items 1 and 15).

Real worker, poller, feeder and emulator; the CLI through typer's runner. The
emulator's CDN answers 404 for the songs of five rows (a ``media_not_found_404``
rule), with the default in-flight cap of 5: the sixth row must still run, the
limiter must show 0 in flight, no continuation may stay claimed, and
``retry-failed`` collects the paid songs again without a new submission.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipelines.cli import app as cli_app
from pipelines.spend.prices import PriceTable
from tests.integration.fleet import Fleet, cli_fleet
from workers.constants import INFLIGHT_PREFIX
from workers.ledger import State

HEADER = "prompt,title,model,instrumental,seed\n"
TIMEOUT_S = 30.0
LOST = "lost song"
runner = CliRunner()


@pytest.fixture
def capped_fleet(redis_url: str, tmp_path: Path) -> Iterator[Fleet]:
    """A fleet with the default in-flight cap (5), a feeder thread and the CLI's env."""
    with cli_fleet(redis_url, tmp_path / "artifacts", max_in_flight=5) as f:
        yield f


def cli(*args: str, code: int = 0) -> str:
    result = runner.invoke(cli_app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def wait_for(batch_id: str, done: int, failed: int) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        found = json.loads(cli("status", batch_id, "--json"))
        counts = found["counts"]
        if found["status"] == "finished" and (counts["done"], counts["failed"]) == (done, failed):
            return dict(found)
        assert time.monotonic() < deadline, found
        time.sleep(0.1)


def claimed_continuations(f: Fleet) -> list[bytes]:
    return list(f.redis.scan_iter(match=f"{INFLIGHT_PREFIX}claimed:*"))


def test_five_lost_songs_do_not_stop_the_sixth_and_retry_collects_without_paying(
    capped_fleet: Fleet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    f = capped_fleet
    f.emulator.configure(
        faults={"rules": [{"when": {"title": LOST}, "fault": "media_not_found_404"}]}
    )
    rows = [f"song {i},{LOST},FUZZ-2.0,true,{i}\n" for i in range(1, 6)]
    rows.append("song 6,found song,FUZZ-2.0,true,6\n")
    source = tmp_path / "rows.csv"
    source.write_text(HEADER + "".join(rows), encoding="utf-8")

    with caplog.at_level(logging.INFO, logger="celery.app.trace"):
        cli("submit", str(source), "-p", "generate", "--batch-id", "lost")
        ended = wait_for("lost", done=1, failed=5)
    assert f.counters["submissions_total"] == 6
    # The table expects this failure: logged as such, without a traceback.
    assert not [r for r in caplog.records if "raised unexpected" in r.getMessage()]

    limits = json.loads(cli("limits", "show", "--json"))
    assert limits["in_flight"] == 0
    assert claimed_continuations(f) == []
    for row in range(1, 6):
        entry = f.services.ledger.get(f"lost/{row}/generate")
        assert entry is not None and entry.state is State.FAILED
        assert entry.error_code == "artifact_refused" and "HTTP 404" in (entry.error_message or "")
    # The five lost songs were paid: spend counts all six steps, once.
    price = PriceTable.load(None).call_cost("generate")
    assert ended["spend"]["spent"] == pytest.approx(6 * price)

    cli("results", "lost", "--out", str(tmp_path / "out"))
    errors = (tmp_path / "out" / "errors.csv").read_text().splitlines()
    assert len(errors) == 6 and all(",generate,artifact_refused," in e for e in errors[1:])

    # The CDN is back: retry-failed collects the five paid songs, it does not pay again.
    f.emulator.configure(faults={"rules": []})
    assert "5 failed row(s) queued again" in cli("retry-failed", "lost")
    recollected = wait_for("lost", done=6, failed=0)
    assert f.counters["submissions_total"] == 6
    assert recollected["spend"]["spent"] == pytest.approx(6 * price)  # not counted again
    assert json.loads(cli("limits", "show", "--json"))["in_flight"] == 0
    assert claimed_continuations(f) == []
    for row in range(1, 7):
        entry = f.services.ledger.get(f"lost/{row}/generate")
        assert entry is not None and entry.state is State.DONE
        audio = next(a for a in (entry.result or {})["artifacts"] if a["kind"] == "audio")
        assert (f.storage_dir / audio["key"]).stat().st_size == audio["size"]
