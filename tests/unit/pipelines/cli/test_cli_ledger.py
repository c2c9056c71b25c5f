"""``producer-batch ledger`` through typer's runner against real Redis."""

from __future__ import annotations

import json

import pytest
import redis
from typer.testing import CliRunner

from pipelines.cli import _mount, app
from workers.ledger import Ledger


@pytest.fixture
def runner(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    from workers.settings import get_settings

    monkeypatch.setenv("REDIS_URL", redis_url)
    get_settings.cache_clear()
    _mount()
    yield CliRunner()
    get_settings.cache_clear()


def test_list_show_and_reset_failed(runner: CliRunner, redis_client: redis.Redis) -> None:
    ledger = Ledger(redis_client)
    ledger.reserve("b1/1/generate", fingerprint="f1", owner="o")
    ledger.mark_submitted("b1/1/generate", api_task_id="api-1")
    ledger.reserve("b1/2/generate", fingerprint="f2", owner="o")
    ledger.mark_failed("b1/2/generate", code="forbidden", message="moderated")

    listed = runner.invoke(app, ["ledger", "list", "--prefix", "b1/", "--json"])
    assert listed.exit_code == 0, listed.output
    states = {row["key"]: row["state"] for row in json.loads(listed.output)}
    assert states == {"b1/1/generate": "submitted", "b1/2/generate": "failed"}

    shown = runner.invoke(app, ["ledger", "show", "b1/1/generate", "--json"])
    assert json.loads(shown.output)["api_task_id"] == "api-1"
    assert runner.invoke(app, ["ledger", "show", "nope"]).exit_code == 1

    assert runner.invoke(app, ["ledger", "reset-failed", "b1/1/generate"]).exit_code == 1
    assert runner.invoke(app, ["ledger", "reset-failed", "b1/2/generate"]).exit_code == 0
    assert ledger.get("b1/2/generate") is None
