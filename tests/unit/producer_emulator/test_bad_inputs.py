"""Inputs the emulator must refuse cleanly (issue 9, items 13 and 16).

Through the real interfaces: the ``producer-batch emulator`` command (typer's
runner, ``serve`` replaced so nothing binds) and HTTP against a running server.
Every refusal is a message and exit 2 on the CLI, a 400 over HTTP, never a
traceback or a 500.
"""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest
import typer
from emulator_fixtures import TOKEN, emu, server
from pydantic import ValidationError
from typer.testing import CliRunner

from pipelines import cli_emulator
from producer_emulator import EmulatorConfig, EmulatorServer

__all__ = ["emu", "server"]  # fixtures imported for pytest

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
