"""``producer-batch submit|status|results|cancel|retry-failed|feeder`` (and ``run``).

These talk to the fleet's Redis (``REDIS_URL``): ``submit`` validates a CSV and
records the batch, the ``feeder`` service (and every worker finishing a row) feeds
it to the workers; the rest read or steer batches. ``run`` (in
:mod:`pipelines.cli.run`) does all of it on one machine in one command.
Exit codes: 0 ok, 1 the batch had failed rows (``run``), 2 refused or bad usage.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Annotated, Any

import redis
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from pipelines.batches.cancel import cancel_batch
from pipelines.batches.failures import retry_failed
from pipelines.batches.manifest import csv_safe
from pipelines.batches.state import FINAL_STATUSES, BatchState
from pipelines.batches.status import batch_status, list_statuses, render_list, render_status
from pipelines.batches.submit import SubmitReport, check_csv, submit_batch
from pipelines.cli._common import fail, settings
from pipelines.cli._common import redis_client as open_redis
from pipelines.specs.loader import get_pipeline
from pipelines.specs.spec import PipelineSpec
from pipelines.spend.estimate import estimate
from pipelines.spend.prices import PriceTable
from workers.settings import Settings

err = Console(stderr=True)
REPORT_LINES = 50
"""Problems printed on the terminal; the errors file has them all."""

PipelineOpt = Annotated[str, typer.Option("--pipeline", "-p", help="Pipeline name.")]
PipelinesFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--pipelines", help="Pipelines file (default: built-ins + PRODUCER_PIPELINES_FILE)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def register(app: typer.Typer) -> None:
    """Add the batch commands to ``app``."""
    app.command("submit")(submit)
    app.command("status")(status)
    app.command("results")(results)
    app.command("cancel")(cancel)
    app.command("retry-failed")(retry_failed_cmd)
    app.command("feeder")(feeder)


def redis_client(config: Settings) -> redis.Redis:
    """The fleet's Redis; exits with a clear message when REDIS_URL is unset."""
    return open_redis(
        config,
        "REDIS_URL is not set: batches live in the fleet's Redis "
        "(or use `producer-batch run`, which starts its own)",
    )


def load_pipeline(name: str, path: Path | None) -> PipelineSpec:
    """The named pipeline (an unknown name or a bad file exits 2 through handle_errors)."""
    return get_pipeline(name, path, max_steps=settings().max_steps_per_row)


def parse_spend(value: str | None, config: Settings) -> float | None:
    """A cap such as ``25``, ``"25 USD"`` or ``"250 credits"`` in the price table's currency."""
    if value is None:
        return None
    return PriceTable.load(config.prices_file).parse_cap(value)


def print_report(report: SubmitReport) -> None:
    """The validation report: every problem (row, column, message), then duplicates."""
    if report.errors:
        where = f"{report.rejected} row(s)" if report.rejected else "the file"
        table = Table(title=f"{len(report.errors)} problem(s) in {where}")
        for column in ("row", "column", "problem"):
            table.add_column(column, overflow="fold")
        for e in report.errors[:REPORT_LINES]:
            table.add_row("file" if e.row == 0 else str(e.row), e.column or "-", e.message)
        err.print(table)
        if len(report.errors) > REPORT_LINES:
            err.print(f"... and {len(report.errors) - REPORT_LINES} more (see the errors file)")
    for w in report.warnings[:5]:
        err.print(f"[yellow]warning:[/yellow] row {w.row}: {w.message}")
    if len(report.warnings) > 5:
        err.print(f"[yellow]warning:[/yellow] {len(report.warnings)} duplicate rows in all")


def write_errors_file(report: SubmitReport, path: Path) -> None:
    """The rejected rows with their problems and original cells, as CSV."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "line", "column", "message", *map(csv_safe, report.columns)])
        for rejected in report.rejected_rows:
            # The user's cells go back as given, except that no formula is left to run.
            cells = [csv_safe(rejected.cells.get(c, "")) for c in report.columns]
            for e in rejected.errors:
                line = "" if rejected.line is None else rejected.line
                writer.writerow(
                    [e.row, line, csv_safe(e.column or ""), csv_safe(e.message), *cells]
                )


def submit(
    csv_path: Annotated[str, typer.Argument(help="CSV file (or a URL in the store).")],
    pipeline: PipelineOpt,
    batch_id: Annotated[str | None, typer.Option(help="Batch id (default: a new one).")] = None,
    resume: Annotated[str | None, typer.Option(help="Resume this existing batch.")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Submit the valid rows only.")] = False,
    errors_file: Annotated[Path | None, typer.Option(help="Where rejected rows go.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Validate and estimate; submit nothing.")] = False,
    max_spend: Annotated[str | None, typer.Option(help="Batch cap, e.g. '25 USD'.")] = None,
    pipelines: PipelinesFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate a CSV and queue it as a batch (or resume one); the feeder runs it."""
    config = settings()
    spec = load_pipeline(pipeline, pipelines or config.pipelines_file)
    report = _submit_or_check(
        csv_path,
        spec,
        config,
        batch_id=resume or batch_id,
        resume=resume is not None,
        skip_invalid=skip_invalid,
        max_spend=parse_spend(max_spend, config),
        dry_run=dry_run,
    )
    finish_submit(
        report,
        spec,
        config,
        csv_path=csv_path,
        errors_file=errors_file,
        skip_invalid=skip_invalid,
        dry_run=dry_run,
        as_json=as_json,
    )


def _submit_or_check(
    source: str,
    spec: PipelineSpec,
    config: Settings,
    *,
    batch_id: str | None,
    resume: bool,
    skip_invalid: bool,
    max_spend: float | None,
    dry_run: bool,
) -> SubmitReport:
    if dry_run:
        return check_csv(source, spec, batch_id=batch_id, skip_invalid=skip_invalid)[0]
    client = redis_client(config)
    if resume and batch_id and BatchState(client).record(batch_id) is None:
        raise fail(f"no batch {batch_id} to resume")
    return submit_batch(
        client,
        source=source,
        pipeline=spec,
        batch_id=batch_id,
        skip_invalid=skip_invalid,
        max_spend=max_spend,
        prices=PriceTable.load(config.prices_file),
    )


def finish_submit(
    report: SubmitReport,
    spec: PipelineSpec,
    config: Settings,
    *,
    csv_path: str,
    errors_file: Path | None,
    skip_invalid: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Print the report (and estimate), write the errors file; exit 2 when refused."""
    print_report(report)
    if report.rejected_rows and (skip_invalid or errors_file is not None):
        path = errors_file or Path(f"{Path(csv_path).stem}.errors.csv")
        write_errors_file(report, path)
        err.print(f"rejected rows written to {path}")
    if report.refused is not None:
        raise fail(f"nothing submitted: {report.refused}")
    rows = report.accepted
    if dry_run:
        _print_estimate(spec, rows, config, as_json)
        return
    summary = {
        "batch_id": report.batch_id,
        "accepted": rows,
        "rejected": report.rejected,
        "resumed": report.resumed,
        "status": report.status,
    }
    if as_json:
        typer.echo(json.dumps(summary))
        return
    verb = "resumed" if report.resumed else "queued"
    typer.echo(
        f"batch {report.batch_id} {verb}: {rows} rows ({report.rejected} rejected), "
        f"status {report.status}"
    )


def _print_estimate(spec: PipelineSpec, rows: int, config: Settings, as_json: bool) -> None:
    est = estimate(spec, rows, PriceTable.load(config.prices_file))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "rows": rows,
                    "calls_per_step": est.calls_per_step,
                    "calls": est.calls,
                    "cost": est.cost,
                    "currency": est.currency,
                }
            )
        )
        return
    table = Table(title=f"dry run: {spec.name}, nothing submitted")
    for column in ("step", "action", "calls", "unit price", "cost"):
        table.add_column(column, justify="left" if column in ("step", "action") else "right")
    for line in est.table_rows():
        table.add_row(*line)
    Console().print(table)
    typer.echo(est.summary())


def status(
    batch_id: Annotated[str | None, typer.Argument(help="Batch id (default: all).")] = None,
    as_json: JsonOpt = False,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow until it ends.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 1.0,
) -> None:
    """Counts per state, throughput, ETA and spend of a batch (or of the newest batches)."""
    client = redis_client(settings())

    def snapshot() -> Any:
        if batch_id is None:
            return list_statuses(client)
        found = batch_status(client, batch_id)
        if found is None:
            raise fail(f"no batch {batch_id}")
        return found

    if not watch:
        show_status(snapshot(), as_json)
        return
    follow(snapshot, as_json, interval)


def show_status(data: Any, as_json: bool) -> None:
    """Print one status snapshot (a batch's dict or a list of them)."""
    if as_json:
        typer.echo(json.dumps(data))
    else:
        Console().print(render_list(data) if isinstance(data, list) else render_status(data))


def follow(snapshot: Any, as_json: bool, interval: float) -> None:
    """Refresh until the batch ends (JSON: one line per refresh); Ctrl-C stops (exit 130)."""

    def ended(data: Any) -> bool:
        return isinstance(data, dict) and data["status"] in FINAL_STATUSES

    if as_json:
        while not ended(data := snapshot()):
            typer.echo(json.dumps(data))
            time.sleep(interval)
        typer.echo(json.dumps(data))
        return
    data = snapshot()
    with Live(
        render_list(data) if isinstance(data, list) else render_status(data),
        console=Console(),
        auto_refresh=False,
    ) as live:
        while not ended(data):
            time.sleep(interval)
            data = snapshot()
            live.update(
                render_list(data) if isinstance(data, list) else render_status(data), refresh=True
            )


def results(
    batch_id: Annotated[str, typer.Argument(help="Batch id.")],
    out: Annotated[Path | None, typer.Option(help="Local folder (default ./results-<id>).")] = None,
    store: Annotated[bool, typer.Option(help="Also write into the store once ended.")] = True,
) -> None:
    """Write the manifest (JSONL, CSV) and errors file locally and into the store."""
    from pipelines.batches.manifest import build_manifest, write_manifest
    from workers.storage import ArtifactStore

    config = settings()
    try:
        manifest = build_manifest(redis_client(config), batch_id)
    except KeyError:
        raise fail(f"no batch {batch_id}") from None
    target = ArtifactStore.from_settings(config) if store else None
    written = write_manifest(manifest, out or Path(f"results-{batch_id}"), target)
    for name, where in written.items():
        typer.echo(f"{name}: {where}")
    if not manifest.final:
        err.print(
            f"[yellow]batch {batch_id} is {manifest.status}: partial results, "
            "not written into the store yet[/yellow]"
        )
    typer.echo(f"{len(manifest.lines)} steps, {len(manifest.errors)} failed rows")


def cancel(
    batch_id: Annotated[str, typer.Argument(help="Batch id.")],
    abandon: Annotated[bool, typer.Option(help="Also drop the rows in flight now.")] = False,
) -> None:
    """Stop feeding a batch; rows in flight finish (or with --abandon are dropped)."""
    from pipelines.app import app

    try:
        config = settings()
        new_status = cancel_batch(
            redis_client(config),
            app,
            batch_id,
            abandon=abandon,
            prices=PriceTable.load(config.prices_file),
        )
    except KeyError:
        raise fail(f"no batch {batch_id}") from None
    typer.echo(f"batch {batch_id}: {new_status}")


def retry_failed_cmd(batch_id: Annotated[str, typer.Argument(help="Batch id.")]) -> None:
    """Run the failed rows again (new attempt; steps already done are not paid again)."""
    try:
        count = retry_failed(redis_client(settings()), batch_id)
    except KeyError:
        raise fail(f"no batch {batch_id}") from None
    typer.echo(f"batch {batch_id}: {count} failed row(s) queued again")


def feeder(
    window: Annotated[
        int | None,
        typer.Option(
            min=0, help="Rows in flight for the whole fleet (0: back to the in-flight cap)."
        ),
    ] = None,
    global_max_spend: Annotated[
        str | None, typer.Option(help="Fleet-wide spend cap, e.g. '100 USD' (kept in Redis).")
    ] = None,
) -> None:
    """Feed batch rows to the workers as capacity allows (run one or more)."""
    from pipelines.app import app
    from pipelines.batches.tasks import feeder_for
    from pipelines.cli.services import _services, stop_on_signals

    svc = _services()
    feed = feeder_for(svc, app)
    if window is not None:
        feed.state.set_window(window or None)
    if global_max_spend is not None:
        feed.guard.set_global_cap(parse_spend(global_max_spend, svc.settings))
    stop = stop_on_signals()
    try:
        # A row silent for two visibility timeouts lost its message (see pipelines.batches.stale).
        feed.run(stop, stale_after_s=2.0 * svc.settings.visibility_timeout_s)
    finally:
        svc.close()
