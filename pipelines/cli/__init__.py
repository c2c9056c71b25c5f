"""The ``producer-batch`` command line.

Each command family lives in its own module and is mounted here, so this file
stays an index of what the CLI offers.
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
    from pipelines import (
        cli_batch,
        cli_demo,
        cli_emulator,
        cli_ledger,
        cli_limits,
        cli_schedules,
        cli_workers,
    )

    for family in (cli_demo, cli_workers, cli_emulator, cli_limits, cli_ledger, cli_schedules,
                   cli_batch):
        family.register(app)


def main() -> None:
    """Console entry point."""
    _mount()
    app()
