"""``producer-batch run CSV --pipeline NAME``: a whole batch on this machine, one command.

Starts what is missing (:func:`pipelines.cli.local_stack.local_stack`: embedded Redis unless
``REDIS_URL``, the emulator unless ``PRODUCER_API_TOKEN``, a worker, the poller),
submits the CSV, feeds it from a thread, shows progress, writes the manifest into the
store (``./producer-results/<batch-id>/`` by default, beside the audio, covers and
stems) and prints a summary. Exit 0 only if every row succeeded; 1 if a row failed
or was rejected; 2 if the batch was refused; 130 on Ctrl-C, after stopping feeding
and everything it started (with ``REDIS_URL`` set, ``--resume ID`` carries on later).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipelines.batches.state import FINAL_STATUSES
from pipelines.batches.status import batch_status, status_line
from pipelines.cli._common import fail, settings
from pipelines.cli.batch import (
    PipelineOpt,
    PipelinesFileOpt,
    err,
    finish_submit,
    load_pipeline,
    parse_spend,
)
from workers.logging import configure_logging

_PLAIN_EVERY_S = 5.0


def register(app: typer.Typer) -> None:
    """Add ``run`` to ``app``."""
    app.command("run")(run)


def run(
    csv_path: Annotated[str, typer.Argument(help="CSV file of rows.")],
    pipeline: PipelineOpt,
    batch_id: Annotated[str | None, typer.Option(help="Batch id (default: a new one).")] = None,
    resume: Annotated[str | None, typer.Option(help="Resume this batch (needs REDIS_URL).")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Run the valid rows only.")] = False,
    errors_file: Annotated[Path | None, typer.Option(help="Where rejected rows go.")] = None,
    max_spend: Annotated[str | None, typer.Option(help="Cap for this batch, e.g. '5 USD'.")] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for results (default: PRODUCER_STORAGE_URL, ./producer-results)."
        ),
    ] = None,
    time_scale: Annotated[
        float, typer.Option(help="Emulator speed-up (0.05: 40 s -> 2 s).")
    ] = 0.05,
    concurrency: Annotated[int, typer.Option(min=1, help="Worker threads.")] = 4,
    pipelines: PipelinesFileOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every step.")] = False,
) -> None:
    """Run a CSV batch end to end on this machine; results under ./producer-results/<id>/."""
    from pipelines.cli.local_stack import local_stack

    configure_logging(level="INFO" if verbose else "WARNING")
    config = settings()
    if out is not None:
        config = config.model_copy(update={"storage_url": f"file://{out.resolve()}"})
    spec = load_pipeline(pipeline, pipelines or config.pipelines_file)
    cap = parse_spend(max_spend, config)
    _refuse_resume_on_a_fresh_emulator(config, resume or batch_id)
    with (
        _interrupts(),
        local_stack(config, time_scale=time_scale, concurrency=concurrency) as stack,
    ):
        for name, where in stack.describe().items():
            err.print(f"[dim]{name}:[/] {where}")
        report = _submit(
            stack, spec, csv_path, batch_id or resume, resume is not None, skip_invalid, cap
        )
        finish_submit(
            report,
            spec,
            stack.settings,
            csv_path=csv_path,
            errors_file=errors_file,
            skip_invalid=skip_invalid,
            dry_run=False,
            as_json=False,
        )
        final = _feed_and_watch(stack, report.batch_id)
        written = _write_manifest(stack, report.batch_id)
    _summary(final, written, stack.services.store.url, report.rejected)
    ok = final["counts"]["done"] == final["rows"] and not report.rejected
    raise typer.Exit(0 if ok else 1)


def _refuse_resume_on_a_fresh_emulator(config: Any, batch_id: str | None) -> None:
    """Refuse (exit 2, nothing written) to carry on a batch against a new emulator.

    Without ``PRODUCER_API_TOKEN`` the stack starts an emulator in this process: it has
    never heard of the earlier run's tasks and songs, so their steps would fail
    (``audio_id ... not found``) or wait for ever. Why refuse rather than keep the
    emulator's state: docs/batches.md, "Resuming a local run".
    """
    if config.api_token is not None or not config.redis_url or not batch_id:
        return
    import redis

    from pipelines.batches.state import BatchState

    client = redis.Redis.from_url(config.redis_url)
    try:
        exists = BatchState(client).record(batch_id) is not None
    finally:
        client.close()
    if exists:
        raise fail(
            f"batch {batch_id} exists, but PRODUCER_API_TOKEN is not set, so this run would "
            "start a new local emulator that has never heard of the batch's earlier tasks "
            "and songs (its steps would fail or wait for ever). Resume it against a lasting "
            "API: start `producer-batch emulator` (or use the real API), set "
            "PRODUCER_API_TOKEN and PRODUCER_BASE_URL, and run the same command again; or "
            "start a new batch under a new --batch-id. Nothing was written."
        )


@contextmanager
def _interrupts() -> Iterator[None]:
    """SIGTERM behaves as Ctrl-C; either ends the run with exit 130 after cleanup."""

    def _term(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _term)
    try:
        yield
    except KeyboardInterrupt:
        err.print("[yellow]interrupted: feeding stopped, local services stopped[/yellow]")
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _submit(
    stack: Any,
    spec: Any,
    source: str,
    batch_id: str | None,
    resume: bool,
    skip_invalid: bool,
    cap: float | None,
) -> Any:
    from pipelines.batches.state import BatchState
    from pipelines.batches.submit import submit_batch
    from pipelines.spend.prices import PriceTable

    client = stack.services.redis
    if resume and batch_id and BatchState(client).record(batch_id) is None:
        raise fail(f"no batch {batch_id} to resume (is REDIS_URL the one it ran on?)")
    # A bad batch id (BatchIdError) exits 2 through handle_errors, after the stack stops.
    return submit_batch(
        client,
        source=source,
        pipeline=spec,
        batch_id=batch_id,
        skip_invalid=skip_invalid,
        max_spend=cap,
        store=stack.services.store,
        prices=PriceTable.load(stack.services.settings.prices_file),
    )


def _feed_and_watch(stack: Any, batch_id: str) -> dict[str, Any]:
    """Feed from a thread and show progress until the batch ends; returns its last status."""
    from pipelines.batches.tasks import feeder_for

    feeder = feeder_for(stack.services, stack.app)
    stop = threading.Event()
    thread = threading.Thread(
        target=feeder.run, args=(stop,), kwargs={"idle_sleep_s": 0.2}, name="feeder", daemon=True
    )
    thread.start()
    try:
        return _watch(stack.services.redis, batch_id)
    finally:
        stop.set()
        thread.join(timeout=10)


def _watch(client: Any, batch_id: str) -> dict[str, Any]:
    status = _status(client, batch_id)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[line]}"),
        TimeElapsedColumn(),
    )
    tty = sys.stderr.isatty()
    last_plain = 0.0
    with Progress(*columns, console=err, disable=not tty) as progress:
        task = progress.add_task(batch_id, total=status["rows"], line="")
        while status["status"] not in FINAL_STATUSES:
            time.sleep(0.25)
            status = _status(client, batch_id)
            c = status["counts"]
            progress.update(
                task, completed=c["done"] + c["failed"] + c["cancelled"], line=status_line(status)
            )
            if not tty and time.monotonic() - last_plain > _PLAIN_EVERY_S:
                err.print(status_line(status))
                last_plain = time.monotonic()
    return status


def _status(client: Any, batch_id: str) -> dict[str, Any]:
    found = batch_status(client, batch_id)
    if found is None:
        raise fail(f"batch {batch_id} vanished from Redis")
    return found


def _write_manifest(stack: Any, batch_id: str) -> dict[str, str]:
    from pipelines.batches.manifest import build_manifest, write_manifest

    return write_manifest(
        build_manifest(stack.services.redis, batch_id), None, stack.services.store
    )


def _summary(
    status: dict[str, Any], written: dict[str, str], store_url: str, rejected: int
) -> None:
    c = status["counts"]
    table = Table(title=f"batch {status['batch_id']} ({status['pipeline']}): {status['status']}")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    spend = status["spend"]
    for what, value in (
        ("rows", f"{status['rows']} ({rejected} rejected at submit)"),
        ("done / failed / cancelled", f"{c['done']} / {c['failed']} / {c['cancelled']}"),
        (
            "elapsed",
            f"{status['elapsed_s'] or 0:.1f}s, {status['throughput_rows_per_min']:g} rows/min",
        ),
        ("spent", f"{spend['spent']:g} {spend['currency']}"),
        ("results", f"{store_url}/{status['batch_id']}/"),
        *((name.removeprefix("store:"), where) for name, where in written.items()),
    ):
        table.add_row(what, value)
    Console().print(table)
