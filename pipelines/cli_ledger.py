"""``producer-batch ledger ...``: placeholder until its issue lands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``ledger`` command family to ``app`` (nothing yet)."""
    del app
