"""The four quick endpoints: upload, lyrics, wav, videos (CONTRACT §5).

They answer at once with the guides' shapes (not the specs' placeholders),
are recorded as already-finished tasks, and also POST their body to a
``callback_url`` when one is given.
"""

from __future__ import annotations

import time
from typing import Any

from producer_client import request_fingerprint
from producer_emulator.errors import bad_request, new_id
from producer_emulator.records import media_url, success_body
from producer_emulator.render.texts import invented_lyrics, lyrics_for_prompt
from producer_emulator.routes.audios import find_source
from producer_emulator.routes.calls import Call, Reply
from producer_emulator.routes.uploads import load_upload
from producer_emulator.state import AudioEntry
from producer_emulator.validation import parse_callback_url, require_text


async def handle_upload(call: Call) -> Reply:
    """Register reference audio by URL; the new ``audio_id`` works with every edit action."""
    url = require_text(call.body, "audio_url")
    if not url.startswith(("http://", "https://")):
        raise bad_request("audio_url is invalid.")
    parse_callback_url(call.body)
    spec, seed, title = await load_upload(call.state, url, base_url=call.base_url)
    entry = AudioEntry(
        audio_id=new_id(),
        spec=spec,
        seed=seed,
        title=title,
        lyric="[Uploaded audio]\n" + invented_lyrics(title, seed),
        ready=True,
        uploaded=True,
    )
    call.state.audios[entry.audio_id] = entry
    data = {
        "audio_id": entry.audio_id,
        "lyric": entry.lyric,
        "audio_url": media_url(call.base_url, entry.audio_id, "wav"),
    }
    return _finished(call, "upload", data)


async def handle_lyrics(call: Call) -> Reply:
    """Draft lyrics from a prompt: ``data: {title, lyrics}`` (guide shape)."""
    prompt = require_text(call.body, "prompt")
    parse_callback_url(call.body)
    title, lyrics = lyrics_for_prompt(prompt)
    return _finished(call, "lyrics", {"title": title, "lyrics": lyrics})


async def handle_wav(call: Call) -> Reply:
    """WAV link of a finished song: ``data`` is an array of ``{title, file_url}``."""
    entry = _song(call)
    data = [{"title": entry.title, "file_url": media_url(call.base_url, entry.audio_id, "wav")}]
    return _finished(call, "wav", data)


async def handle_videos(call: Call) -> Reply:
    """MP4 link of a finished song: ``data`` is an object ``{video_url}``."""
    entry = _song(call)
    return _finished(call, "videos", {"video_url": media_url(call.base_url, entry.audio_id, "mp4")})


def _song(call: Call) -> AudioEntry:
    audio_id = require_text(call.body, "audio_id")
    parse_callback_url(call.body)
    entry = find_source(call.state, audio_id)
    assert entry is not None  # find_source raises for an unknown id
    return entry


def _finished(call: Call, kind: str, data: Any) -> Reply:
    state = call.state
    record = state.new_task(
        task_id=new_id(), kind=kind, token=call.token, trace_id=call.trace_id, body=call.body
    )
    state.count_submission(kind, request_fingerprint(call.body))
    body: dict[str, Any] = success_body(record.id, call.trace_id, data)
    record.response = body
    record.finished_at = time.time()
    callback_url = parse_callback_url(call.body)
    if callback_url is not None:
        call.callbacks.dispatch(callback_url, body, call.plan)
    return 200, body
