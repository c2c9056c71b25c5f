"""Exactly-once submission records: one Redis hash per step idempotency key.

Celery delivers at least once; the provider bills every accepted POST. The ledger
makes a redelivered step never POST twice (full story: ``docs/ledger.md``)::

    (none) -reserve-> reserved -mark_submitted | adopt_orphan-> submitted
                      reserved | submitted -mark_done | mark_failed-> done | failed
                      reserved (lease expired, other owner) -reserve-> reserved (takeover)
                      failed -reset_failed-> (none), or submitted when only its collect
                                                 failed (once: re-collect, not re-pay)

Protocol of a step: :meth:`Ledger.reserve` (atomic; the owner is the Celery task id,
holding a lease) -> :meth:`Ledger.begin_submit` (fenced; notes that a POST may now
happen) -> POST -> :meth:`Ledger.mark_submitted` (the api task id, plus the reverse
index ``ledger-claim:<api_task_id>`` -> key, in one atomic step).

Crash windows: before ``begin_submit`` no POST happened, so the resumed step submits.
Between ``begin_submit`` and ``mark_submitted`` the POST may have reached the provider
(``entry.needs_adoption``): the redelivered step (same task id, resumes at once) or a
new owner after the lease (a counted *takeover*) calls :meth:`Ledger.adopt_orphan`
with the provider's recent tasks; it adopts the earliest task with the same request
fingerprint, created after the first ``begin_submit`` minus clock slack and claimed by
no other entry (claims are atomic, so two identical-parameter rows never adopt the
same task). Only when none matches is resubmitting safe. After ``mark_submitted``
``reserve`` answers SUBMITTED, after ``done``/``failed`` DONE/FAILED: never POST again.

Every write refreshes a TTL of :data:`~workers.constants.LEDGER_DONE_TTL_S` (claims
get the same), so finished records vanish after a month. Times come from Redis
``TIME``, so workers' clocks never disagree. The Lua scripts are in ``scripts/``
(KEYS, ARGV and replies named in each file's header), loaded by
:func:`workers._redis.register_scripts` with the ``_now`` prelude.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import redis

from workers._redis import register_scripts
from workers.constants import LEDGER_CLAIM_PREFIX, LEDGER_DONE_TTL_S, LEDGER_PREFIX
from workers.ledger.errors import (
    ClaimConflictError,
    FingerprintMismatchError,
    LeaseLostError,
    LedgerStateError,
)
from workers.ledger.records import Claim, LedgerEntry, ProviderTask, State, as_text

__all__ = ["DEFAULT_CLOCK_SLACK_S", "DEFAULT_LEASE_S", "Ledger"]

#: How long a reservation protects its owner; the submit path is short (one POST).
DEFAULT_LEASE_S = 120.0
#: Provider and Redis clocks may disagree by this much when matching orphans.
DEFAULT_CLOCK_SLACK_S = 30.0


_ArgT = str | int | float


class Ledger:
    """Exactly-once submission records over a synchronous redis-py client."""

    def __init__(self, client: redis.Redis, *, ttl_s: int = LEDGER_DONE_TTL_S) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        scripts = register_scripts(client, "workers.ledger", prelude="_now")
        self._reserve = scripts["reserve"]
        self._begin = scripts["begin_submit"]
        self._submit = scripts["submit"]
        self._finish = scripts["finish"]
        self._reset = scripts["reset_failed"]

    def reserve(
        self, key: str, *, fingerprint: str, owner: str, reservation_ttl_s: float = DEFAULT_LEASE_S
    ) -> tuple[Claim, LedgerEntry]:
        """Atomically claim ``key`` for ``owner`` or report what is already recorded.

        NEW: the caller owns a fresh reservation. RESUME_RESERVED: the caller owns an
        existing reservation (its own, or taken over after the lease expired); when
        ``entry.needs_adoption`` it must :meth:`adopt_orphan` before submitting. BUSY:
        another owner's lease is live. SUBMITTED/DONE/FAILED: never POST again.
        Raises :class:`FingerprintMismatchError` when the key was used for other params.
        """
        word, entry = self._call(self._reserve, key, fingerprint, owner, reservation_ttl_s)
        assert entry is not None  # reserve always answers with the entry
        if word == "conflict":
            raise FingerprintMismatchError(
                f"ledger key {key!r} holds fingerprint {entry.fingerprint}, not {fingerprint}"
            )
        return Claim(word), entry

    def begin_submit(
        self, key: str, *, owner: str, reservation_ttl_s: float = DEFAULT_LEASE_S
    ) -> LedgerEntry:
        """Check ``owner`` still holds the reservation, renew it and note a POST may follow.

        Call right before the POST. Raises :class:`LeaseLostError` when another owner
        took over, :class:`LedgerStateError` when the entry is not ``reserved``.
        """
        reply = self._call(self._begin, key, owner, reservation_ttl_s)
        return _checked(key, "begin_submit", *reply)

    def mark_submitted(
        self, key: str, *, api_task_id: str, owner: str | None = None
    ) -> LedgerEntry:
        """Record that the provider accepted the POST as ``api_task_id`` (idempotent).

        With ``owner`` the write is fenced: a step whose lease was taken over gets
        :class:`LeaseLostError` instead of overwriting the new owner's record.
        """
        reply = self._call(self._submit, key, api_task_id, owner or "", "0", claim=api_task_id)
        return _checked(key, "mark_submitted", *reply)

    def adopt_orphan(
        self,
        key: str,
        recent_tasks: Iterable[ProviderTask | tuple[str, str, float]],
        *,
        owner: str,
        clock_slack_s: float = DEFAULT_CLOCK_SLACK_S,
    ) -> LedgerEntry | None:
        """Adopt the provider task an interrupted POST of ``key`` created, if any.

        ``recent_tasks`` must cover the provider's tasks created since the entry's
        ``post_started_at``. Returns the entry, now ``submitted`` with ``adopted``,
        or None: no unclaimed matching task exists and resubmitting is safe.
        """
        entry = self.get(key)
        if entry is None or entry.state is not State.RESERVED:
            raise LedgerStateError(f"adopt_orphan: ledger key {key!r} is not reserved: {entry}")
        for task in _candidates(entry, recent_tasks, clock_slack_s):
            tid = task.api_task_id
            word, found = self._call(self._submit, key, tid, owner, "1", claim=tid)
            if word != "claimed":  # claimed: another entry owns this task, try the next
                return _checked(key, "adopt_orphan", word, found)
        return None

    def mark_done(self, key: str, *, result: dict[str, Any]) -> LedgerEntry:
        """Record the step's result. A finished entry is returned unchanged (first wins)."""
        return self._finish_entry(key, State.DONE, "result", json.dumps(result, sort_keys=True))

    def mark_failed(
        self, key: str, *, code: str, message: str, recollect: bool = False
    ) -> LedgerEntry:
        """Record the step's failure. A finished entry is returned unchanged (first wins).

        ``recollect``: the provider finished the (paid) task and only collecting its
        result failed, so :meth:`reset_failed` reopens the step to collect again.
        """
        extra = ("recollect", "1") if recollect else ()
        fields = ("error_code", code, "error_message", message, *extra)
        return self._finish_entry(key, State.FAILED, *fields)

    def reset_failed(self, key: str) -> bool:
        """Let a ``failed`` step run again; False if not failed.

        A step failed while collecting a paid result (``recollect``) is reopened once as
        ``submitted`` with its api task id, so its next run collects from the provider's
        record instead of paying again; otherwise (or when that re-collect failed too)
        the entry is forgotten and the next run submits anew.
        """
        return bool(self._reset(keys=[LEDGER_PREFIX + key]))

    def get(self, key: str) -> LedgerEntry | None:
        """Return the entry of ``key``, or None."""
        raw = self._redis.hgetall(LEDGER_PREFIX + key)
        return LedgerEntry.from_mapping(key, raw) if raw else None

    def get_many(self, keys: Sequence[str]) -> list[LedgerEntry | None]:
        """Return the entries of ``keys`` in order (None where there is none), in one round trip.

        For readers of many steps at once (a batch's rows, its manifest): every field of
        the record (state, api task id, error code and message, times, result) comes typed,
        so no caller reads the ledger's Redis hashes itself. Not atomic across keys.
        """
        if not keys:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(LEDGER_PREFIX + key)
        raws = pipe.execute()
        return [
            LedgerEntry.from_mapping(k, raw) if raw else None
            for k, raw in zip(keys, raws, strict=True)
        ]

    def claimed_by(self, api_task_id: str) -> str | None:
        """Return the ledger key that recorded ``api_task_id``, or None."""
        value = self._redis.get(LEDGER_CLAIM_PREFIX + api_task_id)
        return None if value is None else as_text(value).removeprefix(LEDGER_PREFIX)

    def scan(self, prefix: str = "") -> Iterator[LedgerEntry]:
        """Yield the entries whose key starts with ``prefix`` (e.g. ``"batch-1/"``)."""
        escaped = "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
        for name in self._redis.scan_iter(match=f"{LEDGER_PREFIX}{escaped}*", count=500):
            entry = self.get(as_text(name).removeprefix(LEDGER_PREFIX))
            if entry is not None:  # expired between SCAN and HGETALL
                yield entry

    def _finish_entry(self, key: str, state: State, *fields: str) -> LedgerEntry:
        _, entry = self._call(self._finish, key, state.value, *fields)
        if entry is None:
            raise LedgerStateError(f"ledger key {key!r} has no entry to mark {state}")
        return entry

    def _call(
        self, script: Any, key: str, *args: _ArgT, claim: str | None = None
    ) -> tuple[str, LedgerEntry | None]:
        # Every script takes the entry (and maybe a claim) key, its ARGV, then the TTL,
        # and replies {word, HGETALL}; an empty HGETALL only comes with "missing".
        keys = [LEDGER_PREFIX + key] + ([LEDGER_CLAIM_PREFIX + claim] if claim else [])
        word, flat = script(keys=keys, args=[*args, self._ttl_s])
        return as_text(word), LedgerEntry.from_flat(key, flat) if flat else None


def _checked(key: str, action: str, word: str, entry: LedgerEntry | None) -> LedgerEntry:
    # Lua answers with an outcome word; the failures become exceptions here, in one place.
    if entry is None:
        raise LedgerStateError(f"{action}: ledger key {key!r} has no entry")
    if word == "lease_lost":
        raise LeaseLostError(f"{action}: {key!r} is now owned by {entry.owner}")
    if word == "claimed":
        raise ClaimConflictError(f"{action}: api task already recorded by another key")
    if word == "state":
        raise LedgerStateError(f"{action}: ledger key {key!r} is {entry.state}")
    return entry


def _candidates(
    entry: LedgerEntry, tasks: Iterable[ProviderTask | tuple[str, str, float]], slack_s: float
) -> list[ProviderTask]:
    # Earliest first: the first POST after begin_submit is the likeliest orphan.
    since = (entry.post_started_at or entry.reserved_at) - slack_s
    found = (ProviderTask(*t) for t in tasks if t[1] == entry.fingerprint and float(t[2]) >= since)
    return sorted(found, key=lambda t: t.created_at)
