"""Spend settlement of rows that ended: count each paid step once, hold what is in flight.

A row reserved its estimated cost when it was admitted (:mod:`pipelines.spend.guard`).
When the admission ends (done, failed, cancelled, deferred, found stale), its hold is
settled from the ledger, step by step (:meth:`SpendGuard.settle_steps`):

* a step that finished successfully is paid (the provider bills it): it is counted once
  per ``(row, step)``, whichever admission, resume or cancel sees it first. Counting per
  admission (what succeeded since it was admitted) lost every step that landed while no
  admission of its row was open: after ``cancel --abandon``, or while a resumed row
  waited for an earlier copy's step;
* a step still at the provider may yet be billed: its price stays held as one of the
  batch's *pending* steps, and :func:`settle_pending` counts it when it lands (the
  feeder service does each round, ``status`` before it reads the spend);
* the rest of the row's hold goes back.
"""

from __future__ import annotations

import redis

from pipelines.batches.ledger_reads import ledger_entries, row_step_keys
from pipelines.batches.state import BatchInfo, BatchState, Held
from pipelines.spend.guard import Paid, SpendGuard, StepCharge
from pipelines.spend.prices import PriceTable
from workers.ledger import LedgerEntry, State

__all__ = ["charges", "settle_all_pending", "settle_ended_row", "settle_pending", "settle_rows"]

_AT_PROVIDER = (State.RESERVED, State.SUBMITTED)


def _paid(entry: LedgerEntry | None) -> Paid:
    if entry is None:
        return Paid.NO
    if entry.paid:  # done, or failed collecting a result the provider finished (paid)
        return Paid.YES
    return Paid.PENDING if entry.state in _AT_PROVIDER else Paid.NO


def _step_key(row: int, step: str) -> str:
    return f"row-{row}/step-{step}"


def charges(
    row: int,
    steps: list[tuple[str, str]],
    entries: list[LedgerEntry | None],
    prices: PriceTable,
) -> list[StepCharge]:
    """What each ``(step, action)`` of ``row`` costs, from its ledger entry."""
    return [
        StepCharge(_step_key(row, step), _paid(entry), prices.call_cost(action))
        for (step, action), entry in zip(steps, entries, strict=True)
    ]


def _plan(client: redis.Redis, batch_id: str) -> list[tuple[str, str]] | None:
    record = BatchState(client).record(batch_id)
    return None if record is None else BatchInfo.from_record(record).plan


def settle_rows(client: redis.Redis, batch_id: str, ended: list[Held], prices: PriceTable) -> None:
    """Settle the spend holds of admissions that ended, from what the ledger says was paid."""
    plan = _plan(client, batch_id) if ended else None
    if plan is None:
        return
    guard = SpendGuard(client)
    for held in ended:
        entries = ledger_entries(client, row_step_keys(batch_id, held.row, plan))
        guard.settle_steps(batch_id, held.spend_key, charges(held.row, plan, entries, prices))


def settle_ended_row(
    client: redis.Redis, batch_id: str, row: int, held: Held | None, prices: PriceTable
) -> None:
    """Settle a row that just ended: its admission's hold, or, with none, its steps alone.

    A row can end under no open admission: after a crash and a resume, the crashed
    run's canvas may still be in the broker and finish the row first (the resume had
    settled that admission while the rest of its steps were still queued). Its steps
    were paid all the same, so they are counted here (as spend above any hold).
    """
    if held is not None:
        settle_rows(client, batch_id, [held], prices)
        return
    plan = _plan(client, batch_id)
    if plan is not None:
        entries = ledger_entries(client, row_step_keys(batch_id, row, plan))
        SpendGuard(client).settle_steps(batch_id, "", charges(row, plan, entries, prices))


def settle_pending(client: redis.Redis, batch_id: str) -> int:
    """Count the batch's held steps that have landed since; returns how many are left.

    A landed step is counted at the price it was held at, so no price table is needed.
    """
    guard = SpendGuard(client)
    pending = guard.pending(batch_id)
    plan = _plan(client, batch_id) if pending else None
    if plan is None:
        return 0
    actions = dict(plan)
    by_row: dict[int, list[str]] = {}
    for key in pending:
        row_text, _, step = key.removeprefix("row-").partition("/step-")
        if step in actions and row_text.isdigit():
            by_row.setdefault(int(row_text), []).append(step)
    for row, steps in by_row.items():
        entries = ledger_entries(client, row_step_keys(batch_id, row, [(s, "") for s in steps]))
        found = [
            StepCharge(_step_key(row, step), _paid(entry), 0.0)
            for step, entry in zip(steps, entries, strict=True)
        ]
        guard.settle_steps(batch_id, "", found)
    return len(guard.pending(batch_id))


def settle_all_pending(client: redis.Redis) -> None:
    """:func:`settle_pending` for every batch that holds a step at the provider."""
    for batch_id in SpendGuard(client).pending_batches():
        settle_pending(client, batch_id)
