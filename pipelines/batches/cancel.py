"""Cancelling a batch: stop feeding it and, with ``abandon``, end its running rows now."""

from __future__ import annotations

import redis
from celery import Celery

from pipelines.batches.ledger_reads import ledger_entries, row_step_keys
from pipelines.batches.settle import settle_rows
from pipelines.batches.state import BatchInfo, BatchState, Held
from pipelines.specs.canvas import plan_levels, task_id
from pipelines.spend.prices import PriceTable
from workers.ledger import State

__all__ = ["cancel_batch", "revoke_unstarted"]


def cancel_batch(
    client: redis.Redis, app: Celery, batch_id: str, *, abandon: bool, prices: PriceTable
) -> str:
    """Stop feeding ``batch_id``; returns its status (``cancelling`` until rows in flight end).

    With ``abandon`` the running rows are cancelled at once: their steps that have not
    started are revoked, their spend holds settled for what was already paid (at
    ``prices``), and their steps in flight at the provider finish unobserved (already
    paid for).
    """
    state = BatchState(client)
    record = state.record(batch_id)
    if record is None:
        raise KeyError(batch_id)
    status, ended = state.cancel(batch_id, abandon=abandon)
    if ended:
        revoke_unstarted(client, app, batch_id, ended, BatchInfo.from_record(record).plan)
        settle_rows(client, batch_id, ended, prices)
    return status


def revoke_unstarted(
    client: redis.Redis, app: Celery, batch_id: str, ended: list[Held], plan: list[tuple[str, str]]
) -> int:
    """Revoke what abandoned admissions would run after the step they are at.

    The row's current step (the first not done, with its copies) is never revoked: it
    may be starting this instant, and its ``collect`` runs under the step's own task
    id, so a revoked id would discard the collect and leave the step waiting (and its
    in-flight slot held). Later steps cannot start before the current one's
    generation has finished, long after the revoke reached the workers.
    """
    ids: list[str] = []
    levels = plan_levels(plan)
    for held in ended:
        entries = ledger_entries(client, row_step_keys(batch_id, held.row, plan))
        current = next(
            (levels[i] for i, e in enumerate(entries) if e is None or e.state is not State.DONE),
            len(plan),
        )
        ids.extend(
            task_id(batch_id, held.row, step, held.attempt)
            for (step, _), level in zip(plan, levels, strict=True)
            if level > current
        )
        ids.append(task_id(batch_id, held.row, "row_done", held.attempt))
    if ids:
        app.control.revoke(ids)
    return len(ids)
