"""``producer-batch schedules ...``: scheduled batches in Redis, fired by celery beat.

``list`` and ``show`` read them, ``add`` / ``remove`` change one, ``sync`` makes Redis
match a TOML file (``--file`` or ``PRODUCER_SCHEDULES_FILE``), ``run-now`` submits a
schedule's batch at once. See ``docs/schedules.md``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipelines.cli._common import fail, redis_client, settings
from pipelines.schedules import tasks as schedule_tasks
from pipelines.schedules.spec import (
    ScheduleSpec,
    build_spec,
    resolve_csv,
    validate_pipelines,
)
from pipelines.schedules.store import RunRecord, ScheduleStore, sync_file
from pipelines.schedules.tasks import fire_schedule
from workers.logging import configure_logging
from workers.settings import Settings
from workers.storage import ArtifactStore

schedules_app = typer.Typer(
    name="schedules", help="Scheduled batches (celery beat + redbeat).", no_args_is_help=True
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
_RUNS_SHOWN = 10


def register(app: typer.Typer) -> None:
    """Add the ``schedules`` command family to ``app``."""
    app.add_typer(schedules_app, name="schedules")


@contextmanager
def _store(config: Settings) -> Iterator[ScheduleStore]:
    client = redis_client(config, "set REDIS_URL to the workers' Redis")
    store = ScheduleStore(client, config)
    try:
        yield store
    finally:
        store.close()
        client.close()


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


def _summary(store: ScheduleStore, spec: ScheduleSpec) -> dict[str, Any]:
    state = store.state(spec.name)
    last = state.last_run if state is not None else None
    return {
        **spec.model_dump(),
        "when": spec.when,
        "next_run": _iso(store.next_run(spec)),
        "last_run": _iso(last.fired_at) if last else None,
        "last_batch_id": last.batch_id if last else None,
        "last_status": last.status if last else None,
    }


@schedules_app.command("list")
def list_schedules(as_json: JsonOption = False) -> None:
    """List schedules: what, when, next run, last run and its batch."""
    with _store(settings()) as store:
        rows = [_summary(store, spec) for spec in store.specs()]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table(title=f"schedules ({len(rows)})")
    columns = (
        "name",
        "pipeline",
        "csv",
        "when",
        "next_run",
        "last_run",
        "last_batch_id",
        "last_status",
    )
    for column in columns:
        table.add_column(column.replace("_", " "))
    for row in rows:
        next_run = row["next_run"] or ("disabled" if not row["enabled"] else "never")
        table.add_row(*(str(next_run if c == "next_run" else row[c] or "") for c in columns))
    Console().print(table)


@schedules_app.command("show")
def show(name: str, as_json: JsonOption = False) -> None:
    """Show one schedule and its latest runs (with each run's errors)."""
    with _store(settings()) as store:
        spec = store.get(name)
        if spec is None:
            raise fail(f"no schedule {name!r}", 1)
        data = {
            **_summary(store, spec),
            "runs": [run.model_dump(mode="json") for run in store.runs(name, _RUNS_SHOWN)],
        }
    typer.echo(json.dumps(data, indent=None if as_json else 2))


@schedules_app.command("add")
def add(
    name: str,
    pipeline: Annotated[str, typer.Option(help="Pipeline to run (see pipelines.toml).")],
    csv: Annotated[str, typer.Option(help="CSV of rows: a local path or a storage URL.")],
    cron: Annotated[str | None, typer.Option(help='Crontab, e.g. "0 3 * * *".')] = None,
    every: Annotated[str | None, typer.Option(help="Interval: 30, 90s, 15m, 1h, 1d.")] = None,
    timezone: Annotated[str, typer.Option(help="Timezone of --cron (IANA name).")] = "UTC",
    max_spend: Annotated[float | None, typer.Option(help="Spend cap of each batch.")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Submit the valid rows of a CSV.")] = False,
    disabled: Annotated[bool, typer.Option(help="Store it without firing.")] = False,
) -> None:
    """Create or replace a schedule (a later `sync` removes it unless the file has it)."""
    values = {
        "name": name,
        "pipeline": pipeline,
        "csv": resolve_csv(csv, Path.cwd()),
        "cron": cron,
        "every": every,
        "timezone": timezone,
        "max_spend": max_spend,
        "skip_invalid": skip_invalid,
        "enabled": not disabled,
    }
    # An invalid schedule (ScheduleConfigError) exits 2 through handle_errors.
    spec = build_spec(**values)
    config = settings()
    validate_pipelines([spec], config.pipelines_file, max_steps=config.max_steps_per_row)
    with _store(config) as store:
        action = store.put(spec)
        next_run = _iso(store.next_run(spec)) or "-"
    typer.echo(f"{action} schedule {name}: {spec.when}, next run {next_run}")


@schedules_app.command("remove")
def remove(name: str) -> None:
    """Delete a schedule, its beat entry and its run history (batches stay)."""
    with _store(settings()) as store:
        if not store.remove(name):
            raise fail(f"no schedule {name!r}", 1)
    typer.echo(f"removed schedule {name}")


@schedules_app.command("run-now")
def run_now(name: str) -> None:
    """Submit the schedule's batch now; prints the batch id (exit 1 if it was refused)."""
    # Logs go to stderr (warnings only): stdout carries just the batch id, for scripts.
    config = settings()
    configure_logging(json=config.log_json, level="WARNING")
    with _store(config) as store:
        if store.get(name) is None:
            raise fail(f"no schedule {name!r}", 1)
        # A CSV given as a storage URL is read from the configured artifact store.
        artifacts = ArtifactStore.from_settings(config)
        run = fire_schedule(
            store,
            name,
            fired_at=datetime.now(UTC),
            origin="run-now",
            submit=schedule_tasks.batch_submitter(store.redis, config, artifacts),
        )
    if run is None:
        raise fail(f"schedule {name!r} was removed meanwhile", 1)
    _report_run(run)


def _report_run(run: RunRecord) -> None:
    typer.echo(run.batch_id)
    if run.status == "failed":
        raise fail("the batch was refused:\n" + "\n".join(run.errors), 1)
    Console(stderr=True).print(
        f"{run.status}: {run.accepted} rows accepted, {run.rejected} rejected", highlight=False
    )


@schedules_app.command("sync")
def sync(
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Schedules TOML (default: PRODUCER_SCHEDULES_FILE)."),
    ] = None,
) -> None:
    """Make Redis hold exactly the file's schedules (create, update, remove)."""
    config = settings()
    path = file or (Path(p) if (p := config.schedules_file) else None)
    if path is None:
        raise fail("give --file or set PRODUCER_SCHEDULES_FILE")
    with _store(config) as store:
        report = sync_file(store, path, pipelines_file=config.pipelines_file)
    for action in ("created", "updated", "unchanged", "removed"):
        names = getattr(report, action)
        typer.echo(f"{action}: {', '.join(names) if names else '-'}")
