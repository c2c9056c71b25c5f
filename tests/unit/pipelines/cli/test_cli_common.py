"""One place turns CLI errors into messages and exit codes (pipelines/cli/_common.py)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from pipelines.cli import _mount, app
from pipelines.cli._common import ERROR_EXIT_CODES, fail, guard_all, guarded, handle_errors
from pipelines.schedules.spec import ScheduleConfigError
from pipelines.specs.spec import UnknownPipelineError
from workers.runtime import ConfigurationError


def test_fail_prints_the_message_unwrapped_and_returns_the_exit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    message = "a [bracketed] message " + "long " * 30
    exit_ = fail(message)
    assert isinstance(exit_, typer.Exit) and exit_.exit_code == 2
    assert fail("x", 1).exit_code == 1
    assert f"error: {message}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "error",
    [
        ConfigurationError("no token"),
        ScheduleConfigError("bad cron"),
        UnknownPipelineError("x", ["generate"]),
    ],
)
def test_handle_errors_turns_domain_errors_into_exit_2(
    error: Exception, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as exited, handle_errors():
        raise error
    assert exited.value.exit_code == ERROR_EXIT_CODES[type(error)] == 2
    assert f"error: {error}" in capsys.readouterr().err


def test_handle_errors_lets_other_errors_through_and_turns_ctrl_c_into_130() -> None:
    with pytest.raises(ZeroDivisionError), handle_errors():
        raise ZeroDivisionError
    with pytest.raises(typer.Exit) as exited, handle_errors():
        raise KeyboardInterrupt
    assert exited.value.exit_code == 130


def test_every_command_and_subcommand_is_guarded_once() -> None:
    _mount()
    guard_all(app)  # a second pass wraps nothing twice

    def commands(typer_app: typer.Typer) -> list[object]:
        found: list[object] = [c.callback for c in typer_app.registered_commands]
        for group in typer_app.registered_groups:
            assert group.typer_instance is not None
            found += commands(group.typer_instance)
        return found

    callbacks = commands(app)
    assert len(callbacks) > 15
    for callback in callbacks:
        inner = getattr(callback, "__wrapped__", None)
        assert inner is not None and not hasattr(inner, "__wrapped__"), callback


def test_a_guarded_command_keeps_its_signature_for_typer() -> None:
    def hello(name: str, loud: bool = False) -> None:
        """Say hello."""
        raise ScheduleConfigError(f"{name}: no")

    demo = typer.Typer()
    demo.command()(guarded(hello))
    result = CliRunner().invoke(demo, ["bob"])
    assert result.exit_code == 2
    assert "error: bob: no" in result.output


def test_an_unknown_pipeline_exits_2_with_the_message() -> None:
    _mount()
    result = CliRunner().invoke(
        app, ["submit", "rows.csv", "--pipeline", "no-such-pipeline", "--dry-run"]
    )
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "no-such-pipeline" in result.output
