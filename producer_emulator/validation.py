"""Request checks the emulator makes before any work, like the real server.

Each ``parse_*`` function turns a JSON body into a small frozen dataclass or
raises :class:`~producer_emulator.errors.ApiError` (400 ``bad_request``)
with a message naming the offending field. Unknown keys are ignored, and
boolean ``false`` in a numeric slot means "not set", because the vendor's own
SDK sends it there (CONTRACT §3.1). Checks that need stored state (does the
``audio_id`` exist, is ``continue_at`` inside the song) live in
:func:`check_against_source`.

:data:`MODELS` is the emulator's own list, written out on purpose instead of
importing ``producer_client.types.MODELS``: the emulator is an independent
judge of requests, so a model the client wrongly accepts (or wrongly refuses)
shows up as a disagreement in the contract tests instead of being copied into
both sides. Keep it in step with ``producer_api/CONTRACT.md``, not with the client.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from producer_emulator.errors import bad_request

MODELS = frozenset(
    {
        "FUZZ-2.0 Pro",
        "FUZZ-2.0",
        "FUZZ-2.0 Raw",
        "FUZZ-1.1 Pro",
        "FUZZ-1.0 Pro",
        "FUZZ-1.0",
        "FUZZ-1.1",
        "FUZZ-0.8",
    }
)
# Request bodies are flat; a cap well above any real one keeps deep nesting from
# reaching recursive code (json, fingerprints, pydantic) as a RecursionError -> 500.
MAX_JSON_DEPTH = 64


class JsonTooDeepError(ValueError):
    """A body nested deeper than :data:`MAX_JSON_DEPTH` levels."""


def load_json(raw: bytes) -> Any:
    """Parse a request body as strict JSON, as a real server would.

    Raises ``ValueError`` for anything that is not JSON, including ``NaN`` and
    ``Infinity`` (Python's parser accepts them, JSON does not) and numbers too large
    for a float, and
    :class:`JsonTooDeepError` for nesting beyond :data:`MAX_JSON_DEPTH`.
    """
    try:
        value = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise JsonTooDeepError("nested too deeply") from exc
    if _depth_exceeds(value, MAX_JSON_DEPTH):
        raise JsonTooDeepError("nested too deeply")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 is valid JSON but overflows to infinity
        raise ValueError(f"{text} is out of range")
    return value


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:  # iterative: the point is not to recurse
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if not isinstance(item, list):
            continue
        if level > limit:
            return True
        stack.extend((child, level + 1) for child in item)
    return False


SOURCE_ACTIONS = frozenset(
    {
        "cover",
        "upload_cover",
        "extend",
        "upload_extend",
        "variation",
        "replace_section",
        "upload_replace_section",
        "swap_vocals",
        "swap_instrumentals",
        "stems",
    }
)
ACTIONS = SOURCE_ACTIONS | {"generate"}
ALIASES = {"all_stems": "stems"}
PROMPT_MAX_CHARS = 200
# field -> inclusive range (CONTRACT §3.1; cover_strength only in the guides).
RANGES: dict[str, tuple[float, float]] = {
    "lyrics_strength": (0.0, 1.0),
    "sound_strength": (0.2, 1.0),
    "cover_strength": (0.2, 1.0),
    "weirdness": (0.0, 1.0),
}
LIST_LIMIT_DEFAULT = 20
LIST_LIMIT_MAX = 100


@dataclass(frozen=True, slots=True)
class AudiosParams:
    """A checked ``/producer/audios`` request (``all_stems`` already folded into ``stems``)."""

    action: str
    model: str
    prompt: str
    lyric: str
    custom: bool
    instrumental: bool
    title: str | None
    audio_id: str | None
    continue_at: float | None
    replace_start: float | None
    replace_end: float | None
    seed: str | None
    callback_url: str | None
    is_async: bool


@dataclass(frozen=True, slots=True)
class TasksQuery:
    """A checked ``/producer/tasks`` request."""

    action: str
    task_id: str | None
    ids: list[str] | None
    limit: int
    offset: int
    created_at_min: float | None
    created_at_max: float | None
    task_type: str | None


def parse_audios(body: dict[str, Any], *, default_model: str, strict: bool) -> AudiosParams:
    """Check an audios body; raise ``bad_request`` on the first problem found."""
    action = _action(body)
    if strict:
        _require_keys(body, ("prompt", "lyric"))
    prompt = _text(body, "prompt") or ""
    if len(prompt) > PROMPT_MAX_CHARS:
        raise bad_request(f"prompt must not exceed {PROMPT_MAX_CHARS} characters.")
    for key, (low, high) in RANGES.items():
        _number(body, key, low, high)
    audio_id = _text(body, "audio_id")
    if action in SOURCE_ACTIONS and not audio_id:
        raise bad_request(f"audio_id is required for action {action}.")
    return AudiosParams(
        action=action,
        model=_model(body, default_model),
        prompt=prompt,
        lyric=_text(body, "lyric") or "",
        custom=_flag(body, "custom"),
        instrumental=_flag(body, "instrumental"),
        title=_text(body, "title") or None,
        audio_id=audio_id,
        continue_at=_number(body, "continue_at", 0.0, None),
        replace_start=_number(body, "replace_section_start", 0.0, None),
        replace_end=_number(body, "replace_section_end", 0.0, None),
        seed=_seed(body),
        callback_url=parse_callback_url(body),
        is_async=_flag(body, "async"),
    )


def check_against_source(params: AudiosParams, source_duration_s: float) -> None:
    """Checks that need the source song's length (extend point, replaced section)."""
    at = params.continue_at
    if params.action.endswith("extend") and at is not None and at > source_duration_s:
        raise bad_request("continue_at is beyond the end of the song.")
    if params.action.endswith("replace_section"):
        start, end = params.replace_start, params.replace_end
        if start is None or end is None:
            raise bad_request(
                "replace_section_start and replace_section_end are required for "
                f"action {params.action}."
            )
        if start >= end:
            raise bad_request("replace_section_start must be less than replace_section_end.")
        if end > source_duration_s:
            raise bad_request("replace_section_end is beyond the end of the song.")


def parse_callback_url(body: dict[str, Any]) -> str | None:
    """The optional ``callback_url``; it must be an absolute http(s) URL."""
    url = _text(body, "callback_url")
    if not url:
        return None
    if not url.startswith(("http://", "https://")):
        raise bad_request("callback_url is invalid.")
    return url


def require_text(body: dict[str, Any], key: str) -> str:
    """A required non-empty string field."""
    value = _text(body, key)
    if not value:
        raise bad_request(f"{key} is required.")
    return value


def parse_tasks(body: dict[str, Any]) -> TasksQuery:
    """Check a tasks body (``retrieve`` by default, or ``retrieve_batch``)."""
    action = body.get("action") or "retrieve"
    if action not in ("retrieve", "retrieve_batch"):
        raise bad_request("action is invalid.")
    task_id = _text(body, "id")
    if action == "retrieve" and not task_id:
        raise bad_request("id is required.")
    limit = _integer(body, "limit", 1) or LIST_LIMIT_DEFAULT
    return TasksQuery(
        action=action,
        task_id=task_id,
        ids=_ids(body),
        limit=min(limit, LIST_LIMIT_MAX),
        offset=_integer(body, "offset", 0) or 0,
        created_at_min=_number(body, "created_at_min", None, None),
        created_at_max=_number(body, "created_at_max", None, None),
        task_type=_text(body, "type"),
    )


def _action(body: dict[str, Any]) -> str:
    action = body.get("action")
    if action is None or action == "":
        raise bad_request("action is required.")
    if not isinstance(action, str) or ALIASES.get(action, action) not in ACTIONS:
        raise bad_request("action is invalid.")
    return ALIASES.get(action, action)


def _model(body: dict[str, Any], default: str) -> str:
    model = body.get("model")
    if model is None or model == "":
        return default
    if model not in MODELS:
        raise bad_request("model is invalid.")
    return str(model)


def _require_keys(body: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        if key not in body:
            raise bad_request(f"{key} is required.")


def _text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"{key} must be a string.")
    return value


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"{key} must be a boolean.")
    return value


def _number(body: dict[str, Any], key: str, low: float | None, high: float | None) -> float | None:
    value = body.get(key)
    if value is None or value is False:
        return None  # false = "not set" (the vendor SDK sends it)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"{key} must be a number.")
    if (low is not None and value < low) or (high is not None and value > high):
        raise bad_request(_range_message(key, low, high))
    return float(value)


def _range_message(key: str, low: float | None, high: float | None) -> str:
    if high is None:
        return f"{key} must be at least {low:g}."
    return f"{key} must be between {low:g} and {high:g}."


def _integer(body: dict[str, Any], key: str, low: int) -> int | None:
    value = _number(body, key, low, None)
    if value is None:
        return None
    if value != int(value):
        raise bad_request(f"{key} must be an integer.")
    return int(value)


def _seed(body: dict[str, Any]) -> str | None:
    value = body.get("seed")
    if value is None or value is False or value == "":
        return None
    # The spec types seed as a string; Nexior sends a number. Both are accepted.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise bad_request("seed must be a string.")
    return str(value)


def _ids(body: dict[str, Any]) -> list[str] | None:
    ids = body.get("ids")
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise bad_request("ids must be a list of strings.")
    return ids
