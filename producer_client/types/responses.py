"""Response bodies of the Producer endpoints.

Every model tolerates unknown keys (kept as extras) and the type drift seen across
the vendor's docs and clients: numbers where strings are documented and back
(CONTRACT §3.3), ``error`` as an object, a bare string or null (§7.1), ``data`` as an
array or an object (§5).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


def _digits_text(value: Any) -> Any:
    # The seed is documented as a string of digits; Nexior types it as a number.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _progress_text(value: Any) -> Any:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return f"{value:g}%"
    return value


def _float_or_none(value: Any) -> Any:
    # "181.30" (documented) and 181.3 (Nexior) both arrive; "" means unknown.
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return value


SeedText = Annotated[str | None, BeforeValidator(_digits_text)]
Progress = Annotated[str | None, BeforeValidator(_progress_text)]
Number = Annotated[float | None, BeforeValidator(_float_or_none)]


class ErrorInfo(_Tolerant):
    """An error as reported in a body: ``{code, message}`` (a bare string becomes the message)."""

    code: str | None = None
    message: str | None = None


def _error_info(value: Any) -> Any:
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, str):
        return {"message": value} if value else None
    return {"message": str(value)}


ErrorField = Annotated[ErrorInfo | None, BeforeValidator(_error_info)]


class AudioItem(_Tolerant):
    """One song (or, for ``stems``, one stems archive) in a result's ``data``."""

    id: str | None = None
    title: str | None = None
    image_url: str | None = None
    image_id: str | None = None
    lyric: str | None = None
    audio_url: str | None = None
    video_url: str | None = None
    topic: str | None = None
    seed: SeedText = None
    sound: str | None = None
    created_at: str | None = None
    model: str | None = None
    progress: Progress = None
    state: str | None = None
    duration: Number = None
    stems_url: str | None = None
    style: str | None = None
    prompt: str | None = None


def _item_list(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    return value


class AudioResult(_Tolerant):
    """A ``/producer/audios`` result: sync reply, callback body or a task's ``response``."""

    success: bool | None = None
    task_id: str | None = None
    trace_id: str | None = None
    data: Annotated[list[AudioItem], BeforeValidator(_item_list)] = []
    error: ErrorField = None


class Submission(_Tolerant):
    """The immediate reply to an ``async`` or ``callback_url`` submission."""

    task_id: str
    trace_id: str | None = None
    success: bool | None = None


def _lift_data(body: Any, *, first: bool = False) -> Any:
    """Merge the keys of ``body["data"]`` (or of its first element) into the top level."""
    if not isinstance(body, dict):
        return body
    data = body.get("data")
    if first and isinstance(data, list):
        data = data[0] if data else None
    if not isinstance(data, dict):
        return body
    return {**{k: v for k, v in body.items() if k != "data"}, **data}


class _Envelope(_Tolerant):
    success: bool | None = None
    task_id: str | None = None
    trace_id: str | None = None


class UploadResult(_Envelope):
    """``/producer/upload``: the ``audio_id`` to use with ``upload_*`` actions.

    ``audio_id`` is None only when a ``callback_url`` was given: the reply is then an
    acknowledgement and the result arrives at the callback.
    """

    audio_id: str | None = None
    lyric: str | None = None
    audio_url: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _flatten(cls, body: Any) -> Any:
        return _lift_data(body)


class LyricsResult(_Envelope):
    """``/producer/lyrics``: drafted lyrics (from ``data.lyrics`` or ``data.text``)."""

    title: str | None = None
    lyrics: str
    status: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _flatten(cls, body: Any) -> Any:
        flat = _lift_data(body)
        if isinstance(flat, dict) and flat.get("lyrics") is None and "text" in flat:
            flat = {**flat, "lyrics": flat["text"]}
        return flat


class WavResult(_Envelope):
    """``/producer/wav``: the WAV file link (``data[0]``; an object ``data`` is tolerated)."""

    file_url: str
    title: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _flatten(cls, body: Any) -> Any:
        return _lift_data(body, first=True)


class VideoResult(_Envelope):
    """``/producer/videos``: the MP4 link."""

    video_url: str

    @model_validator(mode="before")
    @classmethod
    def _flatten(cls, body: Any) -> Any:
        return _lift_data(body, first=True)
