"""A pipeline plus one row: its validation, and the Celery canvas that runs it.

This is the only place canvases are built or walked. A row becomes a ``chain`` of step
signatures (``producer.<action>`` tasks); a step with ``repeat = N`` becomes a
``group`` of N copies, which Celery turns, with the step after it, into a chord —
that step then receives the list of the copies' results. Row templates are filled
in here; step references stay ``{"$ref": "steps.NAME.FIELD"}`` markers that the
worker resolves when the earlier step has run (``workers/operations/params.py``).

A batch row's canvas also gets deterministic task ids and its completion callbacks
here (:func:`finish_row_canvas`); which callbacks, the feeder decides.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from celery import chain, group, signature
from celery.canvas import Signature, _chain, chord

from pipelines.specs.refs import RowRef, StepRef, coerce_params
from pipelines.specs.spec import PipelineSpec, check_step_values, with_implicit


@dataclass(frozen=True)
class RowError:
    """One problem of one row; ``row`` is the CSV line number the caller gave."""

    row: int
    column: str | None
    message: str


@dataclass
class _Filled:
    """A step's params for one row, and where each templated value came from."""

    values: dict[str, Any]
    """Params as the worker will get them; step references as placeholders or markers."""
    columns: dict[str, str]
    """Param -> the column its value came from (also for an empty cell left out)."""
    empty: set[str]
    """Params left out because their cell was empty (or an optional column is missing)."""
    missing: dict[str, str]
    """Param -> required column absent from the row."""


def _fill(spec: PipelineSpec, index: int, values: Mapping[str, str], *, markers: bool) -> _Filled:
    """Replace the templates of step ``index`` with the row's cells and step references."""
    filled = _Filled({}, {}, set(), {})
    templates = dict(spec.steps[index].templates())
    for param, value in spec.steps[index].params.items():
        ref = templates.get(param)
        if isinstance(ref, StepRef):
            filled.values[param] = ref.marker() if markers else ref.placeholder()
        elif isinstance(ref, RowRef):
            _fill_cell(filled, param, ref, values)
        else:
            filled.values[param] = value
    return filled


def _fill_cell(filled: _Filled, param: str, ref: RowRef, values: Mapping[str, str]) -> None:
    filled.columns[param] = ref.column
    if ref.column not in values:
        if not ref.optional:
            filled.missing[param] = ref.column
        filled.empty.add(param)
        return
    cell = values[ref.column]
    # An empty cell means "not given": the param is left out and the action's default
    # (or the worker's value from the previous step) applies.
    if isinstance(cell, str) and not cell.strip():
        filled.empty.add(param)
    else:
        filled.values[param] = cell


def validate_row(spec: PipelineSpec, values: Mapping[str, str], *, row: int) -> list[RowError]:
    """Every problem of ``values`` for ``spec``, as the steps' params models see them.

    Reports missing required columns, and each param a row cell makes invalid (out of
    range, unknown model, a prompt over 200 characters, an empty cell where the action
    needs a value ...) naming the column it came from. Never raises for bad data.
    """
    errors: list[RowError] = []
    seen: set[tuple[str | None, str]] = set()
    for index in range(len(spec.steps)):
        for error in _step_errors(spec, index, values, row):
            # One bad cell used by several steps is reported once.
            key = (error.column, error.message.split(": ", 1)[-1])
            if error.column is None or key not in seen:
                seen.add(key)
                errors.append(error)
    return errors


def _step_errors(
    spec: PipelineSpec, index: int, values: Mapping[str, str], row: int
) -> list[RowError]:
    step = spec.steps[index]
    filled = _fill(spec, index, values, markers=False)
    errors = [
        RowError(
            row,
            column,
            f"missing column {column!r} (step {step.name!r}, "
            f"param {param!r}): the pipeline {spec.name!r} needs it",
        )
        for param, column in filled.missing.items()
    ]
    for error in check_step_values(spec, index, filled.values, set(filled.missing)):
        column = filled.columns.get(error.field)
        errors.append(
            RowError(
                row,
                column,
                _message(
                    step.name, error.field, error.message, column, error.field in filled.empty
                ),
            )
        )
    return errors


def _message(step: str, param: str, problem: str, column: str | None, empty: bool) -> str:
    where = f"step {step!r}, param {param!r}"
    if column is None:
        return f"{where}: {problem}"
    if empty:
        return f"column {column!r} is empty but {where} needs a value: {problem}"
    return f"column {column!r} ({where}): {problem}"


def build_row_canvas(
    spec: PipelineSpec, values: Mapping[str, str], *, batch_id: str, row: int
) -> Signature:
    """The Celery canvas of one row: a chain of its steps (a group per repeated step).

    Each step signature gets ``params`` (row cells filled in, converted to the types
    the action expects when the row is valid; step references as ``$ref`` markers) and
    ``context = {"batch", "row", "step"}`` from which the worker derives the step's
    idempotency key (copies of a repeated step are ``NAME#1 .. NAME#N``). Validate the
    row first (:func:`validate_row`): an invalid one makes its steps fail with
    ``invalid_params`` at the worker instead.
    """
    parts: list[Signature] = []
    for index, step in enumerate(spec.steps):
        params = _row_params(spec, index, values)
        copies = [
            _signature(step.action, params, batch_id, row, name) for name in step.copy_names()
        ]
        parts.append(copies[0] if step.repeat == 1 else group(copies))
    return chain(*parts)


def _row_params(spec: PipelineSpec, index: int, values: Mapping[str, str]) -> dict[str, Any]:
    """Step ``index``'s params for the worker: typed row values, ``$ref`` markers."""
    with_markers = _fill(spec, index, values, markers=True).values
    checked = _fill(spec, index, values, markers=False)
    typed = (
        coerce_params(spec.steps[index].action, with_implicit(spec, index, checked.values)) or {}
    )
    # Only row cells are converted ("0.5" -> 0.5, "true" -> True); literals and
    # markers stay as written.
    return {
        param: typed.get(param, value) if param in checked.columns else value
        for param, value in with_markers.items()
    }


def _signature(
    action: str, params: dict[str, Any], batch_id: str, row: int, step: str
) -> Signature:
    context = {"batch": batch_id, "row": row, "step": step}
    # By name, app-free: the canvas is sent through the app of whoever applies it, and
    # this module needs no app (pipelines.app imports the batch tasks that import it).
    return signature(f"producer.{action}", kwargs={"params": dict(params), "context": context})


def calls_per_row(spec: PipelineSpec) -> dict[str, int]:
    """Paid calls one row makes, by action (a repeated step counts each copy)."""
    counts: Counter[str] = Counter()
    for step in spec.steps:
        counts[step.action] += step.repeat
    return dict(counts)


def task_id(batch_id: str, row: int, step: str, attempt: int) -> str:
    """The Celery task id of one step of one admission of a batch row."""
    return f"{batch_id}:{row}:{step}:{attempt}"


def step_plan(canvas: Signature) -> list[tuple[str, str]]:
    """``(step, action)`` of every step task in ``canvas``, in order (copies included)."""
    if isinstance(canvas, list | tuple):  # a chord's header
        return [pair for task in canvas for pair in step_plan(task)]
    if isinstance(canvas, _chain | group):
        return [pair for task in canvas.tasks for pair in step_plan(task)]
    if isinstance(canvas, chord):
        return [*step_plan(canvas.tasks), *step_plan(canvas.body)]
    action = str(canvas.task).removeprefix("producer.")
    context = canvas.kwargs.get("context") or {}
    return [(str(context.get("step") or action), action)]


def plan_levels(plan: list[tuple[str, str]]) -> list[int]:
    """The pipeline step index of each plan entry (copies ``NAME#k`` share their step's)."""
    levels: list[int] = []
    previous = None
    for step, _ in plan:
        base = step.split("#", 1)[0]
        levels.append(len(levels) and levels[-1] + (base != previous))
        previous = base
    return levels


def assign_task_ids(canvas: Signature, batch_id: str, row: int, attempt: int) -> None:
    """Give every step of a row's canvas its deterministic :func:`task_id`."""
    if isinstance(canvas, list | tuple | _chain | group):
        for task in canvas if isinstance(canvas, list | tuple) else canvas.tasks:
            assign_task_ids(task, batch_id, row, attempt)
        return
    if isinstance(canvas, chord):
        assign_task_ids(canvas.tasks, batch_id, row, attempt)
        assign_task_ids(canvas.body, batch_id, row, attempt)
        return
    step = str((canvas.kwargs.get("context") or {}).get("step") or canvas.task)
    canvas.set(task_id=task_id(batch_id, row, step, attempt))


def finish_row_canvas(canvas: Signature, *, done: Signature, failed: Signature) -> Signature:
    """``canvas`` followed by ``done``, with ``failed`` as the errback of the whole."""
    full: Signature = canvas | done
    full.link_error(failed)
    return full
