"""The ledger's refusals: one base class, one subclass per reason.

::

    LedgerError
    ├── FingerprintMismatchError   the key was recorded for other params
    ├── LeaseLostError             another owner took the reservation over
    ├── LedgerStateError           missing entry, or a transition its state forbids
    └── ClaimConflictError         the provider task is recorded under another key
"""

from __future__ import annotations


class LedgerError(Exception):
    """A ledger operation was refused."""


class FingerprintMismatchError(LedgerError):
    """The idempotency key is already recorded for a request with other parameters."""


class LeaseLostError(LedgerError):
    """Another owner took the reservation over; this step must not record a submission."""


class LedgerStateError(LedgerError):
    """The entry is missing or not in a state that allows this transition."""


class ClaimConflictError(LedgerError):
    """The provider task is already recorded under another ledger key."""
