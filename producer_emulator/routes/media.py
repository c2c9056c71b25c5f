"""``GET /media/...``: the CDN side of the emulator (no auth, like a public CDN).

Files are rendered on demand from the stored ``SongSpec`` in a worker thread
(rendering is CPU work and must not stall the event loop), and the last few
renders are kept in a byte-capped LRU so a download retried at once is
cheap. A song's WAV/MP4 and a stems zip exist only once their task succeeded;
the preview WAV and the cover PNG exist from submission on.

* ``/media/{audio_id}.wav`` ``audio/wav`` (HEAD answers the size without rendering)
* ``/media/{audio_id}.png`` ``image/png``
* ``/media/{audio_id}.mp4`` ``video/mp4``
* ``/media/preview/{audio_id}.wav`` the first ``preview_render_s`` seconds
* ``/media/stems/{task_id}.zip`` ``application/zip`` (vocals.wav + instrumental.wav)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from producer_emulator.render import media
from producer_emulator.state import AudioEntry, EmulatorState

_TYPES = {"wav": "audio/wav", "png": "image/png", "mp4": "video/mp4", "zip": "application/zip"}
_CACHE_BYTES = 64 * 1024 * 1024


class MediaRoutes:
    """Route handlers bound to one :class:`EmulatorState`."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state
        self._cache: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._cached_bytes = 0

    async def song_file(self, request: Request) -> Response:
        """A finished song's WAV or MP4, or any song's cover PNG."""
        audio_id, _, ext = str(request.path_params["name"]).rpartition(".")
        entry = self._state.audios.get(audio_id)
        if entry is None or ext not in ("wav", "png", "mp4") or (ext != "png" and not entry.ready):
            return _not_found()
        fault = self._state.faults.media_fault(
            self._state.config.faults, {"title": entry.title, "audio_id": audio_id}
        )
        if fault == "media_not_found_404":
            return _not_found()
        if fault == "media_wrong_type":
            return Response(b"<html>not a song</html>", media_type="text/html")
        options = self._options(None)
        if ext == "wav" and request.method == "HEAD":
            return _sized_head(media.wav_size_bytes(entry.spec, options), "wav")
        render = _renderer(entry, ext, options)
        return await self._serve((ext, audio_id, options), render, ext)

    async def preview(self, request: Request) -> Response:
        """The short preview WAV shown while a song is still processing."""
        audio_id = str(request.path_params["name"]).removesuffix(".wav")
        entry = self._state.audios.get(audio_id)
        if entry is None:
            return _not_found()
        options = self._options(self._state.config.preview_render_s)
        spec = entry.spec
        return await self._serve(
            ("preview", audio_id, options), lambda: media.render_wav(spec, options), "wav"
        )

    async def stems(self, request: Request) -> Response:
        """The stems zip of a finished ``stems`` task."""
        task_id = str(request.path_params["name"]).removesuffix(".zip")
        state = self._state
        record = state.tasks.get(task_id)
        entry = state.audios.get(state.stems_sources.get(task_id, ""))
        done = record is not None and (record.response or {}).get("success") is True
        if entry is None or not done:
            return _not_found()
        options = self._options(None)
        spec = entry.spec
        return await self._serve(
            ("stems", task_id, options), lambda: media.render_stems_zip(spec, options), "zip"
        )

    def clear(self) -> None:
        """Drop every cached render."""
        self._cache.clear()
        self._cached_bytes = 0

    def _options(self, cap_s: float | None) -> media.RenderOptions:
        config = self._state.config
        limits = [s for s in (config.max_render_s, cap_s) if s is not None]
        return media.RenderOptions(
            sample_rate=config.sample_rate, max_render_s=min(limits) if limits else None
        )

    async def _serve(
        self, key: tuple[object, ...], render: Callable[[], bytes], ext: str
    ) -> Response:
        payload = self._cache.get(key)
        if payload is None:
            payload = await run_in_threadpool(render)
            self._remember(key, payload)
        else:
            self._cache.move_to_end(key)
        return Response(payload, media_type=_TYPES[ext])

    def _remember(self, key: tuple[object, ...], payload: bytes) -> None:
        if len(payload) > _CACHE_BYTES:
            return
        self._cache[key] = payload
        self._cached_bytes += len(payload)
        while self._cached_bytes > _CACHE_BYTES:
            _, dropped = self._cache.popitem(last=False)
            self._cached_bytes -= len(dropped)


def _renderer(entry: AudioEntry, ext: str, options: media.RenderOptions) -> Callable[[], bytes]:
    spec, seed = entry.spec, entry.seed
    if ext == "png":
        return lambda: media.render_cover_png(seed)
    if ext == "mp4":
        return lambda: media.render_video_mp4(seed, duration_s=spec.duration_s)
    return lambda: media.render_wav(spec, options)


def _sized_head(size: int, ext: str) -> Response:
    response = Response(b"", media_type=_TYPES[ext])
    response.headers["content-length"] = str(size)
    return response


def _not_found() -> Response:
    return Response(b"Not Found", status_code=404, media_type="text/plain")
