"""Inputs the emulator must refuse cleanly (issue 9, items 13 and 16).

Through the real interfaces: the ``producer-batch emulator`` command (typer's
runner, ``serve`` replaced so nothing binds) and HTTP against a running server.
Every refusal is a message and exit 2 on the CLI, a 400 over HTTP, never a
traceback or a 500.
"""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from pipelines import cli_emulator
from producer_emulator import EmulatorConfig

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
