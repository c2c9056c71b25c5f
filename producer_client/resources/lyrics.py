"""``POST /producer/lyrics``: draft lyrics from a prompt (CONTRACT §5.2)."""

from __future__ import annotations

from producer_client._http import parse_as
from producer_client.resources._base import AsyncResource, SyncResource, require_text
from producer_client.types.responses import LyricsResult

LYRICS_PATH = "/producer/lyrics"


class Lyrics(SyncResource):
    """Lyrics drafting."""

    def create(self, *, prompt: str) -> LyricsResult:
        """Draft lyrics about ``prompt``. A paid call."""
        body = {"prompt": require_text("prompt", prompt, context="lyrics")}
        return parse_as(LyricsResult, self._http.post(LYRICS_PATH, body, idempotent=False))


class AsyncLyrics(AsyncResource):
    """Async twin of :class:`Lyrics`."""

    async def create(self, *, prompt: str) -> LyricsResult:
        """Draft lyrics about ``prompt``. A paid call."""
        body = {"prompt": require_text("prompt", prompt, context="lyrics")}
        return parse_as(LyricsResult, await self._http.post(LYRICS_PATH, body, idempotent=False))
