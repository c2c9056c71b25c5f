"""``producer-batch limits show|set|reset`` through typer's CliRunner, against a real Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
import typer
from typer.testing import CliRunner

from pipelines.cli import limits as cli_limits
from workers.ratelimit import Limiter, LimiterDefaults, RedisBackend, token_id_for
from workers.settings import get_settings

SECRET = "sk-cli-secret-token"
TID = token_id_for(SECRET)


@pytest.fixture
def app(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("PRODUCER_API_TOKEN", SECRET)
    monkeypatch.setenv("PRODUCER_SUBMIT_RATE_PER_S", "3")
    get_settings.cache_clear()
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """Test root."""

    cli_limits.register(root)
    yield root
    get_settings.cache_clear()


def run(app: typer.Typer, *args: str) -> str:
    result = CliRunner().invoke(app, ["limits", *args])
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    return result.output


def test_show_reports_settings_as_json(app: typer.Typer) -> None:
    data = json.loads(run(app, "show", "--json"))
    assert data["token_id"] == TID
    assert data["submit"]["ceiling"] == 3
    assert data["poll"]["ceiling"] == 1
    assert data["in_flight"] == 0


def test_set_changes_what_a_worker_sees(app: typer.Typer, redis_client: redis.Redis) -> None:
    out = run(
        app,
        "set",
        "--submit-rate",
        "2",
        "--burst",
        "5",
        "--max-in-flight",
        "20",
        "--poll-rate",
        "0.5",
        "--json",
    )
    data = json.loads(out)
    assert (data["submit"]["ceiling"], data["submit"]["burst"], data["max_in_flight"]) == (2, 5, 20)
    worker = Limiter(RedisBackend(redis_client), defaults=LimiterDefaults())
    assert sum(worker.acquire(TID).granted for _ in range(10)) == 5
    assert worker.acquire(TID).wait_ms > 400
    assert worker.show(TID).poll.ceiling == 0.5


def test_show_prints_a_table(app: typer.Typer) -> None:
    run(app, "set", "--max-in-flight", "4")
    out = run(app, "show")
    assert f"limits of token {TID}" in out
    assert "submit" in out
    assert "poll" in out
    assert "in flight: 0 / 4 (set at runtime)" in out


def test_reset_returns_to_settings(app: typer.Typer) -> None:
    run(app, "set", "--submit-rate", "9", "--rate", "4")
    assert json.loads(run(app, "show", "--json"))["submit"]["rate"] == 4
    run(app, "reset")
    data = json.loads(run(app, "show", "--json"))
    assert (data["submit"]["ceiling"], data["submit"]["rate"]) == (3, 3)


def test_an_explicit_token_id_wins(app: typer.Typer) -> None:
    data = json.loads(run(app, "show", "--json", "--token-id", "abc123"))
    assert data["token_id"] == "abc123"


def test_errors_are_clear(app: typer.Typer, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = CliRunner().invoke(app, ["limits", "set", "--burst", "0"])
    assert bad.exit_code == 2
    assert "positive" in bad.output
    monkeypatch.delenv("PRODUCER_API_TOKEN")
    get_settings.cache_clear()
    missing = CliRunner().invoke(app, ["limits", "show"])
    assert missing.exit_code == 2
    assert "PRODUCER_API_TOKEN" in missing.output
