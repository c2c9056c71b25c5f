"""The action catalogue: every action a step may name, in one table.

For each action it says which endpoint serves it (``/producer/audios``, which
answers later through a continuation, or a *quick* endpoint that answers in the
POST), which outputs its result carries (what ``{steps.NAME.FIELD}`` may name), and
what a worker fills in from the previous step (its ``audio_id``; ``extend``'s start
at its end). ``params``, ``results``, ``quick`` and the pipelines' spec checks read
it; nothing else lists actions.

The ``/producer/audios`` rows must match the client's ``producer_client.ACTIONS``
(its params models judge their params); a test checks it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel

from producer_client import LyricsResult, UploadResult, VideoResult, WavResult


class ActionKind(StrEnum):
    """How an action's endpoint answers."""

    AUDIOS = "audios"
    """``POST /producer/audios`` in async mode: the result is collected later."""
    QUICK = "quick"
    """A quick endpoint (upload, lyrics, wav, videos): the answer comes in the POST."""


OUTPUT_FIELDS: tuple[str, ...] = (
    "audio_id",
    "duration",
    "title",
    "seed",
    "model",
    "api_task_id",
    "lyric",
)
"""The fields of a step's summary in ``outputs`` (what ``{steps.NAME.FIELD}`` may name)."""

_ALL_OUTPUTS = frozenset(OUTPUT_FIELDS)


@dataclass(frozen=True)
class Action:
    """One action: its endpoint, its outputs, and what it takes from the previous step."""

    name: str
    kind: ActionKind
    outputs: frozenset[str] = _ALL_OUTPUTS
    """The :data:`OUTPUT_FIELDS` its result can have: the valid step-reference fields."""
    needs_audio_id: bool = False
    """Takes the previous step's ``audio_id`` when the params do not give one."""
    continues_at_end: bool = False
    """Defaults ``continue_at`` to the previous step's ``duration``."""
    input_field: str | None = None
    """A quick action's one param (a non-empty string)."""
    reply_model: type[BaseModel] | None = None
    """A quick action's reply, as the client models it."""

    @property
    def endpoint(self) -> str:
        """The API path the action POSTs to."""
        return "/producer/audios" if self.kind is ActionKind.AUDIOS else f"/producer/{self.name}"

    @property
    def is_quick(self) -> bool:
        """Whether the answer comes in the POST itself (no continuation)."""
        return self.kind is ActionKind.QUICK


def _audios(name: str, *, needs_audio_id: bool = True, continues: bool = False) -> Action:
    return Action(
        name, ActionKind.AUDIOS, needs_audio_id=needs_audio_id, continues_at_end=continues
    )


def _quick(
    name: str, field: str, reply: type[BaseModel], missing: set[str], *, needs_audio_id: bool
) -> Action:
    # `missing`: outputs the reply never carries, so a reference to one is refused when
    # a pipeline is loaded, not when a row is paid for.
    return Action(
        name,
        ActionKind.QUICK,
        outputs=_ALL_OUTPUTS - missing,
        needs_audio_id=needs_audio_id,
        input_field=field,
        reply_model=reply,
    )


CATALOGUE: Mapping[str, Action] = {
    a.name: a
    for a in (
        _audios("generate", needs_audio_id=False),
        _audios("cover"),
        _audios("upload_cover"),
        _audios("extend", continues=True),
        _audios("upload_extend", continues=True),
        _audios("variation"),
        _audios("replace_section"),
        _audios("upload_replace_section"),
        _audios("swap_vocals"),
        _audios("swap_instrumentals"),
        _audios("stems"),
        _quick(
            "upload",
            "audio_url",
            UploadResult,
            {"duration", "title", "seed", "model"},
            needs_audio_id=False,
        ),
        _quick(
            "lyrics",
            "prompt",
            LyricsResult,
            {"audio_id", "duration", "seed", "model"},
            needs_audio_id=False,
        ),
        _quick(
            "wav",
            "audio_id",
            WavResult,
            {"duration", "seed", "model", "lyric"},
            needs_audio_id=True,
        ),
        _quick(
            "videos",
            "audio_id",
            VideoResult,
            {"duration", "title", "seed", "model", "lyric"},
            needs_audio_id=True,
        ),
    )
}
"""Every action, by name: the ``/producer/audios`` ones first (the client's order)."""

KNOWN_ACTIONS: tuple[str, ...] = tuple(CATALOGUE)
"""Every action a step may name."""

AUDIOS_ACTIONS: tuple[str, ...] = tuple(a.name for a in CATALOGUE.values() if not a.is_quick)
"""The ``/producer/audios`` actions (one Celery task each, collected later)."""

QUICK_ACTIONS: tuple[str, ...] = tuple(a.name for a in CATALOGUE.values() if a.is_quick)
"""The quick actions (answered in the POST)."""

NEEDS_AUDIO_ID = frozenset(a.name for a in CATALOGUE.values() if a.needs_audio_id)
"""Actions that take the previous step's ``audio_id`` when not given."""

CONTINUES_AT_END = frozenset(a.name for a in CATALOGUE.values() if a.continues_at_end)
"""Actions whose ``continue_at`` defaults to the previous step's ``duration``."""


class UnknownActionError(KeyError):
    """No action of that name; the message lists the known ones."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.message = f"unknown action {name!r}; known actions: {', '.join(KNOWN_ACTIONS)}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def action(name: str) -> Action:
    """The catalogue entry of ``name``; raises :class:`UnknownActionError`."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise UnknownActionError(name) from None


def quick_action(name: str) -> Action:
    """The entry of quick action ``name`` (its ``input_field`` and ``reply_model`` are set)."""
    found = action(name)
    if not found.is_quick:
        raise UnknownActionError(name)
    return found


__all__ = [
    "AUDIOS_ACTIONS",
    "CATALOGUE",
    "CONTINUES_AT_END",
    "KNOWN_ACTIONS",
    "NEEDS_AUDIO_ID",
    "OUTPUT_FIELDS",
    "QUICK_ACTIONS",
    "Action",
    "ActionKind",
    "UnknownActionError",
    "action",
    "quick_action",
]
