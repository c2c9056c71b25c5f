"""Rows that stopped moving: admitted long ago, nothing in flight, no step finished lately.

Celery's Redis transport can lose a message for good (a worker killed between taking it
off the queue and recording it as unacknowledged), and a feeder can die between
admitting a row and publishing its canvas. Such a row would stay "running" forever and
hold its place in the window. The feeder service looks for them every so often and
lets them be admitted again (a new canvas; the ledger keeps every step paid once).

A row is *stale* when it was admitted more than ``stale_after_s`` ago, none of its steps
is at the provider or reserved (those belong to the poller and the ledger's leases),
and its last finished step is older than ``stale_after_s`` too.
"""

from __future__ import annotations

from typing import Protocol

from pipelines.batches.ledger_reads import ledger_entries, row_step_keys
from pipelines.batches.settle import settle_rows
from pipelines.batches.state import BatchInfo, BatchState, text
from pipelines.constants import BATCH_WINDOW_KEY
from pipelines.spend.prices import PriceTable
from workers.ledger import LedgerEntry, State

__all__ = ["BatchRows", "redis_now", "requeue_stale"]

_SCAN_LIMIT = 200


class BatchRows(Protocol):
    """What the stale check needs of a feeder (:class:`~pipelines.batches.feeder.Feeder`)."""

    state: BatchState
    prices: PriceTable

    def info(self, batch_id: str) -> BatchInfo | None:
        """The batch's unchanging facts (plan ...), None if it does not exist."""
        ...


def redis_now(feeder: BatchRows) -> float:
    """Redis's clock (admissions and the ledger use it too)."""
    seconds, micros = feeder.state.redis.time()
    return float(seconds) + float(micros) / 1e6


def requeue_stale(feeder: BatchRows, stale_after_s: float) -> int:
    """Let stale rows be admitted again; returns how many."""
    now = redis_now(feeder)
    old = feeder.state.redis.zrangebyscore(
        BATCH_WINDOW_KEY, "-inf", now - stale_after_s, start=0, num=_SCAN_LIMIT
    )
    count = 0
    for member in old:
        batch_id, _, row = text(member).rpartition("/")
        if _is_stale(feeder, batch_id, int(row), now - stale_after_s):
            held = feeder.state.defer(batch_id, int(row), 0.0)
            if held is not None:
                settle_rows(feeder.state.redis, batch_id, [held], feeder.prices)
            count += 1
    return count


def _is_stale(feeder: BatchRows, batch_id: str, row: int, before: float) -> bool:
    info = feeder.info(batch_id)
    if info is None:
        return False
    entries = ledger_entries(feeder.state.redis, row_step_keys(batch_id, row, info.plan))
    if any(e is not None and e.state in (State.SUBMITTED, State.RESERVED) for e in entries):
        return False
    return _last_finished(entries) < before


def _last_finished(entries: list[LedgerEntry | None]) -> float:
    return max((e.finished_at or 0.0 for e in entries if e is not None), default=0.0)
