"""Exactly-once submission records: one Redis hash per step idempotency key.

The public face of the ledger (the protocol and crash windows are told in
:mod:`workers.ledger.ledger` and ``docs/ledger.md``):

* :mod:`~workers.ledger.ledger` — :class:`Ledger`, the transitions over Redis;
* :mod:`~workers.ledger.records` — :class:`LedgerEntry`, :class:`State`,
  :class:`Claim`, :class:`ProviderTask`, :func:`step_key`;
* :mod:`~workers.ledger.errors` — :class:`LedgerError` and its subclasses;
* ``scripts/*.lua`` — the atomic transitions, one file each.
"""

from workers.ledger.errors import (
    ClaimConflictError,
    FingerprintMismatchError,
    LeaseLostError,
    LedgerError,
    LedgerStateError,
)
from workers.ledger.ledger import DEFAULT_CLOCK_SLACK_S, DEFAULT_LEASE_S, Ledger
from workers.ledger.records import Claim, LedgerEntry, ProviderTask, State, step_key

__all__ = [
    "DEFAULT_CLOCK_SLACK_S",
    "DEFAULT_LEASE_S",
    "Claim",
    "ClaimConflictError",
    "FingerprintMismatchError",
    "LeaseLostError",
    "Ledger",
    "LedgerEntry",
    "LedgerError",
    "LedgerStateError",
    "ProviderTask",
    "State",
    "step_key",
]
