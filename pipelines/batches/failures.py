"""Failed rows: what to record when a row's canvas fails, and running failed rows again."""

from __future__ import annotations

from typing import Any

import redis

from pipelines.batches.ledger_reads import ledger_entries, row_step_keys
from pipelines.batches.state import BatchInfo, BatchState
from pipelines.batches.submit import new_round
from workers.ledger import Ledger, State

__all__ = ["failure_of", "retry_failed"]

_RETRY_CHUNK_ROWS = 5000


def failure_of(
    client: redis.Redis, batch_id: str, row: int, plan: list[tuple[str, str]], exc: Any = None
) -> dict[str, str]:
    """The failure to record for a row: the ledger's failed step, else the exception."""
    entries = ledger_entries(client, row_step_keys(batch_id, row, plan))
    for (step, _), entry in zip(plan, entries, strict=True):
        if entry is not None and entry.state is State.FAILED:
            return {
                "step": step,
                "code": entry.error_code or "failed",
                "message": entry.error_message or "step failed",
            }
    step = next(
        (
            s
            for (s, _), e in zip(plan, entries, strict=True)
            if e is None or e.state is not State.DONE
        ),
        "?",
    )
    code = str(getattr(exc, "code", None) or (type(exc).__name__ if exc else "failed"))
    message = str(getattr(exc, "message", None) or exc or "the row's canvas failed")
    return {"step": step, "code": code, "message": message}


def retry_failed(client: redis.Redis, batch_id: str) -> int:
    """Run the failed rows of ``batch_id`` again; returns how many were requeued.

    Only the failed steps' ledger records are reset, so the new attempt finds the
    row's done steps already paid for. A step that failed while collecting a paid
    result is reopened as ``submitted`` (once): the new attempt collects it again
    from the provider's record instead of submitting it again. Any other failed
    step is forgotten and makes a new call.
    """
    state = BatchState(client)
    record = state.record(batch_id)
    if record is None:
        raise KeyError(batch_id)
    plan = BatchInfo.from_record(record).plan
    ledger = Ledger(client)
    rows = state.rows_in(batch_id, "f")
    for row in rows:
        for key in row_step_keys(batch_id, row, plan):
            ledger.reset_failed(key)
    status = record.get("status", "")
    for start in range(0, len(rows), _RETRY_CHUNK_ROWS):
        after = state.retry(batch_id, rows[start : start + _RETRY_CHUNK_ROWS])
        new_round(state, batch_id, status, after)
        status = after
    return len(rows)
