"""The one place batches read ledger records: a row's steps, through ``Ledger.get_many``.

Batches read which steps of a row are done, failed or at the provider (spend
settlement, failures, stale rows, cancel, the manifest). The ledger owns its Redis
layout; every read here goes through :meth:`workers.ledger.Ledger.get_many` (one
round trip for any number of steps).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from workers.ledger import Ledger, LedgerEntry, step_key

__all__ = ["ledger_entries", "row_step_keys"]


def row_step_keys(batch_id: str, row: int, plan: list[tuple[str, str]]) -> list[str]:
    """The ledger keys of a row's steps, in plan order."""
    return [step_key(batch_id, row, step) for step, _ in plan]


def ledger_entries(client: redis.Redis, keys: Sequence[str]) -> list[LedgerEntry | None]:
    """The ledger entries of ``keys`` in order (None where a key has no record)."""
    return Ledger(client).get_many(keys)
