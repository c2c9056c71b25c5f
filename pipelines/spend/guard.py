"""Spend caps: reservations per batch and for the fleet, shared through one Redis.

The provider bills every *successful* call (CONTRACT.md §8), so money is only safe if
it is counted before it is spent. The protocol of a row (the feeder drives it)::

    reserve(batch, row key, estimate)   before any submission of the row; refused
                                        (batch_cap | global_cap) -> the batch pauses
    settle_steps(batch, row key, steps) when the row's admission ends (done, failed,
                                        cancelled, deferred, stale): each paid step is
                                        counted once per step key, whichever admission
                                        ends; a step still at the provider keeps a hold
                                        of its price (the batch's *pending* steps) until
                                        a later settle_steps sees it land; the rest of
                                        the row's hold goes back
    release(batch, row key)             the row was never started (nothing paid)

:meth:`SpendGuard.reserve` runs ``scripts/spend.lua``: one atomic script
over the batch's counters and the fleet's, so ``spent + reserved <= cap`` holds for
each batch and globally with any number of feeders, workers and batches. Every call is
idempotent per ``(batch_id, key)``: a redelivered admission never counts twice.

Redis layout (prefix :data:`~pipelines.constants.SPEND_PREFIX`; amounts are integers of
micro-units of the price table's currency, so sums are exact)::

    producer:spend:batch:<batch_id>        hash  spent, reserved, overrun, cap, refused
    producer:spend:batch:<batch_id>:holds  hash  key -> h<micro> | s<micro> | r
    producer:spend:batch:<batch_id>:pending set  step keys held while at the provider
    producer:spend:global                  hash  spent, reserved, overrun, cap (runtime)
    producer:spend:pending                 set   totals keys of batches with pending steps

Prices are in :mod:`pipelines.spend.prices`, dry-run estimates in
:mod:`pipelines.spend.estimate`. More in ``docs/spend.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import redis

from pipelines.constants import SPEND_GLOBAL_KEY, SPEND_PENDING_KEY, SPEND_PREFIX
from pipelines.spend.prices import from_micro, to_micro
from workers._redis import register_scripts
from workers.logging import get_logger

__all__ = [
    "Paid",
    "SpendDecision",
    "SpendGuard",
    "SpendStatus",
    "StepCharge",
    "batch_key",
    "holds_key",
    "pending_key",
]


log = get_logger(__name__)


@dataclass(frozen=True)
class SpendDecision:
    """The answer to a reservation, with the counters right after it (one atomic snapshot)."""

    granted: bool
    reason: str | None  # "batch_cap" | "global_cap" when refused
    batch_spent: float
    batch_reserved: float
    batch_cap: float | None
    global_spent: float
    global_reserved: float
    global_cap: float | None


@dataclass(frozen=True)
class SpendStatus:
    """Spend of a batch or of the fleet: settled, held, and the cap (None = uncapped)."""

    spent: float
    reserved: float
    cap: float | None
    overrun: float = 0.0  # spend settled above its reservation (should stay 0)
    refused: str | None = None  # batch only: why the last reservation was refused

    @property
    def headroom(self) -> float | None:
        """What may still be reserved under the cap (None = uncapped)."""
        if self.cap is None:
            return None
        return max(0.0, from_micro(to_micro(self.cap) - to_micro(self.spent + self.reserved)))


class Paid(StrEnum):
    """Whether the provider bills a step, as far as the ledger knows."""

    YES = "p"  # it finished successfully: billed, counted once
    PENDING = "f"  # at the provider: it may still be billed, so its price stays held
    NO = "u"  # failed or never submitted: not billed


class StepCharge(NamedTuple):
    """One step of a row for :meth:`SpendGuard.settle_steps`."""

    key: str  # unique per (row, step) in the batch: the unit of counting once
    paid: Paid
    amount: float  # the step's price


class _Reply(NamedTuple):
    code: int
    reason: str
    counters: tuple[int, ...]  # batch spent, reserved, cap, global spent, reserved, cap
    overrun: int


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _cap_arg(cap: float | None) -> int:
    return -1 if cap is None else to_micro(cap)


def _cap_value(micro: int) -> float | None:
    return None if micro < 0 else from_micro(micro)


_FIELDS = ("spent", "reserved", "cap", "overrun")


def _status(raw: Sequence[Any], default_cap: float | None, refused: str | None) -> SpendStatus:
    spent, reserved, cap, overrun = (None if v is None else int(_text(v)) for v in raw)
    return SpendStatus(
        spent=from_micro(spent or 0),
        reserved=from_micro(reserved or 0),
        cap=default_cap if cap is None else _cap_value(cap),
        overrun=from_micro(overrun or 0),
        refused=refused,
    )


def batch_key(batch_id: str) -> str:
    """The totals hash of a batch."""
    return f"{SPEND_PREFIX}batch:{batch_id}"


def holds_key(batch_id: str) -> str:
    """The reservations hash of a batch (one field per key)."""
    return f"{SPEND_PREFIX}batch:{batch_id}:holds"


def pending_key(batch_id: str) -> str:
    """The set of a batch's step keys held while their step is at the provider."""
    return f"{SPEND_PREFIX}batch:{batch_id}:pending"


class SpendGuard:
    """Reservations against caps, shared by every process through one Redis.

    Amounts and caps are in one currency: the price table's (convert caps given in the
    other unit with :meth:`PriceTable.parse_cap`). Resolution: one micro-unit (1e-6).
    """

    def __init__(self, redis_client: redis.Redis) -> None:
        self._client = redis_client
        self._script = register_scripts(redis_client, "pipelines.spend")["spend"]

    def reserve(
        self,
        batch_id: str,
        key: str,
        amount: float,
        *,
        batch_cap: float | None,
        global_cap: float | None,
    ) -> SpendDecision:
        """Hold ``amount`` for ``key`` if it fits under both caps; idempotent per key.

        ``global_cap`` is the configured default; a cap set with :meth:`set_global_cap`
        wins over it. Re-reserving a held or settled key grants without counting again;
        a released key is reserved afresh.
        """
        reply = self._run(
            "reserve", batch_id, key, to_micro(amount), _cap_arg(batch_cap), _cap_arg(global_cap)
        )
        b_spent, b_res, b_cap, g_spent, g_res, g_cap = reply.counters
        return SpendDecision(
            granted=reply.code == 1,
            reason=reply.reason or None,
            batch_spent=from_micro(b_spent),
            batch_reserved=from_micro(b_res),
            batch_cap=_cap_value(b_cap),
            global_spent=from_micro(g_spent),
            global_reserved=from_micro(g_res),
            global_cap=_cap_value(g_cap),
        )

    def settle(self, batch_id: str, key: str, *, actual: float) -> None:
        """Turn the hold into ``actual`` spend (the rest returns); idempotent.

        Spend above the hold (or with no hold) is still recorded, because the provider
        took it, and counted in ``overrun`` with a warning: a cap may then be exceeded.
        """
        reply = self._run("settle", batch_id, key, to_micro(actual), -1, -1)
        if reply.overrun:
            log.warning(
                "spend_overrun",
                batch_id=batch_id,
                key=key,
                actual=actual,
                overrun=from_micro(reply.overrun),
            )

    def settle_steps(self, batch_id: str, key: str, steps: Sequence[StepCharge]) -> None:
        """End the hold of admission ``key`` with what its row's steps cost; idempotent.

        Each paid step is counted once per step key whichever admission (an earlier
        one, a resume, a cancel) settles it; a step still at the provider keeps its
        price held and joins the batch's pending steps, settled by a later call (``key``
        may be "" for that: :meth:`pending`); the rest of the hold goes back.
        """
        args: list[str | int] = []
        for step in steps:
            args += [step.key, step.paid.value, to_micro(step.amount)]
        reply = self._run("steps", batch_id, key, 0, -1, -1, args)
        if reply.overrun:
            log.warning(
                "spend_overrun", batch_id=batch_id, key=key, overrun=from_micro(reply.overrun)
            )

    def pending(self, batch_id: str) -> list[str]:
        """The step keys of ``batch_id`` whose price is held while they are at the provider."""
        return sorted(_text(k) for k in self._client.smembers(pending_key(batch_id)))

    def pending_batches(self) -> list[str]:
        """The batches that have a step held while it is at the provider."""
        prefix = batch_key("")
        return sorted(
            _text(k).removeprefix(prefix) for k in self._client.smembers(SPEND_PENDING_KEY)
        )

    def release(self, batch_id: str, key: str) -> None:
        """Drop the hold of ``key`` without spend; idempotent (a settled key stays settled)."""
        self._run("release", batch_id, key, 0, -1, -1)

    def forget(self, batch_id: str) -> None:
        """Delete a batch's spend records, releasing its holds (the fleet keeps its spend)."""
        self._run("forget", batch_id, "", 0, -1, -1)

    def status(self, batch_id: str) -> SpendStatus:
        """The batch's spend, holds, last cap, overrun and last refusal."""
        raw = self._client.hmget(batch_key(batch_id), [*_FIELDS, "refused"])
        refused = raw[-1]
        return _status(raw[:-1], None, None if refused is None else _text(refused))

    def global_status(self, default_cap: float | None = None) -> SpendStatus:
        """The fleet's spend and holds; cap = the runtime cap, else ``default_cap``."""
        return _status(self._client.hmget(SPEND_GLOBAL_KEY, _FIELDS), default_cap, None)

    def set_global_cap(self, cap: float | None) -> None:
        """Set the fleet's cap at runtime; None removes it (the configured default applies)."""
        if cap is None:
            self._client.hdel(SPEND_GLOBAL_KEY, "cap")
        else:
            self._client.hset(SPEND_GLOBAL_KEY, "cap", str(to_micro(cap)))

    def global_cap(self) -> float | None:
        """The runtime cap set with :meth:`set_global_cap` (None: the default applies)."""
        raw = self._client.hget(SPEND_GLOBAL_KEY, "cap")
        return None if raw is None else from_micro(int(_text(raw)))

    def _run(
        self,
        op: str,
        batch_id: str,
        key: str,
        amount: int,
        batch_cap: int,
        global_cap: int,
        extra: Sequence[str | int] = (),
    ) -> _Reply:
        keys = [
            batch_key(batch_id),
            holds_key(batch_id),
            SPEND_GLOBAL_KEY,
            pending_key(batch_id),
            SPEND_PENDING_KEY,
        ]
        raw = self._script(keys=keys, args=[op, key, amount, batch_cap, global_cap, *extra])
        code, reason, *counters, overrun = raw
        return _Reply(int(code), _text(reason), tuple(int(c) for c in counters), int(overrun))
