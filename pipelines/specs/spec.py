"""Named pipelines: what they are and how they are checked.

A pipeline is an ordered list of steps; each step names an action and its params.
Files of them are read by :mod:`pipelines.specs.loader`. The format and the template
syntax are in ``docs/pipelines.md``::

    [pipelines.generate-extend]
    description = "a song, then more of it"

    [[pipelines.generate-extend.steps]]
    name = "gen"
    action = "generate"
    params = { prompt = "{row.prompt}", seed = "{row.seed?}" }

    [[pipelines.generate-extend.steps]]
    name = "extend"
    action = "extend"
    params = { audio_id = "{steps.gen.audio_id}", continue_at = "{steps.gen.duration}" }

Everything that can be known without a row is checked when a spec is built: known
actions, step references (to an earlier step, a field a step has), and every literal
param against the client's params models. A problem raises :class:`PipelineSpecError`
naming the pipeline, the step and the field.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipelines.specs.refs import (
    STEP_NAME,
    RowRef,
    StepRef,
    TemplateError,
    check_params,
    parse_template,
)
from producer_client import FieldError
from workers.operations.actions import KNOWN_ACTIONS
from workers.operations.actions import action as catalogue_action

MAX_REPEAT = 10
"""Most copies of one step in a row (each copy is a paid call)."""

# Placeholders for what a worker fills in from the previous step when a param is not given
# (workers/operations/params.py): the previous song's id, and extend's start at its end.
_IMPLICIT_AUDIO_ID = "00000000-0000-4000-8000-00000000000a"
_IMPLICIT_CONTINUE_AT = 60.0


class PipelineSpecError(ValueError):
    """A pipeline definition is invalid; the message names pipeline, step and field.

    ``problems`` holds one line per problem; the message is those lines joined.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class UnknownPipelineError(KeyError):
    """No pipeline of that name; the message lists the known ones."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        self.message = f"unknown pipeline {name!r}; known pipelines: {', '.join(known)}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class StepSpec(BaseModel):
    """One step: an action, its params (literals and templates), and how many copies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    repeat: int = Field(default=1, ge=1, le=MAX_REPEAT)

    def templates(self) -> Iterator[tuple[str, RowRef | StepRef]]:
        """``(param, template)`` for every templated param (the spec must be valid)."""
        for param, value in self.params.items():
            ref = parse_template(value)
            if ref is not None:
                yield param, ref

    def copy_names(self) -> list[str]:
        """The step names of its copies: ``[name]``, or ``name#1 .. name#N`` when repeated."""
        if self.repeat == 1:
            return [self.name]
        return [f"{self.name}#{i}" for i in range(1, self.repeat + 1)]


class _Problems(ValueError):
    """Carries the problems found by the semantic check through pydantic's validation."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class PipelineSpec(BaseModel):
    """A named, validated pipeline. Building one with bad data raises PipelineSpecError."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    steps: list[StepSpec] = Field(min_length=1)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise PipelineSpecError(_translate(exc, data)) from None

    @model_validator(mode="after")
    def _check(self) -> PipelineSpec:
        problems = pipeline_problems(self)
        if problems:
            raise _Problems(problems)
        return self

    def columns(self) -> tuple[frozenset[str], frozenset[str]]:
        """``(required, optional)`` row columns the steps read (``{row.X}`` / ``{row.X?}``)."""
        refs = [
            ref for step in self.steps for _, ref in step.templates() if isinstance(ref, RowRef)
        ]
        required = frozenset(r.column for r in refs if not r.optional)
        return required, frozenset(r.column for r in refs if r.optional) - required


def where(pipeline: str, step: str | None, kind: str, name: str) -> str:
    """The prefix of a problem: ``pipeline 'x', step 'y', param 'z'``."""
    step_part = f", step {step!r}" if step is not None else ""
    return f"pipeline {pipeline!r}{step_part}, {kind} {name!r}"


def pipeline_problems(spec: PipelineSpec) -> list[str]:
    """Every problem of ``spec`` that does not depend on a row."""
    problems: list[str] = []
    if not STEP_NAME.match(spec.name):
        problems.append(
            f"{where(spec.name, None, 'field', 'name')}: a pipeline name may hold "
            "only letters, digits, '_' and '-'"
        )
    seen: set[str] = set()
    for index, step in enumerate(spec.steps):
        problems.extend(_step_problems(spec, index, seen))
        seen.add(step.name)
    return problems


def _step_problems(spec: PipelineSpec, index: int, earlier: set[str]) -> list[str]:
    step = spec.steps[index]
    problems = [
        f"{where(spec.name, step.name, 'field', field)}: {message}"
        for field, message in _identity_problems(step, earlier)
    ]
    templates, bad = _step_templates(spec, index)
    problems.extend(
        f"{where(spec.name, step.name, 'param', param)}: {message}" for param, message in bad
    )
    # Params are checked only once their templates make sense (else errors would repeat).
    if step.action in KNOWN_ACTIONS and not bad:
        unknown = {p for p, t in templates.items() if isinstance(t, RowRef)}
        values = _placeholder_values(step, templates, unknown)
        problems.extend(
            f"{where(spec.name, step.name, 'param', e.field)}: {e.message}"
            for e in check_step_values(spec, index, values, unknown)
        )
    return problems


def _placeholder_values(
    step: StepSpec, templates: dict[str, RowRef | StepRef], unknown: set[str]
) -> dict[str, Any]:
    """The step's params with step references as placeholders and row references left out."""
    values: dict[str, Any] = {}
    for param, value in step.params.items():
        ref = templates.get(param)
        if param not in unknown:
            values[param] = ref.placeholder() if isinstance(ref, StepRef) else value
    return values


def _step_templates(
    spec: PipelineSpec, index: int
) -> tuple[dict[str, RowRef | StepRef], list[tuple[str, str]]]:
    """``({param: template}, [(param, problem)])`` of step ``index``."""
    templates: dict[str, RowRef | StepRef] = {}
    bad: list[tuple[str, str]] = []
    for param, value in spec.steps[index].params.items():
        try:
            ref = parse_template(value)
        except TemplateError as exc:
            bad.append((param, str(exc)))
            continue
        problem = _ref_problem(spec, index, ref, value) if isinstance(ref, StepRef) else None
        if problem:
            bad.append((param, problem))
        elif ref is not None:
            templates[param] = ref
    return templates, bad


def _identity_problems(step: StepSpec, earlier: set[str]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if not STEP_NAME.match(step.name):
        problems.append(("name", "a step name may hold only letters, digits, '_' and '-'"))
    elif step.name in earlier:
        problems.append(("name", f"duplicate step name {step.name!r}"))
    if step.action not in KNOWN_ACTIONS:
        problems.append(
            (
                "action",
                f"unknown action {step.action!r}; expected one of: {', '.join(KNOWN_ACTIONS)}",
            )
        )
    return problems


def _ref_problem(spec: PipelineSpec, index: int, ref: StepRef, text: str) -> str | None:
    names = [s.name for s in spec.steps]
    if ref.step not in names:
        return f"unknown step {ref.step!r} in {text}"
    target = names.index(ref.step)
    if target == index:
        return f"step {ref.step!r} refers to itself in {text}"
    if target > index:
        return f"step {ref.step!r} runs after this step, so {text} is not known yet"
    repeat, action = spec.steps[target].repeat, spec.steps[target].action
    if ref.copy is not None and ref.copy > repeat:
        return f"step {ref.step!r} runs {repeat} time(s), there is no copy #{ref.copy} in {text}"
    if ref.field not in catalogue_action(action).outputs:
        return f"step {ref.step!r} ({action}) has no output {ref.field!r} in {text}"
    return None


def check_step_values(
    spec: PipelineSpec, index: int, values: dict[str, Any], unknown: set[str]
) -> list[FieldError]:
    """Check step ``index``'s params as the worker will see them.

    ``values`` are the params with templates replaced (row cells, step-reference
    placeholders); ``unknown`` params have no value yet (they are checked per row).
    Params the worker fills in from the previous step when missing (``audio_id``,
    extend's ``continue_at``) get placeholders, so only what a step must be given
    is required.
    """
    filled = with_implicit(spec, index, values)
    return check_params(spec.steps[index].action, filled, unknown=unknown)


def with_implicit(spec: PipelineSpec, index: int, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` plus placeholders for what the worker takes from the previous step."""
    action = spec.steps[index].action
    filled = dict(values)
    prev = spec.steps[index - 1].action if index > 0 else None
    known = action in KNOWN_ACTIONS and prev in KNOWN_ACTIONS
    if not known or prev is None:
        return filled
    # The worker fills these from the previous step's outputs (lyrics has no audio_id;
    # only /audios results carry a duration).
    this, before = catalogue_action(action), catalogue_action(prev)
    if this.needs_audio_id and "audio_id" in before.outputs:
        filled.setdefault("audio_id", _IMPLICIT_AUDIO_ID)
    if this.continues_at_end and "duration" in before.outputs:
        filled.setdefault("continue_at", _IMPLICIT_CONTINUE_AT)
    return filled


def _translate(exc: ValidationError, data: dict[str, Any]) -> list[str]:
    """Turn pydantic's errors into problem lines naming pipeline, step and field."""
    pipeline = str(data.get("name", "?"))
    problems: list[str] = []
    for error in exc.errors():
        inner = (error.get("ctx") or {}).get("error")
        if isinstance(inner, _Problems):
            problems.extend(inner.problems)
            continue
        problems.append(_structural_problem(pipeline, error, data))
    return problems


def _structural_problem(pipeline: str, error: Any, data: dict[str, Any]) -> str:
    loc = list(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    if len(loc) >= 3 and loc[0] == "steps" and isinstance(loc[1], int):
        return f"{where(pipeline, _step_label(data, loc[1]), 'field', str(loc[2]))}: {message}"
    field = ".".join(str(part) for part in loc) or "pipeline"
    return f"{where(pipeline, None, 'field', field)}: {message}"


def _step_label(data: dict[str, Any], index: int) -> str:
    steps = data.get("steps")
    raw = steps[index] if isinstance(steps, list) and index < len(steps) else None
    name = raw.get("name") if isinstance(raw, dict) else None
    return str(name) if name else f"#{index + 1}"
