"""``producer-batch ledger ...``: inspect the exactly-once submission records.

Every step has one ledger entry (``reserved`` -> ``submitted`` -> ``done`` /
``failed``) keyed by its idempotency key (``batch/row/step``, a caller's key, or
``task/<celery id>``). ``list`` shows many, ``show`` one in full, ``reset-failed``
lets a failed step run again (used by retry-failed).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipelines.cli._common import fail, redis_client, settings
from workers.ledger import Ledger, LedgerEntry

ledger_app = typer.Typer(
    name="ledger", help="Inspect exactly-once submission records.", no_args_is_help=True
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def register(app: typer.Typer) -> None:
    """Add the ``ledger`` command family to ``app``."""
    app.add_typer(ledger_app, name="ledger")


def _ledger() -> Ledger:
    return Ledger(redis_client(settings(), "set REDIS_URL to the workers' Redis"))


def _row(entry: LedgerEntry) -> dict[str, Any]:
    data = asdict(entry)
    data["state"] = entry.state.value
    return data


@ledger_app.command("list")
def list_entries(
    prefix: Annotated[
        str, typer.Option(help="Only keys starting with this (e.g. a batch id).")
    ] = "",
    limit: Annotated[
        int, typer.Option(min=1, help="Show at most this many (a note says if there are more).")
    ] = 50,
    as_json: JsonOption = False,
) -> None:
    """List ledger entries, optionally under a key prefix (at most ``--limit``)."""
    entries = []
    # One more than shown tells whether the list was cut, without counting them all.
    for entry in _ledger().scan(prefix):
        entries.append(entry)
        if len(entries) > limit:
            break
    more = len(entries) > limit
    entries = entries[:limit]
    if more:  # on stderr, so stdout stays a table or one JSON document
        Console(stderr=True).print(
            f"showing the first {limit} entries; more exist (raise --limit to see them)",
            highlight=False,
            soft_wrap=True,
        )
    if as_json:
        typer.echo(json.dumps([_row(e) for e in entries], default=str))
        return
    table = Table(title=f"ledger entries ({len(entries)} shown{', more exist' if more else ''})")
    for column in ("key", "state", "api task", "adopted", "error"):
        table.add_column(column)
    for e in entries:
        error = f"{e.error_code}: {e.error_message}" if e.error_code else ""
        table.add_row(e.key, e.state.value, e.api_task_id or "", "yes" if e.adopted else "", error)
    Console().print(table)


@ledger_app.command("show")
def show(key: str, as_json: JsonOption = False) -> None:
    """Show one entry in full (result included)."""
    entry = _ledger().get(key)
    if entry is None:
        raise fail(f"no ledger entry {key!r}", 1)
    typer.echo(json.dumps(_row(entry), default=str, indent=None if as_json else 2))


@ledger_app.command("reset-failed")
def reset_failed(key: str) -> None:
    """Forget a failed entry so its step may run again (done entries are never reset)."""
    if not _ledger().reset_failed(key):
        raise fail(f"{key!r} is not a failed entry", 1)
    typer.echo(f"reset {key}")
