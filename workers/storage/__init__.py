"""Artifacts in object storage: stream a URL into a store, create-only, with sha256.

* :mod:`~workers.storage.store` — :class:`ArtifactStore` (obstore over ``file://``,
  ``s3://``, ``memory://``), :class:`StoredObject`, :func:`artifact_key`;
* :mod:`~workers.storage.download` — the HTTP side: response checks, the hashing body
  iterator, error translation (in one place);
* :mod:`~workers.storage.urlguard` — where downloads may connect (public addresses, or
  hosts allowed by name), checked on the address each connection really uses;
* :mod:`~workers.storage.deadline` — a collect's download deadline and throughput
  floor, and one download of an artifact at a time (a Redis lock);
* :mod:`~workers.storage.errors` — :class:`ArtifactError` and its subclasses.

The design (staging, create-only rename, sidecars) is told in :mod:`workers.storage.store`
and ``docs/storage.md``.
"""

from workers.storage.download import DEFAULT_EXPECTED_TYPES
from workers.storage.errors import (
    ArtifactConflictError,
    ArtifactError,
    ArtifactTooLargeError,
    ContentTypeError,
    DownloadError,
    EmptyArtifactError,
    StorageError,
    UnsafeURLError,
)
from workers.storage.store import ArtifactStore, StoredObject, artifact_key

__all__ = [
    "DEFAULT_EXPECTED_TYPES",
    "ArtifactConflictError",
    "ArtifactError",
    "ArtifactStore",
    "ArtifactTooLargeError",
    "ContentTypeError",
    "DownloadError",
    "EmptyArtifactError",
    "StorageError",
    "StoredObject",
    "UnsafeURLError",
    "artifact_key",
]
