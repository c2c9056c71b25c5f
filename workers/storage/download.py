"""The HTTP side of :meth:`workers.storage.ArtifactStore.store_from_url`.

Checks a streamed response before any byte is stored (status, declared size, content
type), wraps its body in an iterator that hashes, counts and enforces the size cap,
and translates lower-level errors into :mod:`workers.storage.errors` in one place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import httpx
from obstore.exceptions import BaseError

from workers.storage.deadline import ThroughputMeter
from workers.storage.errors import (
    ArtifactError,
    ArtifactTooLargeError,
    ContentTypeError,
    DownloadError,
    EmptyArtifactError,
    StorageError,
    UnsafeURLError,
    safe_url,
)
from workers.storage.urlguard import check_url

#: Entries ending in "/" match a whole family; others must match exactly.
DEFAULT_EXPECTED_TYPES: tuple[str, ...] = (
    "audio/",
    "image/",
    "video/",
    "application/zip",
    "application/x-zip-compressed",
)
# Big enough that crossing into obstore per chunk costs little, small next to a part.
READ_CHUNK_BYTES = 1024 * 1024
_RETRYABLE_STATUS = frozenset({408, 425, 429})


def check_source_url(url: str) -> None:
    """Raise :class:`UnsafeURLError` unless ``url`` is http(s) without userinfo.

    Addresses are judged by the download client's guard (:mod:`workers.storage.urlguard`)
    on the address each connection really uses, redirect hops included.
    """
    check_url(url)


def check_response(response: httpx.Response, cap: int, expected: Iterable[str]) -> str:
    """Validate status, Content-Length and Content-Type; return the media type."""
    url = safe_url(str(response.url))
    if not response.is_success:
        status = response.status_code
        retryable = status >= 500 or status in _RETRYABLE_STATUS
        raise DownloadError(f"GET {url} returned HTTP {status}", retryable=retryable)
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > cap:
        raise ArtifactTooLargeError(f"{url} declares {length} bytes, above the cap of {cap}")
    if length.isdigit() and int(length) == 0:
        raise EmptyArtifactError(f"{url} declares an empty body")
    media_type = _media_type(response.headers.get("content-type"))
    if not _type_allowed(media_type, expected):
        raise ContentTypeError(
            f"{url} has Content-Type {media_type or '(none)'!r}, expected one of {tuple(expected)}"
        )
    return media_type


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def _type_allowed(media_type: str, expected: Iterable[str]) -> bool:
    return bool(media_type) and any(
        media_type.startswith(e) if e.endswith("/") else media_type == e for e in expected
    )


class HashingBody:
    """A response body as an iterator that hashes, counts and enforces the cap.

    Errors are raised *inside* iteration so obstore aborts the multipart upload; the
    first one is also kept in :attr:`error` in case the store wraps it.
    """

    def __init__(
        self, response: httpx.Response, max_bytes: int, meter: ThroughputMeter | None = None
    ) -> None:
        self._response = response
        self._max_bytes = max_bytes
        self._meter = meter
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._chunks()
        except Exception as exc:  # not GeneratorExit: that is the store closing us early
            self.error = exc
            raise

    def _chunks(self) -> Iterator[bytes]:
        url = safe_url(str(self._response.url))
        pending: list[bytes] = []
        pending_size = 0
        # Each network read is counted and timed as it arrives (httpx's own chunk_size
        # would wait for a whole chunk, so a trickle would never be looked at); the
        # reads are regrouped into chunks of READ_CHUNK_BYTES for obstore.
        for piece in self._response.iter_bytes():
            if self._meter is not None:
                # Here, not in a timer: the deadline holds in every Celery pool.
                self._meter.check(len(piece))
            self.size += len(piece)
            if self.size > self._max_bytes:
                raise ArtifactTooLargeError(f"body of {url} exceeds {self._max_bytes} bytes")
            self.sha256.update(piece)
            pending.append(piece)
            pending_size += len(piece)
            if pending_size >= READ_CHUNK_BYTES:
                yield b"".join(pending)
                pending, pending_size = [], 0
        if pending_size:
            yield b"".join(pending)
        if self.size == 0:
            raise EmptyArtifactError(f"empty body from {url}")


def translate_error(exc: BaseException, url: str) -> ArtifactError:
    """Map an httpx, obstore or other error met while storing ``url`` to an ArtifactError."""
    if isinstance(exc, ArtifactError):
        return exc
    if isinstance(exc, httpx.InvalidURL):
        return UnsafeURLError(f"invalid source URL {safe_url(url)}: {exc}")
    if isinstance(exc, httpx.HTTPError):
        # A redirect loop or an unsupported redirect target will not fix itself.
        retryable = not isinstance(exc, httpx.TooManyRedirects | httpx.UnsupportedProtocol)
        return DownloadError(f"download of {safe_url(url)} failed: {exc!r}", retryable=retryable)
    if isinstance(exc, BaseError | OSError):
        return StorageError(f"object store failed while storing {safe_url(url)}: {exc}")
    return ArtifactError(f"storing {safe_url(url)} failed: {exc!r}")
