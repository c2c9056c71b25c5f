"""``producer-batch demo``: one song, extended and split into stems, on this machine.

With no Redis, no token and no Docker it starts everything it needs (embedded
Redis, the emulator, a worker and the poller), runs the chain
``generate -> extend -> stems`` through the real Celery tasks, and leaves the
audio, cover, stems and metadata under ``--out``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from celery import chain
from rich.console import Console
from rich.table import Table

from pipelines.cli._common import settings
from workers.logging import configure_logging

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to ``app``."""
    app.command("demo")(demo)


def demo(
    prompt: str = typer.Option("a warm lo-fi beat with soft rain", help="What the song is about."),
    out: Path = typer.Option(Path("producer-results"), help="Folder the files are written to."),
    time_scale: float = typer.Option(0.05, help="Emulator speed-up (0.05: a 40 s song takes 2 s)."),
    timeout_s: float = typer.Option(300.0, help="Give up after this many seconds."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every step and poll."),
) -> None:
    """Generate, extend and split one song through the workers; print where the files are."""
    from pipelines.cli.local_stack import local_stack
    from workers.tasks.audios import extend, generate, stems

    configure_logging(level="INFO" if verbose else "WARNING")
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = settings().model_copy(update={"storage_url": f"file://{out}"})
    with local_stack(config, time_scale=time_scale) as stack:
        for name, where in stack.describe().items():
            console.print(f"[dim]{name}:[/] {where}")
        started = time.monotonic()
        result = chain(generate.s(params={"prompt": prompt}), extend.s(), stems.s()).apply_async()
        with console.status("generate -> extend -> stems ...") as status:
            while not result.ready() and not _any_failed(result):
                if time.monotonic() - started > timeout_s:
                    raise typer.Exit(_fail(f"no result after {timeout_s:.0f}s"))
                status.update(f"generate -> extend -> stems ... {_progress(result)}")
                time.sleep(0.2)
        failed = next(
            (r for r in (result.parent.parent, result.parent, result) if r.failed()), None
        )
        if failed is not None:
            raise typer.Exit(_fail(str(failed.result)))
        # Results are final here; .get() would refuse to run beside an in-process worker.
        steps = [result.parent.parent.result, result.parent.result, result.result]
    _print_files(steps, out, time.monotonic() - started)


def _any_failed(result: Any) -> bool:
    # A chain whose middle step fails never settles its last result: watch them all.
    return bool(result.parent.failed() or result.parent.parent.failed())


def _progress(result: Any) -> str:
    states = [result.parent.parent.state, result.parent.state, result.state]
    return " / ".join(s.lower() for s in states)


def _fail(message: str) -> int:
    console.print(f"[red]demo failed:[/] {message}")
    return 1


def _print_files(steps: list[dict[str, Any]], out: Path, elapsed_s: float) -> None:
    table = Table(title=f"Stored under {out} in {elapsed_s:.1f}s")
    for column in ("step", "kind", "file", "bytes", "sha256"):
        table.add_column(column)
    for step in steps:
        for art in step["artifacts"]:
            table.add_row(
                step["action"], art["kind"], art["key"], str(art["size"]), art["sha256"][:12]
            )
    Console().print(table)
