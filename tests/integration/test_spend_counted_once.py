"""Every paid step is counted exactly once in the batch's spend, whatever interrupts it.

Issue 9 item 8: ``cancel --abandon`` settled a row's hold while a step was still at the
provider, so the step, paid when it landed, was never counted; and a row admitted again
while an earlier copy's step was at the provider waited (deferred), its hold settled,
and the step that landed meanwhile fell before the next admission and was lost too.
The figure checked: ``status`` spend = price table x done steps in the ledger, after
every step has landed, with real workers, the poller, the feeder and the CLI.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipelines.batches.ledger_reads import ledger_entries, row_step_keys
from pipelines.batches.state import BatchInfo, BatchState
from pipelines.cli import app as cli_app
from pipelines.spend.prices import PriceTable
from tests.integration.fleet import Fleet, cli_fleet, fast_emulator_config
from workers.ledger import State

HEADER = "prompt,title,model,instrumental,seed,weirdness,extend_prompt\n"
PIPELINE = "generate-extend-stems"
TIMEOUT_S = 60.0
runner = CliRunner()


@pytest.fixture(scope="module")
def spend_fleet(redis_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A fleet whose songs take ~1-2 s (so steps are at the provider when we interrupt)."""
    slow = fast_emulator_config(time_scale=0.05)
    with cli_fleet(redis_server_url, tmp_path_factory.mktemp("artifacts"), emulator=slow) as f:
        yield f


def cli(*args: str) -> str:
    result = runner.invoke(cli_app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def status(batch_id: str) -> dict[str, Any]:
    return dict(json.loads(cli("status", batch_id, "--json")))


def submit(tmp_path: Path, batch_id: str, rows: int) -> None:
    source = tmp_path / f"{batch_id}.csv"
    lines = [f"song {i},T,FUZZ-2.0,true,{i},0.3,x\n" for i in range(1, rows + 1)]
    source.write_text(HEADER + "".join(lines), encoding="utf-8")
    cli("submit", str(source), "-p", PIPELINE, "--batch-id", batch_id)


def steps(f: Fleet, batch_id: str) -> list[tuple[str, State | None]]:
    """(action, ledger state) of every step of every row of the batch."""
    record = BatchState(f.redis).record(batch_id)
    assert record is not None
    info = BatchInfo.from_record(record)
    found: list[tuple[str, State | None]] = []
    for row in range(1, int(record["rows_total"]) + 1):
        entries = ledger_entries(f.redis, row_step_keys(batch_id, row, info.plan))
        found += [
            (action, None if e is None else e.state)
            for (_, action), e in zip(info.plan, entries, strict=True)
        ]
    return found


def wait(what: str, check: Any) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def landed(f: Fleet, batch_id: str) -> bool:
    """No step of the batch is at the provider any more."""
    at_provider = (State.SUBMITTED, State.RESERVED)
    return not any(state in at_provider for _, state in steps(f, batch_id))


def price_of_done_steps(f: Fleet, batch_id: str) -> float:
    prices = PriceTable.load()
    paid = [action for action, state in steps(f, batch_id) if state is State.DONE]
    assert paid, "nothing was paid: the test proves nothing"
    return round(sum(prices.call_cost(action) for action in paid), 6)


def submitted(f: Fleet, batch_id: str) -> int:
    return sum(state is State.SUBMITTED for _, state in steps(f, batch_id))


def test_abandon_counts_the_steps_that_land_after_it(spend_fleet: Fleet, tmp_path: Path) -> None:
    submit(tmp_path, "spend-ab", 3)
    wait("three steps at the provider", lambda: submitted(spend_fleet, "spend-ab") >= 3)
    assert "cancelled" in cli("cancel", "spend-ab", "--abandon")
    wait("the abandoned rows' steps landed", lambda: landed(spend_fleet, "spend-ab"))
    time.sleep(0.3)
    assert status("spend-ab")["spend"]["spent"] == pytest.approx(
        price_of_done_steps(spend_fleet, "spend-ab")
    )


def test_resume_while_steps_are_at_the_provider_counts_each_once(
    spend_fleet: Fleet, tmp_path: Path
) -> None:
    before = int(spend_fleet.counters["submissions_total"])
    submit(tmp_path, "spend-re", 4)
    wait("four steps at the provider", lambda: submitted(spend_fleet, "spend-re") >= 4)
    cli("cancel", "spend-re", "--abandon")
    submit(tmp_path, "spend-re", 4)  # resumes at once: the rows wait for their steps
    wait("finished", lambda: status("spend-re")["status"] == "finished")
    wait("every step landed", lambda: landed(spend_fleet, "spend-re"))
    time.sleep(0.3)
    assert int(spend_fleet.counters["submissions_total"]) - before == 4 * 3
    final = status("spend-re")["spend"]
    assert final["spent"] == pytest.approx(price_of_done_steps(spend_fleet, "spend-re"))
    assert final["reserved"] == pytest.approx(0)
