"""The clients: :class:`Producer` (blocking) and :class:`AsyncProducer`.

Each holds one connection pool and hangs one resource per API family off itself
(``audios``, ``tasks``, ``upload``, ``lyrics``, ``wav``, ``videos``).
"""

from __future__ import annotations

import math
from types import TracebackType

import httpx
from pydantic import SecretStr

from producer_client._http import AsyncHTTP, HttpConfig, SyncHTTP
from producer_client._retry import DEFAULT_MAX_RETRIES
from producer_client.resources.audios import AsyncAudios, Audios
from producer_client.resources.lyrics import AsyncLyrics, Lyrics
from producer_client.resources.tasks import AsyncTasks, Tasks
from producer_client.resources.upload import AsyncUpload, Upload
from producer_client.resources.videos import AsyncVideos, Videos
from producer_client.resources.wav import AsyncWav, Wav

DEFAULT_BASE_URL = "https://api.acedata.cloud"
DEFAULT_TIMEOUT_S = 60.0


def _config(
    api_token: str | SecretStr, base_url: str, timeout_s: float, max_retries: int
) -> HttpConfig:
    token = api_token if isinstance(api_token, SecretStr) else SecretStr(api_token)
    if not isinstance(token.get_secret_value(), str) or not token.get_secret_value().strip():
        raise ValueError("api_token must be a non-empty string")
    if not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
    if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError(f"timeout_s must be a positive number, got {timeout_s!r}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be a non-negative integer, got {max_retries!r}")
    return HttpConfig(token, base_url.rstrip("/"), float(timeout_s), max_retries)


def _describe(client: Producer | AsyncProducer) -> str:
    config = client._config
    return (
        f"{type(client).__name__}(base_url={config.base_url!r}, "
        f"timeout_s={config.timeout_s!r}, max_retries={config.max_retries!r})"
    )


class Producer:
    """Blocking client of the Producer API.

    ``transport`` is the test seam (e.g. ``httpx.MockTransport``). ``max_retries``
    bounds the client's own quick retries; paid POSTs are never retried once the
    server may have acted on them. The token never appears in reprs or errors.
    """

    audios: Audios
    tasks: Tasks
    upload: Upload
    lyrics: Lyrics
    wav: Wav
    videos: Videos

    def __init__(
        self,
        *,
        api_token: str | SecretStr,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._config = _config(api_token, base_url, timeout_s, max_retries)
        self._http = SyncHTTP(self._config, transport)
        self.audios = Audios(self._http)
        self.tasks = Tasks(self._http)
        self.upload = Upload(self._http)
        self.lyrics = Lyrics(self._http)
        self.wav = Wav(self._http)
        self.videos = Videos(self._http)

    @property
    def base_url(self) -> str:
        """The API root, without a trailing slash."""
        return self._config.base_url

    @property
    def max_retries(self) -> int:
        """How many quick retries a request may get."""
        return self._config.max_retries

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return _describe(self)


class AsyncProducer:
    """Async client of the Producer API; the same surface as :class:`Producer`, awaited."""

    audios: AsyncAudios
    tasks: AsyncTasks
    upload: AsyncUpload
    lyrics: AsyncLyrics
    wav: AsyncWav
    videos: AsyncVideos

    def __init__(
        self,
        *,
        api_token: str | SecretStr,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = _config(api_token, base_url, timeout_s, max_retries)
        self._http = AsyncHTTP(self._config, transport)
        self.audios = AsyncAudios(self._http)
        self.tasks = AsyncTasks(self._http)
        self.upload = AsyncUpload(self._http)
        self.lyrics = AsyncLyrics(self._http)
        self.wav = AsyncWav(self._http)
        self.videos = AsyncVideos(self._http)

    @property
    def base_url(self) -> str:
        """The API root, without a trailing slash."""
        return self._config.base_url

    @property
    def max_retries(self) -> int:
        """How many quick retries a request may get."""
        return self._config.max_retries

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncProducer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return _describe(self)
