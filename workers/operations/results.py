"""What a step returns: a typed, JSON-serializable record of what was made and stored."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


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
