"""Batches through the CLI with real workers: submit, status, results, resume, retry-failed,
cancel (and --abandon), spend caps — every step paid exactly once at the emulator.

One fleet (emulator, worker, poller) and one feeder thread serve the module; each test
uses its own batch ids, and counts the emulator's submissions as deltas.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipelines.batches.state import BatchState
from pipelines.cli import app as cli_app
from pipelines.spend.prices import PriceTable
from tests.integration.fleet import Fleet, cli_fleet

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "prompts.csv"
HEADER = "prompt,title,model,instrumental,seed,weirdness,extend_prompt\n"
TIMEOUT_S = 60.0
runner = CliRunner()


@pytest.fixture(scope="module")
def batch_fleet(redis_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A fleet, a feeder thread, and the CLI's environment pointing at them."""
    with cli_fleet(redis_server_url, tmp_path_factory.mktemp("artifacts")) as f:
        yield f


def cli(*args: str, code: int = 0) -> str:
    result = runner.invoke(cli_app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def csv_file(tmp_path: Path, rows: list[str], name: str = "rows.csv") -> str:
    path = tmp_path / name
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    return str(path)


def example_rows(count: int) -> list[str]:
    return EXAMPLES.read_text(encoding="utf-8").splitlines(keepends=True)[1 : count + 1]


def status(batch_id: str) -> dict[str, Any]:
    return dict(json.loads(cli("status", batch_id, "--json")))


def wait_for(batch_id: str, *statuses: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT_S
    while (found := status(batch_id))["status"] not in statuses:
        assert time.monotonic() < deadline, found
        time.sleep(0.1)
    return found


def submissions(f: Fleet) -> int:
    return int(f.counters["submissions_total"])


def test_submit_status_results_and_a_zero_call_resubmit(batch_fleet: Fleet, tmp_path: Path) -> None:
    source = csv_file(tmp_path, example_rows(6))
    before = submissions(batch_fleet)
    out = json.loads(
        cli("submit", source, "-p", "generate-extend-stems", "--batch-id", "cli-a", "--json")
    )
    assert (out["batch_id"], out["accepted"], out["resumed"]) == ("cli-a", 6, False)
    done = wait_for("cli-a", "finished")
    assert done["counts"] == {"pending": 0, "running": 0, "done": 6, "failed": 0, "cancelled": 0}
    assert done["throughput_rows_per_min"] > 0 and done["eta_s"] == 0
    row_cost = PriceTable.load().row_cost(_spec("generate-extend-stems"))
    assert done["spend"]["spent"] == pytest.approx(6 * row_cost)
    assert submissions(batch_fleet) - before == 18

    text = cli("results", "cli-a", "--out", str(tmp_path / "out"))
    assert "18 steps, 0 failed rows" in text
    lines = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").open()]
    assert sorted({(line["row"], line["step"]) for line in lines}) == sorted(
        (row, step) for row in range(1, 7) for step in ("generate", "extend", "stems")
    )
    for artifact in (a for line in lines for a in line["artifacts"]):
        assert (batch_fleet.storage_dir / artifact["key"]).stat().st_size == artifact["size"]
    assert (batch_fleet.storage_dir / "cli-a" / "manifest.jsonl").read_bytes() == (
        tmp_path / "out" / "manifest.jsonl"
    ).read_bytes()

    again = cli("submit", source, "-p", "generate-extend-stems", "--batch-id", "cli-a")
    assert "batch cli-a resumed: 6 rows (0 rejected), status finished" in again
    assert (
        json.loads(cli("status", "cli-a", "--json", "--watch").splitlines()[-1])["status"]
        == "finished"
    )
    time.sleep(0.5)
    assert submissions(batch_fleet) - before == 18  # the resubmit made no call


def _spec(name: str) -> Any:
    from pipelines.specs.loader import get_pipeline

    return get_pipeline(name)


def test_a_failed_row_is_reported_then_retried_without_paying_twice(
    batch_fleet: Fleet, tmp_path: Path
) -> None:
    batch_fleet.emulator.configure(
        faults={
            "rules": [
                {
                    "when": {"action": "extend", "prompt": "boom"},
                    "fault": "task_failure",
                    "times": 1,
                }
            ]
        }
    )
    rows = [
        r.replace(",more\n", f",{p}\n")
        for r, p in zip(
            [f"song {i},T{i},FUZZ-2.0,true,{i},0.3,more\n" for i in (1, 2, 3)],
            ("calm", "boom", "calm"),
            strict=True,
        )
    ]
    before = submissions(batch_fleet)
    cli("submit", csv_file(tmp_path, rows), "-p", "generate-extend-stems", "--batch-id", "cli-f")
    ended = wait_for("cli-f", "finished")
    assert (ended["counts"]["done"], ended["counts"]["failed"]) == (2, 1)
    cli("results", "cli-f", "--out", str(tmp_path / "out"))
    errors = (tmp_path / "out" / "errors.csv").read_text().splitlines()
    assert errors == ["row,step,code,message", "2,extend,api_error,Generation failed."]
    assert submissions(batch_fleet) - before == 3 + 3 + 2

    assert "1 failed row(s) queued again" in cli("retry-failed", "cli-f")
    ended = wait_for("cli-f", "finished")
    assert (ended["counts"]["done"], ended["counts"]["failed"]) == (3, 0)
    assert submissions(batch_fleet) - before == 3 + 3 + 2 + 2  # extend and stems of row 2 only
    cli("results", "cli-f", "--out", str(tmp_path / "out2"))
    assert (batch_fleet.storage_dir / "cli-f" / "manifest.r1.jsonl").exists()


def test_cancel_then_resume_and_abandon_then_resume_pay_each_step_once(
    batch_fleet: Fleet, tmp_path: Path
) -> None:
    state = BatchState(batch_fleet.redis)
    state.set_window(1)
    try:
        for batch_id, abandon in (("cli-c", False), ("cli-x", True)):
            source = csv_file(
                tmp_path,
                [f"song {i},T,FUZZ-2.0,true,{i},0.3,x\n" for i in range(1, 6)],
                f"{batch_id}.csv",
            )
            before = submissions(batch_fleet)
            cli("submit", source, "-p", "generate-extend-stems", "--batch-id", batch_id)
            while int((state.record(batch_id) or {}).get("admissions", 0)) < 2:
                time.sleep(0.02)
            args = ["cancel", batch_id, *(["--abandon"] if abandon else [])]
            first = cli(*args)
            assert ("cancelled" if abandon else "cancelling") in first
            stopped = wait_for(batch_id, "cancelled")
            assert stopped["counts"]["cancelled"] >= 3 and stopped["counts"]["pending"] == 0
            assert submissions(batch_fleet) - before <= 2 * 3
            again = cli("submit", source, "-p", "generate-extend-stems", "--batch-id", batch_id)
            assert "resumed" in again
            wait_for(batch_id, "finished")
            time.sleep(0.3)
            assert submissions(batch_fleet) - before == 5 * 3
    finally:
        state.set_window(None)


def test_a_spend_cap_pauses_with_a_clear_status(batch_fleet: Fleet, tmp_path: Path) -> None:
    row_cost = PriceTable.load().row_cost(_spec("generate-extend-stems"))
    source = csv_file(tmp_path, [f"song {i},T,FUZZ-2.0,true,{i},0.3,x\n" for i in range(1, 5)])
    cli(
        "submit",
        source,
        "-p",
        "generate-extend-stems",
        "--batch-id",
        "cli-s",
        "--max-spend",
        f"{2.5 * row_cost} USD",
    )
    paused = wait_for("cli-s", "paused")
    assert paused["paused_reason"] == "batch_cap"
    deadline = time.monotonic() + TIMEOUT_S
    while (now := status("cli-s"))["counts"]["done"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert now["status"] == "paused" and now["counts"]["done"] == 2
    assert now["spend"]["spent"] + now["spend"]["reserved"] <= 2.5 * row_cost + 1e-9
    assert "batch_cap" in cli("status", "cli-s")
    cli(
        "submit", source, "-p", "generate-extend-stems", "--batch-id", "cli-s", "--max-spend", "100"
    )
    assert wait_for("cli-s", "finished")["counts"]["done"] == 4
