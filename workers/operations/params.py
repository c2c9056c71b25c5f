"""Params of a step: the caller's, completed from the previous step's result.

Inside a chain a step receives the previous step's :class:`StepResult` dict:
``extend`` continues the song ``generate`` made (its ``audio_id``, and by
default from its end: ``continue_at = duration``), ``stems`` splits it, and
``wav``/``videos`` export it. Explicit params always win.
"""

from __future__ import annotations

from typing import Any

from producer_client import AudioParams, parse_audio_params
from workers.operations.errors import StepFailed

NEEDS_AUDIO_ID = frozenset({
    "cover", "upload_cover", "extend", "upload_extend", "variation", "replace_section",
    "upload_replace_section", "swap_vocals", "swap_instrumentals", "stems", "wav", "videos",
})
CONTINUES_AT_END = frozenset({"extend", "upload_extend"})


def complete_params(
    action: str, params: dict[str, Any] | None, prev: dict[str, Any] | None
) -> dict[str, Any]:
    """Return ``params`` with what the previous step provides filled in."""
    merged = dict(params or {})
    if prev is None:
        return merged
    if action in NEEDS_AUDIO_ID and not merged.get("audio_id"):
        audio_id = prev.get("audio_id")
        if not audio_id:
            raise StepFailed(
                "invalid_params",
                f"{action}: audio_id: the previous step ({prev.get('action')}) "
                "produced no audio id",
            )
        merged["audio_id"] = audio_id
    if action in CONTINUES_AT_END and "continue_at" not in merged and prev.get("duration"):
        merged["continue_at"] = prev["duration"]
    return merged


def audio_params(action: str, params: dict[str, Any]) -> AudioParams:
    """Validate ``params`` for an ``/audios`` action (raises ``ParamsValidationError``)."""
    return parse_audio_params({**params, "action": action})
