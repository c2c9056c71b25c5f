"""The ``producer-batch`` command line.

Each command family lives in its own module of this package and is mounted here, so
this file stays an index of what the CLI offers; :mod:`pipelines.cli._common` turns
errors into messages and exit codes for all of them.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="producer-batch",
    help="Batch music generation with the Producer API: workers, limits, emulator, batches.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Batch music generation with the Producer API."""


_mounted = False


def _mount() -> None:
    """Attach every command family once (idempotent: tests call it too)."""
    global _mounted
    if _mounted:
        return
    _mounted = True
    # Imported here so `producer-batch --help` stays fast and an optional family
    # that fails to import names itself in the error.
    from pipelines.cli import (
        batch,
        demo,
        emulator,
        ledger,
        limits,
        run,
        schedules,
        services,
    )
    from pipelines.cli._common import guard_all

    for family in (demo, services, emulator, limits, ledger, schedules, batch, run):
        family.register(app)
    guard_all(app)


def main() -> None:
    """Console entry point."""
    _mount()
    app()
