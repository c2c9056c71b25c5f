"""Inputs the emulator must refuse cleanly (issue 9, items 13 and 16).

Through the real interfaces: the ``producer-batch emulator`` command (typer's
runner, ``serve`` replaced so nothing binds) and HTTP against a running server.
Every refusal is a message and exit 2 on the CLI, a 400 over HTTP, never a
traceback or a 500.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest
import typer
from emulator_fixtures import TOKEN, api, emu, error_of, server
from pydantic import ValidationError
from typer.testing import CliRunner

import pipelines.cli.emulator as cli_emulator
from producer_emulator import EmulatorConfig, EmulatorServer

__all__ = ["api", "emu", "server"]  # fixtures imported for pytest


# -- CLI -----------------------------------------------------------------------------------


def _run(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[Any, list[EmulatorConfig]]:
    served: list[EmulatorConfig] = []

    def fake_serve(*, host: str, port: int, config: EmulatorConfig) -> None:
        served.append(config)

    monkeypatch.setattr("producer_emulator.serve", fake_serve)
    app = typer.Typer()
    cli_emulator.register(app)
    app.command("noop")(lambda: None)  # keep `emulator` a subcommand
    return CliRunner().invoke(app, ["emulator", "--port", "0", *args]), served


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--fault", "nosuch=0.1"], "nosuch"),
        (["--fault", "task_failure=2"], "task_failure"),
        (["--fault", "task_failure=oops"], "task_failure"),
        (["--faults-json", "{bad"], "--faults-json"),
        (["--faults-json", "[1, 2]"], "--faults-json"),
        (["--faults-json", '{"rules": [{"fault": "nosuch"}]}'], "rules"),
        (["--fault", "task_failure=NaN"], "task_failure"),
        (["--time-scale", "nan"], "time_scale"),
        (["--generation-s", "inf"], "generation_s"),
        (["--token", ""], "tokens"),
    ],
)
def test_cli_refuses_bad_settings_with_a_message_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, args: list[str], says: str
) -> None:
    result, served = _run(monkeypatch, *args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # not a traceback
    assert says in result.output
    assert "Traceback" not in result.output
    assert served == []


def test_startup_banner_does_not_print_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    result, served = _run(monkeypatch, "--token", "sekret-one", "--token", "sekret-two")
    assert result.exit_code == 0, result.output
    assert served[0].tokens == ["sekret-one", "sekret-two"]
    assert "sekret" not in result.output
    assert "2 tokens" in result.output


# -- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"tokens": []},
        {"tokens": [""]},
        {"time_scale": math.nan},
        {"generation_s": math.inf},
        {"faults": {"task_failure": math.nan}},
        {"faults": {"callback_delay_s": math.inf}},
    ],
)
def test_config_refuses_no_tokens_and_non_finite_numbers(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        EmulatorConfig(**changes)


def test_admin_config_refuses_no_tokens_and_nan(emu: EmulatorServer) -> None:
    for raw in ('{"tokens": []}', '{"time_scale": NaN}', '{"faults": {"task_failure": NaN}}'):
        reply = httpx.post(
            f"{emu.url}/_emulator/config", content=raw,
            headers={"content-type": "application/json"},
        )  # fmt: skip
        assert reply.status_code == 400, (raw, reply.text)
    assert emu.configure()["tokens"] == [TOKEN, "other-token"]


def test_admin_config_refuses_deeply_nested_json(emu: EmulatorServer) -> None:
    raw = "[" * 100_000 + "]" * 100_000
    reply = httpx.post(f"{emu.url}/_emulator/config", content=raw)
    assert reply.status_code == 400, reply.text


# -- request bodies -------------------------------------------------------------------------


def _gateway_400(reply: httpx.Response) -> str:
    status, code, message = error_of(reply)
    assert (status, code) == (400, "bad_request"), reply.text
    assert "success" not in reply.json()  # the gateway's envelope
    return str(message)


@pytest.mark.parametrize("depth", [100, 100_000])
@pytest.mark.parametrize("endpoint", ["audios", "tasks", "lyrics"])
def test_deeply_nested_body_is_a_gateway_400_not_a_500(
    api: httpx.Client, endpoint: str, depth: int
) -> None:
    raw = '{"action": "generate", "prompt": "x", "deep": ' + "[" * depth + "]" * depth + "}"
    reply = api.post(f"/producer/{endpoint}", content=raw)
    assert "nested" in _gateway_400(reply)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_in_a_body_are_a_gateway_400(api: httpx.Client, constant: str) -> None:
    raw = '{"action": "generate", "prompt": "x", "duration": ' + constant + "}"
    reply = api.post("/producer/audios", content=raw)
    assert "JSON" in _gateway_400(reply)


def test_reasonable_nesting_is_still_accepted(api: httpx.Client) -> None:
    body = {"action": "generate", "prompt": "x", "extra": [[[{"a": [1]}]]]}
    reply = api.post("/producer/audios", content=json.dumps(body))
    assert reply.status_code == 200, reply.text
