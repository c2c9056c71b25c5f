"""Templates in pipeline params, and checking params against the client's models.

A param value in a pipeline file is a literal, or *exactly* one template:

* ``"{row.COLUMN}"`` — the row's cell (the column must exist; an empty cell omits the param);
* ``"{row.COLUMN?}"`` — the same, but the column may be missing from the file;
* ``"{steps.NAME.FIELD}"`` — a field of an earlier step's result, resolved by the worker
  (``NAME#2`` names one copy of a repeated step).

This module parses them and validates a step's params with the placeholders a check
needs. It knows nothing of pipelines or rows: :mod:`pipelines.specs.spec` and
:mod:`pipelines.specs.canvas` say which params are unknown and where errors came from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from producer_client import FieldError, ParamsValidationError, params_model_for
from workers.operations.actions import OUTPUT_FIELDS, action, quick_action
from workers.operations.params import REF_KEY

STEP_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_ROW = re.compile(r"^\{row\.(?P<column>[A-Za-z0-9_][A-Za-z0-9_.-]*)(?P<optional>\?)?\}$")
_STEPS = re.compile(
    r"^\{steps\.(?P<step>[A-Za-z0-9_-]+)(?:#(?P<copy>[1-9][0-9]*))?\.(?P<field>[A-Za-z_]+)\}$"
)
# Any value holding one of these is meant as a template, so a typo is an error, not a literal.
_TEMPLATE_HINTS = ("{row", "{step")

# Valid stand-ins for a step reference, by the field it names: params are checked
# before any step ran, and a real value of that kind must be accepted there.
# (A test checks there is one for every field of the catalogue's OUTPUT_FIELDS.)
PLACEHOLDERS: Mapping[str, Any] = {
    "audio_id": "00000000-0000-4000-8000-000000000000",
    "duration": 60.0,
    "title": "Title",
    "seed": "1",
    "model": "FUZZ-2.0",
    "api_task_id": "00000000-0000-4000-8000-000000000001",
    "lyric": "[Verse]\nla la la",
}


class TemplateError(ValueError):
    """A value that looks like a template but is not a valid one."""


@dataclass(frozen=True)
class RowRef:
    """``{row.COLUMN}`` or ``{row.COLUMN?}``."""

    column: str
    optional: bool = False


@dataclass(frozen=True)
class StepRef:
    """``{steps.NAME.FIELD}``; ``copy`` is N in ``NAME#N`` (one copy of a repeated step)."""

    step: str
    field: str
    copy: int | None = None

    @property
    def target(self) -> str:
        """The step name as the worker's ``outputs`` know it (``NAME`` or ``NAME#N``)."""
        return self.step if self.copy is None else f"{self.step}#{self.copy}"

    def marker(self) -> dict[str, str]:
        """What the worker receives in place of the value: ``{"$ref": "steps.NAME.FIELD"}``."""
        return {REF_KEY: f"steps.{self.target}.{self.field}"}

    def placeholder(self) -> Any:
        """A valid value of the kind this reference will produce, for validation."""
        return PLACEHOLDERS[self.field]


def parse_template(value: Any) -> RowRef | StepRef | None:
    """The template ``value`` is, ``None`` for a literal; raises :class:`TemplateError`."""
    if not isinstance(value, str) or not any(h in value for h in _TEMPLATE_HINTS):
        return None
    row = _ROW.match(value)
    if row:
        return RowRef(row["column"], optional=bool(row["optional"]))
    steps = _STEPS.match(value)
    if steps is None:
        raise TemplateError(
            f"bad template {value!r}: a templated value must be exactly "
            "{row.COLUMN}, {row.COLUMN?} or {steps.NAME.FIELD}"
        )
    if steps["field"] not in OUTPUT_FIELDS:
        raise TemplateError(
            f"unknown field {steps['field']!r} in {value}; a step's outputs "
            f"are: {', '.join(OUTPUT_FIELDS)}"
        )
    copy = int(steps["copy"]) if steps["copy"] else None
    return StepRef(steps["step"], steps["field"], copy)


def param_names(name: str) -> frozenset[str]:
    """The params action ``name`` accepts."""
    if action(name).is_quick:
        return frozenset({str(quick_action(name).input_field)})
    return frozenset(params_model_for(name).model_fields) - {"action"}


def check_params(
    action: str, params: Mapping[str, Any], *, unknown: Collection[str] = ()
) -> list[FieldError]:
    """Problems of ``params`` for ``action``; values of ``unknown`` params are not known yet.

    An unknown param must still be a field of the action, but its value is left out and
    errors about it (``field required`` ...) are dropped: they are decided per row.
    """
    accepted = param_names(action)
    errors = [FieldError(name, "unknown field") for name in unknown if name not in accepted]
    known = {k: v for k, v in params.items() if k not in unknown}
    found = _quick_errors(action, known) if _is_quick(action) else _model_errors(action, known)
    return errors + [_name_non_finite(e, known) for e in found if e.field not in unknown]


def _name_non_finite(error: FieldError, params: Mapping[str, Any]) -> FieldError:
    """The error of a NaN or infinite number says so, not "must be >= 0".

    ``"nan"`` and ``"inf"`` (a cell, or TOML's own nan/inf) parse as floats that fail a
    range check, whose message would hide what is wrong.
    """
    value = params.get(error.field)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return error
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return error
    if math.isnan(number):
        return FieldError(error.field, f"{value!r} is not a number")
    if math.isinf(number):
        return FieldError(error.field, f"{value!r} is not a finite number")
    return error


def coerce_params(action: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
    """``params`` converted to the types ``action`` expects (``"0.5"`` -> 0.5); None if invalid."""
    if _is_quick(action):
        return dict(params)
    try:
        model = params_model_for(action)(**params)
    except ParamsValidationError:
        return None
    return model.model_dump(mode="json")


def _is_quick(name: str) -> bool:
    return action(name).is_quick


def _model_errors(action: str, params: Mapping[str, Any]) -> list[FieldError]:
    try:
        params_model_for(action)(**params)
    except ParamsValidationError as exc:
        return list(exc.errors)
    return []


def _quick_errors(action: str, params: Mapping[str, Any]) -> list[FieldError]:
    """The worker's own checks of a quick call (``quick_body``), plus an http(s) upload URL."""
    field = str(quick_action(action).input_field)
    errors = [
        FieldError(name, "extra inputs are not permitted") for name in params if name != field
    ]
    value = params.get(field)
    if field not in params:
        errors.append(FieldError(field, "field required"))
    elif not isinstance(value, str) or not value.strip():
        errors.append(FieldError(field, "must be a non-empty string"))
    elif action == "upload" and urlsplit(value).scheme not in ("http", "https"):
        errors.append(FieldError(field, "must be an http(s) URL"))
    return errors
