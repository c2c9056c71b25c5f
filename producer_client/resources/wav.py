"""``POST /producer/wav``: a lossless WAV link for a song (CONTRACT §5.3)."""

from __future__ import annotations

from producer_client._http import parse_as
from producer_client.resources._base import AsyncResource, SyncResource, require_text
from producer_client.types.responses import WavResult

WAV_PATH = "/producer/wav"


class Wav(SyncResource):
    """WAV export."""

    def create(self, *, audio_id: str) -> WavResult:
        """The WAV file of song ``audio_id``. A paid call."""
        body = {"audio_id": require_text("audio_id", audio_id, context="wav")}
        return parse_as(WavResult, self._http.post(WAV_PATH, body, idempotent=False))


class AsyncWav(AsyncResource):
    """Async twin of :class:`Wav`."""

    async def create(self, *, audio_id: str) -> WavResult:
        """The WAV file of song ``audio_id``. A paid call."""
        body = {"audio_id": require_text("audio_id", audio_id, context="wav")}
        return parse_as(WavResult, await self._http.post(WAV_PATH, body, idempotent=False))
