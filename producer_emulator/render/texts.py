"""Titles and lyrics the emulator makes up: deterministic, short, recognisable."""

from __future__ import annotations

import hashlib
import random

from producer_emulator.state import AudioEntry
from producer_emulator.validation import AudiosParams

UNTITLED = "Untitled"
INSTRUMENTAL = "[Instrumental]"
SWAP_SUFFIX = " (Sound swap)"
_WORDS = (
    "light", "river", "night", "fire", "road", "heart", "rain", "city", "dream", "sky",
    "shadow", "morning", "echo", "gold", "wind", "home", "stone", "ocean", "signal", "glass",
)  # fmt: skip


def song_title(params: AudiosParams, source: AudioEntry | None) -> str:
    """Title of a result item (CONTRACT §3.3: "Untitled" when none, swap suffix)."""
    if params.title:
        title = params.title
    elif source is not None:
        title = source.title
    elif params.custom:
        title = first_lyric_line(params.lyric) or UNTITLED
    else:
        title = UNTITLED
    return title + SWAP_SUFFIX if params.action == "swap_instrumentals" else title


def song_lyric(params: AudiosParams, source: AudioEntry | None, seed: int) -> str:
    """Lyric of a result item: the sent lyric, the source's, or invented ones."""
    if params.instrumental:
        return INSTRUMENTAL
    if params.lyric:
        return params.lyric
    if source is not None:
        return source.lyric
    return invented_lyrics(params.prompt, seed)


def first_lyric_line(lyric: str) -> str | None:
    """The first line that is not a ``[Section]`` tag (the vendor titles custom songs so)."""
    for line in lyric.splitlines():
        text = line.strip()
        if text and not (text.startswith("[") and text.endswith("]")):
            return text
    return None


def invented_lyrics(prompt: str, seed: int) -> str:
    """Tagged verse/chorus lyrics built from the prompt's words and ``seed``."""
    rng = random.Random(seed)
    theme = prompt.strip() or "a song"
    verse = [f"{rng.choice(_WORDS).title()} and {rng.choice(_WORDS)} of {theme}" for _ in range(4)]
    chorus = [f"Sing the {rng.choice(_WORDS)} again", f"Sing the {rng.choice(_WORDS)} again"]
    return "\n".join(["[Verse]", *verse, "[Chorus]", *chorus])


def lyrics_for_prompt(prompt: str) -> tuple[str, str]:
    """``(title, lyrics)`` for ``/producer/lyrics``, stable for one prompt."""
    seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")
    words = [w for w in prompt.split() if w.isalpha()][:4]
    title = " ".join(w.title() for w in words) or UNTITLED
    return title, invented_lyrics(prompt, seed)
