"""Spend control: a price table per action, caps per batch and for the fleet, dry-run estimates.

The provider bills every *successful* call (CONTRACT.md §8), so money is only safe if
it is counted before it is spent. The protocol of a row (the feeder drives it)::

    reserve(batch, row key, estimate)   before any submission of the row; refused
                                        (batch_cap | global_cap) -> the batch pauses
    settle(batch, row key, actual=...)  when the row ends: the cost of the calls that
                                        succeeded (<= the estimate); the rest goes back
    release(batch, row key)             the row ended with nothing paid

:meth:`SpendGuard.reserve` runs ``spend.lua`` (beside this module): one atomic script
over the batch's counters and the fleet's, so ``spent + reserved <= cap`` holds for
each batch and globally with any number of feeders, workers and batches. Every call is
idempotent per ``(batch_id, key)``: a redelivered admission never counts twice.

Redis layout (prefix :data:`~pipelines.constants.SPEND_PREFIX`; amounts are integers of
micro-units of the price table's currency, so sums are exact)::

    producer:spend:batch:<batch_id>        hash  spent, reserved, overrun, cap, refused
    producer:spend:batch:<batch_id>:holds  hash  key -> h<micro> | s<micro> | r
    producer:spend:global                  hash  spent, reserved, overrun, cap (runtime)

Prices: :class:`PriceTable` loads ``prices.toml`` (beside this module; sources and
guesses documented there) and overlays ``PRODUCER_PRICES_FILE``. More in ``docs/spend.md``.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipelines.constants import SPEND_GLOBAL_KEY, SPEND_MICROS_PER_UNIT, SPEND_PREFIX
from producer_client import ACTIONS as AUDIO_ACTIONS
from workers.logging import get_logger
from workers.settings import get_settings

if TYPE_CHECKING:  # only a type here: pricing reads steps' action, name and repeat
    from pipelines.specs.spec import PipelineSpec

__all__ = [
    "ACTIONS",
    "Estimate",
    "EstimateLine",
    "PriceTable",
    "PriceTableError",
    "SpendDecision",
    "SpendGuard",
    "SpendStatus",
    "UnknownActionError",
    "estimate",
    "parse_amount",
]

# The 11 /producer/audios actions, then the quick endpoints (workers/operations/quick.py).
ACTIONS: tuple[str, ...] = (*AUDIO_ACTIONS, "upload", "lyrics", "wav", "videos")
USD, CREDITS = "USD", "credits"
_CURRENCY_NAMES = {"usd": USD, "$": USD, "credit": CREDITS, "credits": CREDITS}
_AMOUNT = re.compile(r"^\s*(\$)?\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)?\s*$")

SPEND_LUA = files("pipelines.spend").joinpath("scripts", "spend.lua").read_text(encoding="utf-8")
_DEFAULT_PRICES = files("pipelines.spend").joinpath("prices.toml")

log = get_logger(__name__)


class PriceTableError(ValueError):
    """The price table (built-in or a prices file) is invalid."""


class UnknownActionError(PriceTableError):
    """The action is not one of the API's actions, so it has no price."""


def _currency(name: str) -> str:
    """Normalise a currency name: USD ("usd", "$") or credits ("credit")."""
    found = _CURRENCY_NAMES.get(name.strip().lower())
    if found is None:
        raise PriceTableError(f"unknown currency {name!r}: use 'USD' or 'credits'")
    return found


def parse_amount(text: str, default_currency: str) -> tuple[float, str]:
    """Read ``"25"``, ``"25 USD"``, ``"$25"`` or ``"250 credits"`` as (amount, currency)."""
    match = _AMOUNT.match(text)
    if match is None:
        raise PriceTableError(f"not an amount: {text!r} (e.g. '25 USD' or '250 credits')")
    dollar, number, unit = match.groups()
    if dollar and unit and _currency(unit) != USD:
        raise PriceTableError(f"not an amount: {text!r} ($ and {unit})")
    unit = unit or ("USD" if dollar else default_currency)
    return float(number), _currency(unit)


def to_micro(amount: float) -> int:
    """An amount as integer micro-units (what Redis stores), refusing negatives and NaN."""
    if not math.isfinite(amount) or amount < 0:
        raise ValueError(f"spend amounts are finite and >= 0, got {amount!r}")
    return round(amount * SPEND_MICROS_PER_UNIT)


def from_micro(micro: int) -> float:
    """Integer micro-units back to an amount."""
    return micro / SPEND_MICROS_PER_UNIT


class PriceTable(BaseModel):
    """Price of one successful call per action, in USD or credits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: str = USD
    prices: dict[str, float]
    usd_per_credit: float = Field(default=0.095215, gt=0)

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        return _currency(value)

    @field_validator("prices")
    @classmethod
    def _every_action_priced(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(ACTIONS))
        if unknown:
            raise ValueError(f"unknown actions {unknown}; the actions are {list(ACTIONS)}")
        missing = [a for a in ACTIONS if a not in value]
        if missing:
            raise ValueError(f"no price for actions {missing}")
        negative = sorted(a for a, p in value.items() if not (math.isfinite(p) and p >= 0))
        if negative:
            raise ValueError(f"prices must be finite and >= 0: {negative}")
        return value

    @classmethod
    def load(cls, path: Path | None = None) -> PriceTable:
        """The built-in table, overlaid by ``path`` (else ``PRODUCER_PRICES_FILE``) if any."""
        base = _read_toml(_DEFAULT_PRICES.read_text(encoding="utf-8"), "built-in prices.toml")
        path = path or get_settings().prices_file
        if path is None:
            return cls._build(base, "built-in prices.toml")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise PriceTableError(f"prices file {path}: {exc.strerror or exc}") from exc
        override = _read_toml(text, str(path))
        try:
            merged = _overlay(base, override)
        except PriceTableError as exc:
            raise PriceTableError(f"{path}: {exc}") from None
        return cls._build(merged, str(path))

    @classmethod
    def _build(cls, values: Mapping[str, Any], source: str) -> PriceTable:
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                for e in exc.errors())
            raise PriceTableError(f"{source}: {details}") from None

    def call_cost(self, action: str) -> float:
        """Price of one successful call of ``action``."""
        try:
            return self.prices[action]
        except KeyError:
            raise UnknownActionError(
                f"unknown action {action!r}; the actions are {list(ACTIONS)}"
            ) from None

    def row_cost(self, spec: PipelineSpec) -> float:
        """Cost of one row of ``spec`` if every call succeeds (summed exactly in micro-units)."""
        micro = sum(to_micro(self.call_cost(s.action)) * s.repeat for s in spec.steps)
        return from_micro(micro)

    def to_currency(self, amount: float, currency: str) -> float:
        """``amount`` in this table's currency, expressed in ``currency``."""
        return _convert(amount, self.currency, _currency(currency), self.usd_per_credit)

    def from_currency(self, amount: float, currency: str) -> float:
        """``amount`` in ``currency``, expressed in this table's currency."""
        return _convert(amount, _currency(currency), self.currency, self.usd_per_credit)

    def parse_cap(self, value: str | float | None) -> float | None:
        """A cap (``"25 USD"``, ``"250 credits"``, a bare number) in this table's currency."""
        if value is None or isinstance(value, int | float):
            return None if value is None else float(value)
        amount, currency = parse_amount(value, self.currency)
        return self.from_currency(amount, currency)


def _convert(amount: float, source: str, target: str, usd_per_credit: float) -> float:
    if source == target:
        return amount
    return amount * usd_per_credit if source == CREDITS else amount / usd_per_credit


def _read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PriceTableError(f"{source}: not valid TOML: {exc}") from None


def _overlay(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``; base prices are converted first if the currency changes."""
    merged = {**base, **{k: v for k, v in override.items() if k != "prices"}}
    source, target = _currency(str(base["currency"])), _currency(str(merged["currency"]))
    rate = merged["usd_per_credit"]
    if not isinstance(rate, int | float) or rate <= 0:
        raise PriceTableError(f"usd_per_credit must be a number > 0, got {rate!r}")
    prices = {a: _convert(float(p), source, target, float(rate))
              for a, p in base["prices"].items()}
    extra = override.get("prices", {})
    if not isinstance(extra, dict):
        raise PriceTableError("[prices] must be a table of action = price")
    merged["prices"] = {**prices, **extra}
    return merged


@dataclass(frozen=True)
class EstimateLine:
    """One step of a dry run: its calls over all rows and their cost."""

    step: str
    action: str
    calls: int
    unit_price: float
    cost: float


ESTIMATE_HEADERS = ("step", "action", "calls", "unit price", "cost")


@dataclass(frozen=True)
class Estimate:
    """What a batch would cost if every call succeeded (``--dry-run``)."""

    rows: int
    calls_per_step: dict[str, int]
    calls_per_action: dict[str, int]
    cost: float
    currency: str
    lines: tuple[EstimateLine, ...] = ()

    @property
    def calls(self) -> int:
        """Calls in all."""
        return sum(self.calls_per_step.values())

    def table_rows(self) -> list[tuple[str, str, str, str, str]]:
        """One row per step plus a total row, as text (columns: :data:`ESTIMATE_HEADERS`)."""
        body = [(ln.step, ln.action, str(ln.calls), _money(ln.unit_price), _money(ln.cost))
                for ln in self.lines]
        return [*body, ("total", "", str(self.calls), "", f"{_money(self.cost)} {self.currency}")]

    def summary(self) -> str:
        """One line: rows, calls and the estimated cost."""
        return (f"{self.rows} rows, {self.calls} calls, "
                f"estimated cost {_money(self.cost)} {self.currency}")


def _money(amount: float) -> str:
    return f"{amount:.6f}".rstrip("0").rstrip(".")


def estimate(spec: PipelineSpec, rows: int, prices: PriceTable) -> Estimate:
    """Calls per step and per action, and the cost, of ``rows`` rows of ``spec``."""
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    lines: list[EstimateLine] = []
    per_step: dict[str, int] = {}
    per_action: dict[str, int] = {}
    for step in spec.steps:
        calls, unit = step.repeat * rows, prices.call_cost(step.action)
        lines.append(EstimateLine(step.name, step.action, calls, unit,
                                  from_micro(to_micro(unit) * calls)))
        per_step[step.name] = per_step.get(step.name, 0) + calls
        per_action[step.action] = per_action.get(step.action, 0) + calls
    total = sum(to_micro(ln.unit_price) * ln.calls for ln in lines)
    return Estimate(rows, per_step, per_action, from_micro(total), prices.currency, tuple(lines))


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
        spent=from_micro(spent or 0), reserved=from_micro(reserved or 0),
        cap=default_cap if cap is None else _cap_value(cap),
        overrun=from_micro(overrun or 0), refused=refused,
    )


def batch_key(batch_id: str) -> str:
    """The totals hash of a batch."""
    return f"{SPEND_PREFIX}batch:{batch_id}"


def holds_key(batch_id: str) -> str:
    """The reservations hash of a batch (one field per key)."""
    return f"{SPEND_PREFIX}batch:{batch_id}:holds"


class SpendGuard:
    """Reservations against caps, shared by every process through one Redis.

    Amounts and caps are in one currency: the price table's (convert caps given in the
    other unit with :meth:`PriceTable.parse_cap`). Resolution: one micro-unit (1e-6).
    """

    def __init__(self, redis_client: redis.Redis) -> None:
        self._client = redis_client
        self._script = redis_client.register_script(SPEND_LUA)

    def reserve(
        self, batch_id: str, key: str, amount: float, *,
        batch_cap: float | None, global_cap: float | None,
    ) -> SpendDecision:
        """Hold ``amount`` for ``key`` if it fits under both caps; idempotent per key.

        ``global_cap`` is the configured default; a cap set with :meth:`set_global_cap`
        wins over it. Re-reserving a held or settled key grants without counting again;
        a released key is reserved afresh.
        """
        reply = self._run("reserve", batch_id, key, to_micro(amount),
                          _cap_arg(batch_cap), _cap_arg(global_cap))
        b_spent, b_res, b_cap, g_spent, g_res, g_cap = reply.counters
        return SpendDecision(
            granted=reply.code == 1, reason=reply.reason or None,
            batch_spent=from_micro(b_spent), batch_reserved=from_micro(b_res),
            batch_cap=_cap_value(b_cap), global_spent=from_micro(g_spent),
            global_reserved=from_micro(g_res), global_cap=_cap_value(g_cap),
        )

    def settle(self, batch_id: str, key: str, *, actual: float) -> None:
        """Turn the hold into ``actual`` spend (the rest returns); idempotent.

        Spend above the hold (or with no hold) is still recorded, because the provider
        took it, and counted in ``overrun`` with a warning: a cap may then be exceeded.
        """
        reply = self._run("settle", batch_id, key, to_micro(actual), -1, -1)
        if reply.overrun:
            log.warning("spend_overrun", batch_id=batch_id, key=key, actual=actual,
                        overrun=from_micro(reply.overrun))

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

    def _run(self, op: str, batch_id: str, key: str, amount: int,
             batch_cap: int, global_cap: int) -> _Reply:
        keys = [batch_key(batch_id), holds_key(batch_id), SPEND_GLOBAL_KEY]
        raw = self._script(keys=keys, args=[op, key, amount, batch_cap, global_cap])
        code, reason, *counters, overrun = raw
        return _Reply(int(code), _text(reason), tuple(int(c) for c in counters), int(overrun))
