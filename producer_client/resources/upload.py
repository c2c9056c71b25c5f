"""``POST /producer/upload``: register reference audio by URL (CONTRACT §5.1)."""

from __future__ import annotations

from typing import Any

from producer_client._exceptions import MalformedResponseError
from producer_client._http import parse_as
from producer_client.resources._base import AsyncResource, SyncResource, optional_url, require_url
from producer_client.types.responses import UploadResult

UPLOAD_PATH = "/producer/upload"


def upload_body(audio_url: str, callback_url: str | None) -> dict[str, Any]:
    """Body of an upload; ``callback_url`` only when given."""
    body: dict[str, Any] = {"audio_url": require_url("audio_url", audio_url, context="upload")}
    url = optional_url("callback_url", callback_url, context="upload")
    if url is not None:
        body["callback_url"] = url
    return body


def upload_result(reply: dict[str, Any], callback_url: str | None) -> UploadResult:
    """Parse the reply; without a callback the ``audio_id`` must be in it."""
    result = parse_as(UploadResult, reply)
    if callback_url is None and result.audio_id is None:
        raise MalformedResponseError("upload reply has no audio_id", body=reply)
    return result


class Upload(SyncResource):
    """Reference audio for the ``upload_*`` actions."""

    def create(self, *, audio_url: str, callback_url: str | None = None) -> UploadResult:
        """Register ``audio_url`` and return its ``audio_id``. A paid call."""
        body = upload_body(audio_url, callback_url)
        reply = self._http.post(UPLOAD_PATH, body, idempotent=False)
        return upload_result(reply, callback_url)


class AsyncUpload(AsyncResource):
    """Async twin of :class:`Upload`."""

    async def create(self, *, audio_url: str, callback_url: str | None = None) -> UploadResult:
        """Register ``audio_url`` and return its ``audio_id``. A paid call."""
        body = upload_body(audio_url, callback_url)
        reply = await self._http.post(UPLOAD_PATH, body, idempotent=False)
        return upload_result(reply, callback_url)
