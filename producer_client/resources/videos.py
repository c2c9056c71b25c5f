"""``POST /producer/videos``: an MP4 (cover-art video) link for a song (CONTRACT §5.4)."""

from __future__ import annotations

from producer_client._http import parse_as
from producer_client.resources._base import AsyncResource, SyncResource, require_text
from producer_client.types.responses import VideoResult

VIDEOS_PATH = "/producer/videos"


class Videos(SyncResource):
    """MP4 export."""

    def create(self, *, audio_id: str) -> VideoResult:
        """The MP4 video of song ``audio_id``. A paid call."""
        body = {"audio_id": require_text("audio_id", audio_id, context="videos")}
        return parse_as(VideoResult, self._http.post(VIDEOS_PATH, body, idempotent=False))


class AsyncVideos(AsyncResource):
    """Async twin of :class:`Videos`."""

    async def create(self, *, audio_id: str) -> VideoResult:
        """The MP4 video of song ``audio_id``. A paid call."""
        body = {"audio_id": require_text("audio_id", audio_id, context="videos")}
        return parse_as(VideoResult, await self._http.post(VIDEOS_PATH, body, idempotent=False))
