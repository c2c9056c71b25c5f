"""Spend settlement of rows that ended: pay what the ledger says succeeded, release the rest.

A row reserved its estimated cost when it was admitted (:mod:`pipelines.spend.guard`).
When the admission ends (done, failed, cancelled, deferred, found stale), its hold is
settled with the price of the steps that succeeded since the admission (the provider
bills those), or released when none did.
"""

from __future__ import annotations

import redis

from pipelines.batches.ledger_reads import ledger_entries, row_step_keys
from pipelines.batches.state import BatchInfo, BatchState, Held
from pipelines.spend.guard import SpendGuard
from pipelines.spend.prices import PriceTable
from workers.ledger import LedgerEntry, State

__all__ = ["paid_since", "settle_rows"]

# Admission times come from Redis's clock, ledger times from the workers' clocks.
_CLOCK_SLACK_S = 0.5


def paid_since(
    entries: list[LedgerEntry | None], plan: list[tuple[str, str]], since: float, prices: PriceTable
) -> float:
    """Cost of the steps that succeeded at or after ``since`` (the provider bills those)."""
    total = 0.0
    for entry, (_, action) in zip(entries, plan, strict=True):
        done = entry is not None and entry.state is State.DONE
        if done and entry is not None and (entry.finished_at or 0.0) >= since - _CLOCK_SLACK_S:
            total += prices.call_cost(action)
    return round(total, 6)


def settle_rows(client: redis.Redis, batch_id: str, ended: list[Held], prices: PriceTable) -> None:
    """Settle the spend holds of admissions that ended, from what the ledger says was paid."""
    record = BatchState(client).record(batch_id)
    if record is None or not ended:
        return
    plan = BatchInfo.from_record(record).plan
    guard = SpendGuard(client)
    for held in ended:
        entries = ledger_entries(client, row_step_keys(batch_id, held.row, plan))
        actual = paid_since(entries, plan, held.admitted_at, prices)
        if actual > 0:
            guard.settle(batch_id, held.spend_key, actual=actual)
        else:
            guard.release(batch_id, held.spend_key)
