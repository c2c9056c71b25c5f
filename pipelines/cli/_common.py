"""What every ``producer-batch`` command shares: settings, Redis, errors and exits.

Errors become messages and exit codes in one place: :func:`handle_errors` maps each
domain error a command may let through to its exit code (the message is the error's
own text), and :func:`fail` is the one way a command stops with a message of its own.
``_mount`` wraps every command in :func:`handle_errors`. Exit codes: 0 ok, 1 the thing
asked for failed or does not exist, 2 refused input or configuration, 130 interrupted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import redis
import typer
from rich.console import Console
from rich.markup import escape

from pipelines.batches.submit import BatchIdError
from pipelines.schedules.spec import ScheduleConfigError
from pipelines.specs.spec import PipelineSpecError, UnknownPipelineError
from pipelines.spend.prices import PriceTableError
from workers.runtime import ConfigurationError
from workers.settings import Settings, get_settings

__all__ = ["ERROR_EXIT_CODES", "fail", "guarded", "handle_errors", "redis_client", "settings"]

ERROR_EXIT_CODES: dict[type[Exception], int] = {
    BatchIdError: 2,
    ConfigurationError: 2,
    PipelineSpecError: 2,
    UnknownPipelineError: 2,
    PriceTableError: 2,
    ScheduleConfigError: 2,
}
"""Domain error -> exit code; the message printed is ``str(error)``."""

_F = TypeVar("_F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: <message>`` on stderr and return the exit to raise (``raise fail(...)``)."""
    # No wrapping and no markup: scripts and tests read the message as written.
    Console(stderr=True).print(
        f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False
    )
    return typer.Exit(code)


@contextmanager
def handle_errors() -> Iterator[None]:
    """Turn a domain error of :data:`ERROR_EXIT_CODES` into its message and exit code.

    Ctrl-C ends the command with exit 130 and no traceback.
    """
    try:
        yield
    except tuple(ERROR_EXIT_CODES) as exc:
        code = next(c for kind, c in ERROR_EXIT_CODES.items() if isinstance(exc, kind))
        raise fail(str(exc), code) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def guarded(command: _F) -> _F:
    """``command`` run inside :func:`handle_errors` (typer still sees its signature)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        with handle_errors():
            return command(*args, **kwargs)

    return run  # type: ignore[return-value]  # wraps keeps the signature typer reads


def guard_all(app: typer.Typer) -> None:
    """Wrap every command of ``app`` and of its sub-apps in :func:`handle_errors` (once)."""
    for info in app.registered_commands:
        if info.callback is not None and not hasattr(info.callback, "__wrapped__"):
            info.callback = guarded(info.callback)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            guard_all(group.typer_instance)


def settings() -> Settings:
    """The settings of this command, read from the environment once (cached)."""
    return get_settings()


def redis_client(config: Settings, missing: str) -> redis.Redis:
    """The fleet's Redis; exits 2 with ``missing`` when REDIS_URL is unset."""
    if not config.redis_url:
        raise fail(missing)
    return redis.Redis.from_url(config.redis_url)
