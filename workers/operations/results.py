"""What a step returns: a typed, JSON-serializable record of what was made and stored.

Every result also carries ``outputs``: a small summary (:data:`OUTPUT_FIELDS`) of
this step and of every earlier step of the same chain, keyed by step name. A later
step's params can refer to any of them (``{"$ref": "steps.NAME.FIELD"}``, see
:mod:`workers.operations.params`), not only to the step right before it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from workers.operations.actions import OUTPUT_FIELDS

PRIOR_OUTPUTS_KEY = "prior_outputs"
"""Context key that carries the earlier steps' outputs from the step task to its result.

A paused step's result is built later by ``collect``, which only sees what the
continuation saved (params and context), so the outputs travel in the context and
are taken out again before the context is recorded in the result.
"""


class Artifact(BaseModel):
    """One stored file: where it is, what it is, and its hash."""

    kind: str
    """``audio``, ``image``, ``stems``, ``wav``, ``video``, ``lyrics`` or ``metadata``."""
    key: str
    url: str
    sha256: str
    size: int
    content_type: str
    source_url: str | None = None
    item_id: str | None = None


class StepResult(BaseModel):
    """The result of one step; the next step of a chain reads it (``audio_id``, ``duration``)."""

    action: str
    step_key: str
    api_task_id: str | None = None
    audio_id: str | None = None
    title: str | None = None
    duration: float | None = None
    seed: str | None = None
    model: str | None = None
    items: list[dict[str, Any]] = Field(default_factory=list)
    artifacts: list[Artifact] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Summaries of this step (under its step name) and of every earlier step."""


def prior_outputs(prev: Mapping[str, Any] | list[Any] | None) -> dict[str, dict[str, Any]]:
    """The ``outputs`` a step inherits from the previous result (or a chord's list of them).

    The results of a group all repeat the history before the group, so merging them
    in order loses nothing and adds each copy's own summary (``NAME#1``, ``NAME#2`` ...).
    """
    merged: dict[str, dict[str, Any]] = {}
    for result in prev if isinstance(prev, list) else [prev]:
        if isinstance(result, Mapping):
            merged.update(result.get("outputs") or {})
    return merged


def split_context(context: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``(context without the carried outputs, the carried outputs)``."""
    clean = {k: v for k, v in context.items() if k != PRIOR_OUTPUTS_KEY}
    return clean, dict(context.get(PRIOR_OUTPUTS_KEY) or {})


def with_outputs(
    step: StepResult, prior: Mapping[str, dict[str, Any]], *, lyric: str | None = None
) -> StepResult:
    """Set ``step.outputs``: ``prior`` plus this step's summary under its step name."""
    name = str(step.context.get("step") or step.action)
    values = {**step.model_dump(include=set(OUTPUT_FIELDS)), "lyric": lyric}
    summary: dict[str, Any] = {name: values.get(name) for name in OUTPUT_FIELDS}
    step.outputs = {**prior, name: summary}
    return step


def carry_outputs(
    context: Mapping[str, Any] | None, prev: Mapping[str, Any] | list[Any] | None
) -> dict[str, Any]:
    """The step's context plus the outputs it inherits from ``prev`` (see PRIOR_OUTPUTS_KEY)."""
    carried = dict(context or {})
    prior = prior_outputs(prev)
    if prior:
        carried[PRIOR_OUTPUTS_KEY] = prior
    return carried


def storage_step(step: str) -> str:
    """The storage-key component of a step name.

    Copies of a repeated step are named ``NAME#1 .. NAME#N``, but ``#`` is not allowed
    in storage keys: they are stored under ``NAME.1 .. NAME.N`` (a pipeline step name
    cannot contain a dot, so this never clashes with another step).
    """
    return step.replace("#", ".")


__all__ = [
    "PRIOR_OUTPUTS_KEY",
    "Artifact",
    "StepResult",
    "carry_outputs",
    "prior_outputs",
    "split_context",
    "storage_step",
    "with_outputs",
]
