"""JSON shapes: result items, result bodies and task records (CONTRACT §3.3, §4.2).

Pure functions of stored state, so the same task renders the same way in a
sync reply, a callback and a poll.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from producer_emulator.config import EmulatorConfig
from producer_emulator.state import AudioEntry, TaskRecord, derived_id

API_IDS = {
    "audios": "01d96900-9f8c-41d7-814c-95c7a885ba61",
    "lyrics": "2f636fdb-faa4-4308-8cef-9258dd14fd90",
    "videos": "5e06cbdd-ba7d-456d-a211-e3f242adec82",
    "upload": "91fcbb81-8bc9-4ed4-bdfa-0f296b2fec9d",
    "wav": "e7cad274-9c48-494c-b7e3-fc1556eea827",
}
FAILURE_MESSAGE = "Generation failed."
PARTIAL_MESSAGE = "Generation partially failed."


def iso_now() -> str:
    """UTC ISO-8601 with microseconds and ``Z``, as items carry it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def media_url(base_url: str, audio_id: str, ext: str) -> str:
    """Absolute URL of a song's media file on this server."""
    return f"{base_url}/media/{audio_id}.{ext}"


def song_item(
    audio: AudioEntry, *, base_url: str, model: str, sound: str, created_at: str
) -> dict[str, Any]:
    """A finished song item: every value a string (or null) exactly as documented."""
    return {
        "id": audio.audio_id,
        "title": audio.title,
        "image_url": media_url(base_url, audio.audio_id, "png"),
        "lyric": audio.lyric,
        "audio_url": media_url(base_url, audio.audio_id, "wav"),
        "video_url": None,
        "image_id": audio.audio_id,
        "topic": None,
        "seed": str(audio.seed),
        "sound": sound,
        "created_at": created_at,
        "model": model,
        "progress": "100%",
        "state": "succeeded",
        "duration": repr(float(audio.spec.duration_s)),
    }


def stems_item(*, title: str, base_url: str, task_id: str) -> dict[str, Any]:
    """The stems item: a zip link instead of id/audio_url; ``model`` is empty."""
    return {
        "title": title,
        "lyric": "",
        "stems_url": f"{base_url}/media/stems/{task_id}.zip",
        "model": "",
        "progress": "100%",
        "state": "succeeded",
    }


def preview_item(item: dict[str, Any], *, base_url: str) -> dict[str, Any]:
    """The in-progress twin of ``item``: preview audio, no duration, not succeeded."""
    preview = dict(item)
    preview["audio_url"] = f"{base_url}/media/preview/{item['id']}.wav"
    preview["state"] = "processing"
    preview["duration"] = None
    return preview


def success_body(task_id: str, trace_id: str, data: Any) -> dict[str, Any]:
    """A successful result: sync reply, callback body, finished ``response``."""
    return {"success": True, "task_id": task_id, "trace_id": trace_id, "data": data}


def failure_body(
    task_id: str, trace_id: str, variant: str, item: dict[str, Any] | None
) -> dict[str, Any]:
    """A failed generation in one of the three shapes of CONTRACT §4.3/§7."""
    error: Any = {"code": "api_error", "message": FAILURE_MESSAGE}
    data: list[dict[str, Any]] = []
    if variant == "task_failure_string":
        error = FAILURE_MESSAGE
    elif variant == "task_failure_partial" and item is not None:
        error = {"code": "api_error", "message": PARTIAL_MESSAGE}
        data = [item]
    return {
        "success": False,
        "task_id": task_id,
        "trace_id": trace_id,
        "error": error,
        "data": data,
    }


def render_record(record: TaskRecord, config: EmulatorConfig) -> dict[str, Any]:
    """The task record a poll returns, as of now."""
    out: dict[str, Any] = {
        "_id": record.mongo_id,
        "id": record.id,
        "api_id": API_IDS[record.type],
        "application_id": derived_id(record.token, "application"),
        "created_at": round(record.created_at, 3),
        "started_at": round(record.started_at, 3),
        "credential_id": derived_id(record.token, "credential"),
        "authorization_id": None,
        "request": record.request,
        "trace_id": record.trace_id,
        "type": record.type,
        "user_id": derived_id(record.token, "user"),
        "actor_user_id": None,
    }
    if record.finished_at is not None and record.response is not None:
        out["finished_at"] = round(record.finished_at, 3)
        out["elapsed"] = round(record.finished_at - record.started_at, 3)
        out["response"] = _final_response(record.response, config)
    else:
        intermediate = _intermediate_response(record, config)
        if intermediate is not None:
            out["response"] = intermediate
    return out


def _final_response(response: dict[str, Any], config: EmulatorConfig) -> dict[str, Any]:
    # CONTRACT Q4: the newest tasks doc shows no success/trace_id in a finished
    # response. Failures keep success:false, else nothing would mark them.
    if config.response_success_key or response.get("success") is False:
        return response
    return {k: v for k, v in response.items() if k not in ("success", "trace_id")}


def _intermediate_response(record: TaskRecord, config: EmulatorConfig) -> dict[str, Any] | None:
    if record.preview_item is None or config.preview_fraction is None:
        return None
    span = record.due_mono - record.start_mono
    fraction = 1.0 if span <= 0 else (time.monotonic() - record.start_mono) / span
    if fraction < config.preview_fraction:
        return None
    item = dict(record.preview_item)
    item["progress"] = f"{min(99, int(fraction * 100))}%"
    return {"task_id": record.id, "data": [item]}
