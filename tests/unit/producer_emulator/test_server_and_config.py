"""EmulatorServer lifecycle, config merging, limit primitives, the CLI mapping, scale."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
import typer
from emulator_fixtures import TOKEN, client_for, fast_config
from pydantic import ValidationError
from typer.testing import CliRunner

import pipelines.cli.emulator as cli_emulator
from producer_emulator import EmulatorConfig, EmulatorServer, create_app
from producer_emulator.config import merge_config
from producer_emulator.limits import InFlight, RateLimiter, retry_after_seconds


def test_server_starts_fast_on_a_free_port_and_stops_cleanly() -> None:
    started = time.monotonic()
    with EmulatorServer(fast_config()) as first, EmulatorServer(fast_config()) as second:
        assert time.monotonic() - started < 1.0
        assert first.url.startswith("http://127.0.0.1:")
        assert first.url != second.url
        assert httpx.get(f"{first.url}/_emulator/counters").status_code == 200
        thread_count = threading.active_count()
    assert threading.active_count() <= thread_count - 2
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{first.url}/_emulator/counters")
    first.stop()  # idempotent


def test_admin_helpers_need_a_running_server() -> None:
    with pytest.raises(RuntimeError):
        EmulatorServer().counters()


def test_stop_does_not_wait_for_a_held_sync_request() -> None:
    emu = EmulatorServer(fast_config(time_scale=1.0)).start()  # a 40 s generation
    replies: list[httpx.Response] = []

    def hold() -> None:
        with client_for(emu, TOKEN) as client:
            replies.append(client.post("/producer/audios", json={"action": "generate"}))

    holder = threading.Thread(target=hold)
    holder.start()
    while emu.counters()["in_flight"] == 0:
        time.sleep(0.01)
    started = time.monotonic()
    emu.stop()
    holder.join(10)
    assert time.monotonic() - started < 1.0
    assert not holder.is_alive()
    [reply] = replies
    assert reply.status_code == 500
    assert reply.json()["error"] == {"code": "api_error", "message": "The emulator was reset."}


def test_create_app_exposes_its_state() -> None:
    app = create_app(EmulatorConfig(tokens=["a"]))
    assert app.state.emulator.config.tokens == ["a"]


def test_thousands_in_flight_are_cheap() -> None:
    config = fast_config(time_scale=1.0, max_concurrency=None)  # nothing finishes
    with EmulatorServer(config) as emu, client_for(emu, TOKEN) as client:
        started = time.monotonic()
        for i in range(2000):
            body = {"action": "generate", "prompt": str(i), "async": True}
            assert client.post("/producer/audios", json=body).status_code == 200
        elapsed = time.monotonic() - started
        counters = emu.counters()
    assert counters["in_flight"] == 2000
    assert elapsed < 20.0


# -- config ----------------------------------------------------------------------------


def test_merge_config_validates_and_merges_faults() -> None:
    base = EmulatorConfig(faults={"task_failure": 0.1})
    merged = merge_config(base, {"time_scale": 0.5, "faults": {"callback_drop": 0.2}})
    assert merged.time_scale == 0.5
    assert (merged.faults.task_failure, merged.faults.callback_drop) == (0.1, 0.2)
    assert base.time_scale == 1.0
    with pytest.raises(ValidationError):
        merge_config(base, {"song_low_s": 300.0})  # above song_high_s
    with pytest.raises(ValidationError):
        merge_config(base, {"faults": {"rules": [{"when": {}, "fault": "nope"}]}})


def test_scaled_waits() -> None:
    assert EmulatorConfig(time_scale=0.01).scaled(120.0) == pytest.approx(1.2)


# -- limit primitives --------------------------------------------------------------------


def test_token_bucket_burst_then_rate() -> None:
    limiter = RateLimiter()
    key = ("t", "poll")
    assert [limiter.take(key, 1.0, 3, now=0.0) for _ in range(3)] == [None, None, None]
    assert limiter.take(key, 1.0, 3, now=0.0) == pytest.approx(1.0)
    assert limiter.take(key, 1.0, 3, now=0.5) == pytest.approx(0.5)
    assert limiter.take(key, 1.0, 3, now=1.0) is None
    assert limiter.take(key, 1.0, 3, now=100.0) is None  # refill is capped at the burst
    assert limiter.take(key, 1.0, 3, now=100.0) is None
    assert limiter.take(key, 1.0, 3, now=100.0) is None
    assert limiter.take(key, 1.0, 3, now=100.0) is not None


def test_in_flight_tracks_per_token_and_time_to_free() -> None:
    flight = InFlight()
    flight.add("a", "1", due=10.0)
    flight.add("a", "2", due=5.0)
    flight.add("b", "3", due=7.0)
    assert (flight.count("a"), flight.total, flight.max_seen) == (2, 3, 3)
    assert flight.seconds_until_free("a", now=4.0) == 1.0
    flight.remove("a", "2")
    flight.remove("a", "2")
    assert (flight.count("a"), flight.total, flight.max_seen) == (1, 2, 3)
    assert retry_after_seconds(0.01) == 1
    assert retry_after_seconds(2.2) == 3


# -- CLI ----------------------------------------------------------------------------------


def test_cli_options_map_onto_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_serve(*, host: str, port: int, config: EmulatorConfig) -> None:
        seen.update(host=host, port=port, config=config)

    monkeypatch.setattr("producer_emulator.serve", fake_serve)
    app = typer.Typer()
    cli_emulator.register(app)
    app.command("noop")(lambda: None)  # keep `emulator` a subcommand
    args = [
        "emulator", "--port", "0", "--token", "a", "--token", "b", "--time-scale", "0.01",
        "--generation-s", "30", "--submit-rate", "2", "--poll-rate", "0",
        "--max-concurrency", "0", "--retry-after", "--sample-rate", "22050", "--seed", "3",
        "--faults-json", '{"rules": [{"when": {"title": "x"}, "fault": "task_failure"}]}',
        "--fault", "api_error_500=0.1",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    config: EmulatorConfig = seen["config"]
    assert seen["port"] == 0
    assert config.tokens == ["a", "b"]
    assert (config.time_scale, config.generation_s, config.submit_rate_per_s) == (0.01, 30.0, 2.0)
    assert (config.poll_rate_per_s, config.max_concurrency) == (None, None)
    assert (config.send_retry_after, config.sample_rate, config.seed) == (True, 22050, 3)
    assert config.faults.api_error_500 == 0.1
    assert config.faults.rules[0].fault == "task_failure"


def test_cli_rejects_a_fault_without_value() -> None:
    with pytest.raises(typer.BadParameter):
        cli_emulator.fault_settings(None, ["api_error_500"])
