"""``producer-batch schedules`` through typer's runner against real Redis."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import structlog
from typer.testing import CliRunner

import pipelines.schedules.tasks as schedule_tasks
from pipelines.batches.state import BatchState
from pipelines.batches.submit import SubmitReport
from pipelines.cli import _mount, app
from pipelines.schedules.spec import ScheduleSpec
from pipelines.schedules.store import ScheduleStore
from pipelines.specs.canvas import RowError
from workers.settings import Settings, get_settings


@dataclass
class Submissions:
    """What run-now submitted, through a stand-in for submit_batch."""

    calls: list[tuple[ScheduleSpec, str]] = field(default_factory=list)
    refuse: bool = False

    def submitter(self, client: redis.Redis, settings: Any, store: Any = None) -> Any:
        def submit(spec: ScheduleSpec, batch_id: str) -> SubmitReport:
            self.calls.append((spec, batch_id))
            if self.refuse:
                return SubmitReport(
                    batch_id,
                    0,
                    1,
                    [RowError(2, "prompt", "missing")],
                    False,
                    refused="1 invalid row(s)",
                )
            return SubmitReport(batch_id, 3, 0, [], False)

        return submit


@pytest.fixture
def submissions(monkeypatch: pytest.MonkeyPatch) -> Submissions:
    stub = Submissions()
    monkeypatch.setattr(schedule_tasks, "batch_submitter", stub.submitter)
    return stub


@pytest.fixture
def runner(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.delenv("PRODUCER_SCHEDULES_FILE", raising=False)
    get_settings.cache_clear()
    _mount()
    yield CliRunner(env={"COLUMNS": "200"})
    get_settings.cache_clear()
    # run-now configures logging to the runner's stderr: undo it.
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_producer_handler", False)]:
        root.removeHandler(handler)
    structlog.reset_defaults()


@pytest.fixture
def store(redis_client: redis.Redis, redis_url: str) -> Iterator[ScheduleStore]:
    schedules = ScheduleStore(redis_client, Settings(redis_url=redis_url))
    yield schedules
    schedules.close()


def invoke(runner: CliRunner, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, ["schedules", *args])
    assert result.exit_code == code, result.output
    return result.output


def listed(runner: CliRunner) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in json.loads(invoke(runner, "list", "--json"))}


def test_add_list_show_remove(
    runner: CliRunner, store: ScheduleStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = invoke(
        runner,
        "add",
        "nightly",
        "--pipeline",
        "generate",
        "--csv",
        "p.csv",
        "--cron",
        "0 3 * * *",
        "--max-spend",
        "5",
        "--skip-invalid",
    )
    assert out.startswith("created schedule nightly: cron 0 3 * * * (UTC), next run 20")
    invoke(
        runner,
        "add",
        "often",
        "--pipeline",
        "generate-cover",
        "--csv",
        "s3://b/p.csv",
        "--every",
        "15m",
    )
    rows = listed(runner)
    assert set(rows) == {"nightly", "often"}
    nightly = rows["nightly"]
    assert nightly["csv"] == str(tmp_path / "p.csv")
    assert (nightly["when"], nightly["max_spend"], nightly["skip_invalid"]) == (
        "cron 0 3 * * * (UTC)",
        5.0,
        True,
    )
    assert nightly["next_run"].endswith("T03:00:00+00:00")
    assert (nightly["last_run"], nightly["last_batch_id"]) == (None, None)
    assert store.entry("often") is not None

    table = invoke(runner, "list")
    assert "nightly" in table and "every 15m" in table
    shown = json.loads(invoke(runner, "show", "often", "--json"))
    assert (shown["pipeline"], shown["every"], shown["runs"]) == ("generate-cover", 900, [])

    assert invoke(runner, "remove", "often") == "removed schedule often\n"
    invoke(runner, "remove", "often", code=1)
    invoke(runner, "show", "often", code=1)
    assert set(listed(runner)) == {"nightly"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--cron", "0 3 * * *", "--every", "1h"], "got both"),
        ([], "got neither"),
        (["--cron", "0 3 * *"], "cron: '0 3 * *' has 4 fields"),
        (["--every", "1h", "--pipeline", "nope"], "pipeline: unknown pipeline 'nope'"),
    ],
)
def test_add_refuses_invalid_schedules(runner: CliRunner, args: list[str], expected: str) -> None:
    base = ["add", "bad", "--csv", "/p.csv"]
    if "--pipeline" not in args:
        base += ["--pipeline", "generate"]
    result = runner.invoke(app, ["schedules", *base, *args])
    assert result.exit_code == 2
    assert "schedule 'bad'" in result.output and expected in result.output
    assert listed(runner) == {}


def test_run_now_submits_and_records_the_batch(runner: CliRunner, submissions: Submissions) -> None:
    invoke(
        runner,
        "add",
        "nightly",
        "--pipeline",
        "generate",
        "--csv",
        "/p.csv",
        "--every",
        "1h",
        "--max-spend",
        "2.5",
    )
    result = runner.invoke(app, ["schedules", "run-now", "nightly"])
    assert result.exit_code == 0, result.output
    batch_id = result.stdout.strip()
    assert batch_id.startswith("s-nightly-") and len(batch_id) == len("s-nightly-") + 14
    ((spec, submitted_id),) = submissions.calls
    assert (spec.name, spec.max_spend, submitted_id) == ("nightly", 2.5, batch_id)
    row = listed(runner)["nightly"]
    assert (row["last_batch_id"], row["last_status"]) == (batch_id, "submitted")
    runs = json.loads(invoke(runner, "show", "nightly", "--json"))["runs"]
    assert [(r["origin"], r["accepted"]) for r in runs] == [("run-now", 3)]
    invoke(runner, "run-now", "missing", code=1)


def test_run_now_of_a_refused_csv_fails_with_the_errors(
    runner: CliRunner, submissions: Submissions
) -> None:
    submissions.refuse = True
    invoke(runner, "add", "nightly", "--pipeline", "generate", "--csv", "/p.csv", "--every", "1h")
    result = runner.invoke(app, ["schedules", "run-now", "nightly"])
    assert result.exit_code == 1
    assert "1 invalid row(s)" in result.output and "row 2, prompt: missing" in result.output
    assert listed(runner)["nightly"]["last_status"] == "failed"


def test_run_now_with_the_real_submit_batch(
    runner: CliRunner, redis_client: redis.Redis, tmp_path: Path
) -> None:
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text("prompt,title\nrain on a tin roof,Rain\nwind in the pines,Wind\n")
    bad.write_text("title\nno prompt here\n")
    invoke(runner, "add", "good", "--pipeline", "generate", "--csv", str(good), "--every", "1h")
    invoke(runner, "add", "bad", "--pipeline", "generate", "--csv", str(bad), "--every", "1h")

    result = runner.invoke(app, ["schedules", "run-now", "good"])
    assert result.exit_code == 0, result.output
    batch_id = result.stdout.strip()
    record = BatchState(redis_client).record(batch_id)
    assert record is not None
    assert (record["status"], record["rows_total"]) == ("queued", "2")

    refused = runner.invoke(app, ["schedules", "run-now", "bad"])
    assert refused.exit_code == 1
    assert BatchState(redis_client).record(refused.stdout.strip()) is None
    (run,) = json.loads(invoke(runner, "show", "bad", "--json"))["runs"]
    assert run["status"] == "failed" and "prompt" in " ".join(run["errors"])


def test_sync_from_file_and_from_the_setting(
    runner: CliRunner, store: ScheduleStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoke(runner, "add", "adhoc", "--pipeline", "generate", "--csv", "/p.csv", "--every", "1h")
    path = tmp_path / "schedules.toml"
    path.write_text(
        '[schedules.nightly]\npipeline = "generate"\ncsv = "p.csv"\ncron = "0 3 * * *"\n'
    )
    out = invoke(runner, "sync", "--file", str(path))
    assert out.splitlines() == ["created: nightly", "updated: -", "unchanged: -", "removed: adhoc"]
    assert store.get("nightly") is not None and store.get("adhoc") is None

    invoke(runner, "sync", code=2)  # no file given, none configured
    monkeypatch.setenv("PRODUCER_SCHEDULES_FILE", str(path))
    get_settings.cache_clear()
    assert invoke(runner, "sync").splitlines()[2] == "unchanged: nightly"

    path.write_text('[schedules.nightly]\npipeline = "nope"\ncsv = "p.csv"\nevery = 5\n')
    result = runner.invoke(app, ["schedules", "sync"])
    assert result.exit_code == 2
    assert "schedule 'nightly': pipeline: unknown pipeline 'nope'" in result.output
    spec = store.get("nightly")  # unchanged by a refused file
    assert spec is not None and spec.cron == "0 3 * * *"


def test_commands_need_redis(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL")
    get_settings.cache_clear()
    result = runner.invoke(app, ["schedules", "list"])
    assert result.exit_code == 2 and "REDIS_URL" in result.output
