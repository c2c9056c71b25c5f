"""Dry-run estimates: what a batch would cost if every call succeeded (``--dry-run``)."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.specs.spec import PipelineSpec
from pipelines.spend.prices import PriceTable, from_micro, to_micro

__all__ = ["ESTIMATE_HEADERS", "Estimate", "EstimateLine", "estimate"]


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
        body = [
            (ln.step, ln.action, str(ln.calls), _money(ln.unit_price), _money(ln.cost))
            for ln in self.lines
        ]
        return [*body, ("total", "", str(self.calls), "", f"{_money(self.cost)} {self.currency}")]

    def summary(self) -> str:
        """One line: rows, calls and the estimated cost."""
        return (
            f"{self.rows} rows, {self.calls} calls, "
            f"estimated cost {_money(self.cost)} {self.currency}"
        )


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
        lines.append(
            EstimateLine(step.name, step.action, calls, unit, from_micro(to_micro(unit) * calls))
        )
        per_step[step.name] = per_step.get(step.name, 0) + calls
        per_action[step.action] = per_action.get(step.action, 0) + calls
    total = sum(to_micro(ln.unit_price) * ln.calls for ln in lines)
    return Estimate(rows, per_step, per_action, from_micro(total), prices.currency, tuple(lines))
