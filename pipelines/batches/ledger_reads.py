"""The one place pipelines read ledger records (the ledger's Redis hashes, directly).

Batches read which steps of a row are done, failed or at the provider (spend
settlement, failures, stale rows, cancel, the manifest). Every such read goes
through :func:`ledger_entries`, the only code here that knows the ledger's Redis
layout. TODO(lead): switch its body to ``workers.ledger.Ledger.get_many(keys)`` once
that exists; callers keep their signature.
"""

from __future__ import annotations

import redis

from workers.constants import LEDGER_PREFIX
from workers.ledger import LedgerEntry, step_key

__all__ = ["ledger_entries", "row_step_keys"]


def row_step_keys(batch_id: str, row: int, plan: list[tuple[str, str]]) -> list[str]:
    """The ledger keys of a row's steps, in plan order."""
    return [step_key(batch_id, row, step) for step, _ in plan]


def ledger_entries(client: redis.Redis, keys: list[str]) -> list[LedgerEntry | None]:
    """Several ledger entries in one round trip (None where a key has no record).

    Reads the ledger's hashes directly: the single raw read, to become
    ``Ledger(client).get_many(keys)``.
    """
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(LEDGER_PREFIX + key)
    raws = pipe.execute()
    return [LedgerEntry.from_mapping(k, r) if r else None for k, r in zip(keys, raws, strict=True)]
