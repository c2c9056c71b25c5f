"""``producer-batch emulator``: run the local twin of the Producer API."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``emulator`` command to ``app``."""
    app.command("emulator")(emulator)


def emulator(
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(8787, help="Port to bind (0 picks a free one)."),
) -> None:
    """Serve the Producer API emulator until interrupted."""
    from producer_client.emulator import serve  # type: ignore[attr-defined]

    serve(host=host, port=port)
