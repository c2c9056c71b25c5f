"""Exactly-once submission records: one Redis hash per step idempotency key.

Celery delivers at least once; the provider bills every accepted POST. The ledger
makes a redelivered step never POST twice (full story: ``docs/ledger.md``)::

    (none) -reserve-> reserved -mark_submitted | adopt_orphan-> submitted
                      reserved | submitted -mark_done | mark_failed-> done | failed
                      reserved (lease expired, other owner) -reserve-> reserved (takeover)
                      failed -reset_failed-> (none)

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
``TIME``, so workers' clocks never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import redis

from workers.constants import LEDGER_CLAIM_PREFIX, LEDGER_DONE_TTL_S, LEDGER_PREFIX


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


class State(StrEnum):
    """The state of a ledger entry."""

    RESERVED = "reserved"
    SUBMITTED = "submitted"
    DONE = "done"
    FAILED = "failed"


class Claim(StrEnum):
    """What :meth:`Ledger.reserve` found: what the caller may do next."""

    NEW = "new"
    RESUME_RESERVED = "resume_reserved"
    BUSY = "busy"
    SUBMITTED = "submitted"
    DONE = "done"
    FAILED = "failed"


def _opt_float(value: str | None) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class LedgerEntry:
    """One step's record, as stored (times are Redis epoch seconds)."""

    key: str
    state: State
    fingerprint: str
    owner: str
    reserved_at: float
    lease_until: float
    post_started_at: float | None = None
    api_task_id: str | None = None
    submitted_at: float | None = None
    adopted: bool = False
    result: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None
    finished_at: float | None = None
    takeovers: int = 0
    previous_owner: str | None = None

    @property
    def needs_adoption(self) -> bool:
        """Whether a POST may have reached the provider without being recorded."""
        return self.state is State.RESERVED and self.post_started_at is not None

    @classmethod
    def from_flat(cls, key: str, flat: list[Any]) -> LedgerEntry:
        """Build from an ``HGETALL`` reply given as a flat field/value list."""
        return cls.from_mapping(key, dict(zip(flat[::2], flat[1::2], strict=True)))

    @classmethod
    def from_mapping(cls, key: str, raw: Mapping[Any, Any]) -> LedgerEntry:
        """Build from an ``HGETALL`` mapping (bytes or str)."""
        f = {_text(k): _text(v) for k, v in raw.items()}
        result = f.get("result")
        return cls(
            key=key, state=State(f["state"]), fingerprint=f["fingerprint"], owner=f["owner"],
            reserved_at=float(f["reserved_at"]), lease_until=float(f["lease_until"]),
            post_started_at=_opt_float(f.get("post_started_at")),
            api_task_id=f.get("api_task_id"), submitted_at=_opt_float(f.get("submitted_at")),
            adopted=f.get("adopted") == "1", result=None if result is None else json.loads(result),
            error_code=f.get("error_code"), error_message=f.get("error_message"),
            finished_at=_opt_float(f.get("finished_at")), takeovers=int(f.get("takeovers", 0)),
            previous_owner=f.get("previous_owner"),
        )


# --- Lua: KEYS and ARGV are named in each script's header; times are Redis TIME seconds.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local e = KEYS[1]
local function reply(word) return {word, redis.call('HGETALL', e)} end
"""

# KEYS[1] entry. ARGV fingerprint, owner, lease_s, ttl_s. Reply {claim word, fields}.
_RESERVE = _NOW + """
local state = redis.call('HGET', e, 'state')
if not state then
  redis.call('HSET', e, 'state', 'reserved', 'fingerprint', ARGV[1], 'owner', ARGV[2],
    'reserved_at', tostring(now), 'lease_until', tostring(now + tonumber(ARGV[3])),
    'takeovers', '0')
  redis.call('EXPIRE', e, ARGV[4])
  return reply('new')
end
if redis.call('HGET', e, 'fingerprint') ~= ARGV[1] then return reply('conflict') end
if state ~= 'reserved' then return reply(state) end
local owner = redis.call('HGET', e, 'owner')
if owner ~= ARGV[2] then
  if now < tonumber(redis.call('HGET', e, 'lease_until')) then return reply('busy') end
  redis.call('HSET', e, 'owner', ARGV[2], 'previous_owner', owner, 'taken_over_at', tostring(now))
  redis.call('HINCRBY', e, 'takeovers', 1)
end
redis.call('HSET', e, 'lease_until', tostring(now + tonumber(ARGV[3])))
redis.call('EXPIRE', e, ARGV[4])
return reply('resume_reserved')
"""

# KEYS[1] entry. ARGV owner, lease_s, ttl_s. Reply {ok|missing|state|lease_lost, fields}.
_BEGIN = _NOW + """
local state = redis.call('HGET', e, 'state')
if not state then return {'missing', {}} end
if state ~= 'reserved' then return reply('state') end
if redis.call('HGET', e, 'owner') ~= ARGV[1] then return reply('lease_lost') end
redis.call('HSET', e, 'lease_until', tostring(now + tonumber(ARGV[2])))
redis.call('HSETNX', e, 'post_started_at', tostring(now))
redis.call('EXPIRE', e, ARGV[3])
return reply('ok')
"""

# KEYS[1] entry, KEYS[2] claim of the api task. ARGV api_task_id, owner ('' = unfenced),
# adopted ('0'|'1'), ttl_s. Reply {ok|missing|state|lease_lost|claimed, fields}.
_SUBMIT = _NOW + """
local state = redis.call('HGET', e, 'state')
if not state then return {'missing', {}} end
if state ~= 'reserved' then
  if redis.call('HGET', e, 'api_task_id') == ARGV[1] then return reply('ok') end
  return reply('state')
end
if ARGV[2] ~= '' and redis.call('HGET', e, 'owner') ~= ARGV[2] then return reply('lease_lost') end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= e then return reply('claimed') end
redis.call('SET', KEYS[2], e, 'EX', ARGV[4])
redis.call('HSET', e, 'state', 'submitted', 'api_task_id', ARGV[1],
  'submitted_at', tostring(now), 'adopted', ARGV[3])
redis.call('EXPIRE', e, ARGV[4])
return reply('ok')
"""

# KEYS[1] entry. ARGV target state, field, value, ..., ttl_s. Reply {ok|final|missing, fields}.
_FINISH = _NOW + """
local state = redis.call('HGET', e, 'state')
if not state then return {'missing', {}} end
if state == 'done' or state == 'failed' then return reply('final') end
redis.call('HSET', e, 'state', ARGV[1], 'finished_at', tostring(now))
for i = 2, #ARGV - 1, 2 do redis.call('HSET', e, ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', e, ARGV[#ARGV])
return reply('ok')
"""

# KEYS[1] entry. Reply 1 when a failed entry was deleted, else 0.
_RESET_FAILED = """
if redis.call('HGET', KEYS[1], 'state') == 'failed' then return redis.call('DEL', KEYS[1]) end
return 0
"""

__all__ = [
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

#: How long a reservation protects its owner; the submit path is short (one POST).
DEFAULT_LEASE_S = 120.0
#: Provider and Redis clocks may disagree by this much when matching orphans.
DEFAULT_CLOCK_SLACK_S = 30.0


class ProviderTask(NamedTuple):
    """One of the provider's recent tasks, as needed to adopt an orphan."""

    api_task_id: str
    fingerprint: str
    created_at: float


_ArgT = str | int | float


def step_key(batch: str, row: int | str, step: str) -> str:
    """Return the derived idempotency key of a pipeline step: ``batch/row/step``."""
    return f"{batch}/{row}/{step}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Ledger:
    """Exactly-once submission records over a synchronous redis-py client."""

    def __init__(self, client: redis.Redis, *, ttl_s: int = LEDGER_DONE_TTL_S) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        self._reserve = client.register_script(_RESERVE)
        self._begin = client.register_script(_BEGIN)
        self._submit = client.register_script(_SUBMIT)
        self._finish = client.register_script(_FINISH)
        self._reset = client.register_script(_RESET_FAILED)

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

    def mark_failed(self, key: str, *, code: str, message: str) -> LedgerEntry:
        """Record the step's failure. A finished entry is returned unchanged (first wins)."""
        return self._finish_entry(key, State.FAILED, "error_code", code, "error_message", message)

    def reset_failed(self, key: str) -> bool:
        """Forget a ``failed`` entry so the step can run again; False if not failed."""
        return bool(self._reset(keys=[LEDGER_PREFIX + key]))

    def get(self, key: str) -> LedgerEntry | None:
        """Return the entry of ``key``, or None."""
        raw = self._redis.hgetall(LEDGER_PREFIX + key)
        return LedgerEntry.from_mapping(key, raw) if raw else None

    def claimed_by(self, api_task_id: str) -> str | None:
        """Return the ledger key that recorded ``api_task_id``, or None."""
        value = self._redis.get(LEDGER_CLAIM_PREFIX + api_task_id)
        return None if value is None else _text(value).removeprefix(LEDGER_PREFIX)

    def scan(self, prefix: str = "") -> Iterator[LedgerEntry]:
        """Yield the entries whose key starts with ``prefix`` (e.g. ``"batch-1/"``)."""
        escaped = "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
        for name in self._redis.scan_iter(match=f"{LEDGER_PREFIX}{escaped}*", count=500):
            entry = self.get(_text(name).removeprefix(LEDGER_PREFIX))
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
        return _text(word), LedgerEntry.from_flat(key, flat) if flat else None


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
