"""``POST /producer/audios``: generate and edit songs (CONTRACT §1.1, §3)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from producer_client._exceptions import FieldError, ParamsValidationError
from producer_client._http import parse_as
from producer_client.resources._base import AsyncResource, SyncResource, optional_url
from producer_client.types.params import AudioParams, BaseAudioParams, parse_audio_params
from producer_client.types.responses import AudioResult, Submission

AUDIOS_PATH = "/producer/audios"
BLOCKING_TIMEOUT_S = 1800.0
"""Read timeout of a blocking ``create``: the reply is held until the song is done."""

ParamsInput = AudioParams | Mapping[str, Any]


def audio_params(params: ParamsInput) -> AudioParams:
    """A params model as is, or a mapping validated into one."""
    if isinstance(params, Mapping):
        return parse_audio_params(params)
    if not isinstance(params, BaseAudioParams):
        message = "must be an audio params model or a mapping"
        raise ParamsValidationError([FieldError("params", message)])
    return params


def submit_body(params: ParamsInput, callback_url: str | None) -> dict[str, Any]:
    """The body of an immediate-reply submission: ``async`` or ``callback_url`` mode."""
    body = audio_params(params).to_body()
    url = optional_url("callback_url", callback_url, context=body["action"])
    if url is None:
        body["async"] = True
    else:
        body["callback_url"] = url
    return body


def _blocking_timeout(client_timeout_s: float, timeout_s: float | None) -> float:
    return timeout_s if timeout_s is not None else max(client_timeout_s, BLOCKING_TIMEOUT_S)


class Audios(SyncResource):
    """Songs: ``create`` waits for the result, ``submit`` returns a task id at once."""

    def create(self, params: ParamsInput, *, timeout_s: float | None = None) -> AudioResult:
        """Generate in blocking mode; the reply comes when the song is finished.

        ``timeout_s`` overrides the read timeout (default: the larger of the client's
        and :data:`BLOCKING_TIMEOUT_S`). A paid call: never retried once sent.
        """
        body = audio_params(params).to_body()
        timeout = _blocking_timeout(self._http.timeout_s, timeout_s)
        reply = self._http.post(AUDIOS_PATH, body, idempotent=False, timeout_s=timeout)
        return parse_as(AudioResult, reply)

    def submit(self, params: ParamsInput, *, callback_url: str | None = None) -> Submission:
        """Submit and return at once: ``async: true``, or callback mode with ``callback_url``."""
        body = submit_body(params, callback_url)
        reply = self._http.post(AUDIOS_PATH, body, idempotent=False)
        return parse_as(Submission, reply)


class AsyncAudios(AsyncResource):
    """Async twin of :class:`Audios`."""

    async def create(self, params: ParamsInput, *, timeout_s: float | None = None) -> AudioResult:
        """Generate in blocking mode; the reply comes when the song is finished."""
        body = audio_params(params).to_body()
        timeout = _blocking_timeout(self._http.timeout_s, timeout_s)
        reply = await self._http.post(AUDIOS_PATH, body, idempotent=False, timeout_s=timeout)
        return parse_as(AudioResult, reply)

    async def submit(self, params: ParamsInput, *, callback_url: str | None = None) -> Submission:
        """Submit and return at once: ``async: true``, or callback mode with ``callback_url``."""
        body = submit_body(params, callback_url)
        reply = await self._http.post(AUDIOS_PATH, body, idempotent=False)
        return parse_as(Submission, reply)
