"""Fetching reference audio for ``/producer/upload``.

A URL pointing at this emulator's own ``/media/<id>.wav`` is resolved from
memory (no request to itself). Anything else is fetched with httpx, capped
at ``upload_max_bytes``, and must be a PCM WAV the ``wave`` module can read;
its length becomes the song's length. Any failure answers like the guide's
example: 500 ``{success: false, error: {code: "api_error", message: "fetch failed"}}``.
"""

from __future__ import annotations

import hashlib
import io
import re
import wave
from urllib.parse import urlsplit

import httpx

from producer_emulator.errors import ApiError
from producer_emulator.render.media import SongSpec
from producer_emulator.state import EmulatorState

FETCH_FAILED = "fetch failed"
_OWN_MEDIA = re.compile(r"^/media/(?:preview/)?(?P<id>[0-9a-fA-F-]{36})\.(?:wav|png|mp4)$")
_FETCH_TIMEOUT_S = 10.0


async def load_upload(
    state: EmulatorState, url: str, *, base_url: str
) -> tuple[SongSpec, int, str]:
    """``(spec, seed, title)`` of the audio at ``url``; raises ``api_error`` on failure."""
    own = _own_song(state, url, base_url)
    if own is not None:
        return own
    payload = await _fetch(url, state.config.upload_max_bytes)
    seed = int.from_bytes(hashlib.sha256(payload).digest()[:4], "big")
    spec = SongSpec.new(seed=seed, duration_s=_wav_seconds(payload), instrumental=False)
    return spec, seed, _title_from(url)


def _own_song(state: EmulatorState, url: str, base_url: str) -> tuple[SongSpec, int, str] | None:
    parts = urlsplit(url)
    if f"{parts.scheme}://{parts.netloc}" != base_url:
        return None
    match = _OWN_MEDIA.match(parts.path)
    entry = state.audios.get(match["id"]) if match else None
    if entry is None or not entry.ready:
        raise ApiError("api_error", FETCH_FAILED)
    return entry.spec, entry.seed, entry.title


async def _fetch(url: str, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async with (
            httpx.AsyncClient(timeout=_FETCH_TIMEOUT_S, trust_env=False) as client,
            client.stream("GET", url, follow_redirects=True) as reply,
        ):
            if not reply.is_success:
                raise ApiError("api_error", FETCH_FAILED)
            async for chunk in reply.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise ApiError("api_error", FETCH_FAILED)
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise ApiError("api_error", FETCH_FAILED) from exc
    return b"".join(chunks)


def _wav_seconds(payload: bytes) -> float:
    try:
        with wave.open(io.BytesIO(payload), "rb") as reader:
            frames, rate = reader.getnframes(), reader.getframerate()
    except (wave.Error, EOFError) as exc:
        raise ApiError("api_error", FETCH_FAILED) from exc
    if rate <= 0 or frames <= 0:
        raise ApiError("api_error", FETCH_FAILED)
    return frames / rate


def _title_from(url: str) -> str:
    name = urlsplit(url).path.rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0]
    return stem or "Untitled"
