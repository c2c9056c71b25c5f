"""Params of a step: the caller's, completed from the previous step's result.

Inside a chain a step receives the previous step's :class:`StepResult` dict:
``extend`` continues the song ``generate`` made (its ``audio_id``, and by
default from its end: ``continue_at = duration``), ``stems`` splits it, and
``wav``/``videos`` export it. Explicit params always win.

A param may also name a field of *any* earlier step: ``{"$ref": "steps.NAME.FIELD"}``
is replaced by ``FIELD`` of the step called ``NAME`` (its context ``step``), read
from the previous result's ``outputs``. After a chord (a repeated step) the
previous result is a *list*: the outputs of all of them are merged, ``NAME`` names
the first copy and ``NAME#2`` a specific one; the implicit ``audio_id`` and
``continue_at`` come from the first result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from producer_client import AudioParams, parse_audio_params
from workers.operations.actions import CATALOGUE
from workers.operations.errors import StepFailed
from workers.operations.results import prior_outputs

REF_KEY = "$ref"
"""The one key of a step reference: ``{"$ref": "steps.NAME.FIELD"}``."""

Prev = dict[str, Any] | list[dict[str, Any]] | None
"""What a step receives from the chain: a result, a chord's list of results, or nothing."""


def complete_params(action: str, params: dict[str, Any] | None, prev: Prev) -> dict[str, Any]:
    """Return ``params`` with step references resolved and the previous step's defaults."""
    merged = resolve_refs(action, params or {}, prev)
    source = _first(prev)
    if source is None:
        return merged
    entry = CATALOGUE.get(action)
    if entry is not None and entry.needs_audio_id and not merged.get("audio_id"):
        audio_id = source.get("audio_id")
        if not audio_id:
            raise StepFailed(
                "invalid_params",
                f"{action}: audio_id: the previous step ({source.get('action')}) "
                "produced no audio id",
            )
        merged["audio_id"] = audio_id
    continues = entry is not None and entry.continues_at_end
    if continues and "continue_at" not in merged and source.get("duration"):
        merged["continue_at"] = source["duration"]
    return merged


def is_ref(value: Any) -> bool:
    """True for a step reference ``{"$ref": "steps.NAME.FIELD"}``."""
    return isinstance(value, Mapping) and set(value) == {REF_KEY}


def resolve_refs(action: str, params: Mapping[str, Any], prev: Prev) -> dict[str, Any]:
    """Replace every step reference in ``params`` by the value it names."""
    if not any(is_ref(v) for v in params.values()):
        return dict(params)
    outputs = prior_outputs(prev)
    return {
        name: _resolve(action, name, value[REF_KEY], outputs) if is_ref(value) else value
        for name, value in params.items()
    }


def _resolve(action: str, param: str, ref: Any, outputs: Mapping[str, Any]) -> Any:
    parts = str(ref).split(".")
    if len(parts) != 3 or parts[0] != "steps":
        raise StepFailed(
            "invalid_params", f"{action}: {param}: bad reference {ref!r}, expected steps.NAME.FIELD"
        )
    _, step, field = parts
    # A repeated step's copies are NAME#1..N; the bare NAME means the first copy.
    summary = outputs.get(step) or ("#" not in step and outputs.get(f"{step}#1")) or None
    if summary is None:
        known = ", ".join(sorted(outputs)) or "none"
        raise StepFailed(
            "invalid_params",
            f"{action}: {param}: no earlier step {step!r} "
            f"in this chain (steps with outputs: {known})",
        )
    value = summary.get(field)
    if value is None or value == "":
        raise StepFailed(
            "invalid_params", f"{action}: {param}: step {step} has no output {field} ({ref})"
        )
    return value


def _first(prev: Prev) -> dict[str, Any] | None:
    if isinstance(prev, list):
        return next((p for p in prev if isinstance(p, dict)), None)
    return prev


__all__ = [
    "REF_KEY",
    "Prev",
    "audio_params",
    "complete_params",
    "is_ref",
    "resolve_refs",
]


def audio_params(action: str, params: dict[str, Any]) -> AudioParams:
    """Validate ``params`` for an ``/audios`` action (raises ``ParamsValidationError``)."""
    return parse_audio_params({**params, "action": action})
