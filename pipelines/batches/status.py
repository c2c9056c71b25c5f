"""What ``producer-batch status`` shows: counts per state, throughput, ETA, spend, times.

:func:`batch_status` returns plain data (``--json`` prints it as is);
:func:`render_status` and :func:`render_list` draw it with rich for a terminal.
Throughput is rows finished (done or failed) per minute over the last
:data:`RATE_WINDOW_MIN` minutes of the batch's run; the ETA divides what is left by it.
Nothing here carries a secret: the record holds the pipeline, counts and times only.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import redis
from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from pipelines.batches.settle import settle_pending
from pipelines.batches.state import STATES, BatchState
from pipelines.spend.guard import SpendGuard

RATE_WINDOW_MIN = 5
"""Minutes of history the throughput is measured over."""


def _float(record: dict[str, str], name: str) -> float | None:
    value = record.get(name)
    return None if value in (None, "") else float(value)


def _iso(epoch: float | None) -> str | None:
    return (
        None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
    )


def counts_of(record: dict[str, str]) -> dict[str, int]:
    """Rows per state; pending rows of a cancelled batch count as cancelled."""
    counts = {state: int(record.get(state, "0")) for state in STATES}
    if record.get("status") in ("cancelling", "cancelled"):
        counts["cancelled"] += counts["pending"]
        counts["pending"] = 0
    return counts


def throughput_per_min(per_minute: dict[int, int], record: dict[str, str], now: float) -> float:
    """Rows finished per minute over the last minutes of the run (0 before any)."""
    started = _float(record, "started_at")
    if started is None:
        return 0.0
    end = _float(record, "finished_at") or now
    since = max(started, end - RATE_WINDOW_MIN * 60)
    first_minute = int(since // 60)
    finished = sum(n for minute, n in per_minute.items() if minute >= first_minute)
    span_s = max(end - min(since, first_minute * 60.0), 1.0)
    return finished / span_s * 60.0


def batch_status(
    client: redis.Redis, batch_id: str, *, now: float | None = None
) -> dict[str, Any] | None:
    """The status of one batch as plain data, or None if it does not exist."""
    state = BatchState(client)
    record = state.record(batch_id)
    if record is None:
        return None
    now = time.time() if now is None else now
    counts = counts_of(record)
    rate = throughput_per_min(state.finished_per_minute(batch_id), record, now)
    left = counts["pending"] + counts["running"]
    settle_pending(client, batch_id)  # steps that landed after their row ended count now
    spend = SpendGuard(client).status(batch_id)
    started, finished = _float(record, "started_at"), _float(record, "finished_at")
    return {
        "batch_id": batch_id,
        "pipeline": record.get("pipeline"),
        "status": record.get("status"),
        "paused_reason": record.get("paused_reason"),
        "origin": record.get("origin"),
        "source": record.get("source"),
        "rows": int(record.get("rows_total", "0")),
        "rejected": int(record.get("rejected", "0")),
        "counts": counts,
        "throughput_rows_per_min": round(rate, 2),
        "eta_s": round(left / rate * 60.0, 1) if rate > 0 and left else (0.0 if not left else None),
        "spend": {
            "spent": spend.spent,
            "reserved": spend.reserved,
            "cap": _float(record, "max_spend"),
            "currency": record.get("currency", ""),
        },
        "created_at": _iso(_float(record, "created_at")),
        "started_at": _iso(started),
        "finished_at": _iso(finished),
        "elapsed_s": None if started is None else round((finished or now) - started, 1),
    }


def list_statuses(client: redis.Redis, limit: int = 20) -> list[dict[str, Any]]:
    """The statuses of the newest batches."""
    found = (batch_status(client, b) for b in BatchState(client).batch_ids(limit=limit))
    return [s for s in found if s is not None]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def status_line(status: dict[str, Any]) -> str:
    """One line: status (and pause reason), counts, throughput, ETA."""
    c = status["counts"]
    reason = f" ({status['paused_reason']})" if status.get("paused_reason") else ""
    return (
        f"{status['status']}{reason}: {c['done']} done, {c['failed']} failed, "
        f"{c['running']} running, {c['pending']} pending, {c['cancelled']} cancelled"
        f" | {status['throughput_rows_per_min']:g} rows/min, "
        f"ETA {_duration(status['eta_s'])}"
    )


def render_status(status: dict[str, Any]) -> RenderableType:
    """A progress bar and a table of one batch, for a terminal."""
    c, total = status["counts"], max(status["rows"], 1)
    bar = ProgressBar(total=total, completed=c["done"] + c["failed"] + c["cancelled"], width=50)
    head = Text.assemble(
        (f"{status['batch_id']} ", "bold"),
        f"({status['pipeline']}) ",
        f"{c['done'] + c['failed']}/{status['rows']} rows",
    )
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="dim")
    table.add_column()
    spend = status["spend"]
    cap = "no cap" if spend["cap"] is None else f"cap {spend['cap']:g}"
    for name, value in (
        ("status", status_line(status)),
        (
            "spend",
            f"{spend['spent']:g} spent, {spend['reserved']:g} reserved, {cap} {spend['currency']}",
        ),
        (
            "times",
            f"created {status['created_at']}, started {status['started_at'] or '-'}, "
            f"finished {status['finished_at'] or '-'}, "
            f"elapsed {_duration(status['elapsed_s'])}",
        ),
    ):
        table.add_row(name, value)
    return Group(head, bar, table)


def render_list(statuses: list[dict[str, Any]]) -> Table:
    """A table of batches, newest first (cancelled rows show in the status)."""
    table = Table(title="batches (newest first)")
    table.add_column("batch", no_wrap=True)
    table.add_column("pipeline", overflow="fold")
    table.add_column("status", no_wrap=True)
    for column in ("done", "failed", "running", "/min", "ETA", "spent"):
        table.add_column(column, justify="right")
    for s in statuses:
        c = s["counts"]
        table.add_row(
            s["batch_id"],
            s["pipeline"],
            s["status"],
            f"{c['done']}/{s['rows']}",
            str(c["failed"]),
            str(c["running"]),
            f"{s['throughput_rows_per_min']:g}",
            _duration(s["eta_s"]),
            f"{s['spend']['spent']:g}",
        )
    return table
