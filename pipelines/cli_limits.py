"""``producer-batch limits ...``: placeholder until its issue lands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``limits`` command family to ``app`` (nothing yet)."""
    del app
