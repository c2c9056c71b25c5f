"""Prices per action and amounts: the price table, caps given with a unit, micro-units.

The provider bills every *successful* call (CONTRACT.md §8). :class:`PriceTable` loads
``prices.toml`` (beside this module; sources and guesses documented there) and overlays
a user's file (``Settings.prices_file``, ``PRODUCER_PRICES_FILE``, passed in by the
edge). Amounts are summed as integers of micro-units (:func:`to_micro`), so sums are
exact. More in ``docs/spend.md``.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipelines.constants import SPEND_MICROS_PER_UNIT
from pipelines.specs.spec import PipelineSpec
from workers.operations.actions import KNOWN_ACTIONS

__all__ = [
    "ACTIONS",
    "CREDITS",
    "USD",
    "PriceTable",
    "PriceTableError",
    "UnknownActionError",
    "from_micro",
    "parse_amount",
    "to_micro",
]

# Every action of the catalogue: the /producer/audios ones, then the quick endpoints.
ACTIONS: tuple[str, ...] = KNOWN_ACTIONS
USD, CREDITS = "USD", "credits"
_CURRENCY_NAMES = {"usd": USD, "$": USD, "credit": CREDITS, "credits": CREDITS}
_AMOUNT = re.compile(r"^\s*(\$)?\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)?\s*$")

_DEFAULT_PRICES = files("pipelines.spend").joinpath("prices.toml")


class PriceTableError(ValueError):
    """The price table (built-in or a prices file) is invalid."""


class UnknownActionError(PriceTableError):
    """The action is not one of the API's actions, so it has no price."""


def _bad_amount(amount: float) -> str | None:
    """Why ``amount`` is no price or cap (NaN named as such, not as "must be >= 0")."""
    if math.isnan(amount):
        return "not a number (nan)"
    if math.isinf(amount):
        return f"not finite ({amount!r})"
    return "below 0" if amount < 0 else None


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
    why = _bad_amount(amount)
    if why is not None:
        raise ValueError(f"spend amounts are finite and >= 0, got {amount!r}: {why}")
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
        problems = [f"{a}: {why}" for a, p in sorted(value.items()) if (why := _bad_amount(p))]
        if problems:
            raise ValueError(f"prices must be finite and >= 0 ({'; '.join(problems)})")
        return value

    @field_validator("usd_per_credit", mode="before")
    @classmethod
    def _finite_rate(cls, value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(
                f"{value!r} is {'not a number' if math.isnan(value) else 'not finite'}"
            )
        return value

    @classmethod
    def load(cls, path: Path | None = None) -> PriceTable:
        """The built-in table, overlaid by ``path`` if given.

        ``path`` is the user's prices file: the edge passes ``Settings.prices_file``
        (``PRODUCER_PRICES_FILE``); nothing here reads the environment.
        """
        base = _read_toml(_DEFAULT_PRICES.read_text(encoding="utf-8"), "built-in prices.toml")
        if path is None:
            return cls._build(base, "built-in prices.toml")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise PriceTableError(f"prices file {path}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise PriceTableError(f"prices file {path}: not UTF-8 ({exc.reason})") from None
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
            details = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            )
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
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively.
        raise PriceTableError(
            f"{source}: not valid TOML: arrays or tables nest too deeply"
        ) from None


def _overlay(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``; base prices are converted first if the currency changes."""
    merged = {**base, **{k: v for k, v in override.items() if k != "prices"}}
    source, target = _currency(str(base["currency"])), _currency(str(merged["currency"]))
    rate = merged["usd_per_credit"]
    if (
        not isinstance(rate, int | float)
        or isinstance(rate, bool)
        or _bad_amount(rate)
        or rate <= 0
    ):
        why = _bad_amount(rate) if isinstance(rate, float) else None
        raise PriceTableError(
            f"usd_per_credit must be a number > 0, got {rate!r}" + (f": {why}" if why else "")
        )
    prices = {a: _convert(float(p), source, target, float(rate)) for a, p in base["prices"].items()}
    extra = override.get("prices", {})
    if not isinstance(extra, dict):
        raise PriceTableError("[prices] must be a table of action = price")
    merged["prices"] = {**prices, **extra}
    return merged
