"""The errors of :mod:`workers.storage`, in one small tree.

::

    ArtifactError                 storing an artifact failed (base; ``retryable`` False)
     ├── UnsafeURLError           not http(s), userinfo, or an internal address
     ├── ArtifactTooLargeError    Content-Length or the streamed body exceeds the cap
     ├── ContentTypeError         the response's Content-Type is not an expected one
     ├── EmptyArtifactError       the body had zero bytes
     ├── ArtifactConflictError    a different object already exists at the key
     ├── DownloadError            HTTP status or transport failure (``retryable`` varies)
     └── StorageError             the object store failed (``retryable`` True)

Every error leaves no object at the target key. Messages never carry a URL's
query string (signed URLs hold secrets there): see :func:`safe_url`.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def safe_url(url: str) -> str:
    """Return ``url`` without userinfo, query and fragment, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class ArtifactError(Exception):
    """Storing an artifact failed."""

    #: Whether trying again later may succeed. Callers decide retries from this alone.
    retryable: bool = False

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)


class UnsafeURLError(ArtifactError):
    """Only http(s) URLs without userinfo, reaching public addresses, are fetched."""


class ArtifactTooLargeError(ArtifactError):
    """The artifact is larger than the configured maximum."""


class ContentTypeError(ArtifactError):
    """The artifact's Content-Type is not one of the expected types."""


class EmptyArtifactError(ArtifactError):
    """The artifact body was empty; a zero-byte object is never stored."""


class ArtifactConflictError(ArtifactError):
    """A different object already exists at this key; it is never overwritten."""


class DownloadError(ArtifactError):
    """Downloading the artifact failed."""

    def __init__(self, message: str | None = None, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class StorageError(ArtifactError):
    """The object store failed; the operation may be retried."""

    retryable = True
