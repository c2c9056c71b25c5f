"""Artifacts in object storage: stream a URL into a store, create-only, with sha256.

One code path over obstore for ``file://DIR`` (the local default), ``s3://BUCKET/PREFIX``
(S3, MinIO, R2 ...) and ``memory://`` (tests). :meth:`ArtifactStore.store_from_url`
never holds a whole file in memory:

1. refuse non-http(s) URLs; GET with streaming; refuse bad status, a Content-Length
   above the cap, an unexpected Content-Type;
2. stream the body as a multipart upload to a unique staging key under ``.staging/``,
   hashing and counting on the way; the cap, an empty body or a dropped connection
   raise *inside* the iterator, so obstore aborts the upload and nothing is left;
3. commit with an atomic create-only rename to the final key (``overwrite=False``:
   a hard link on disk, a conditional multipart copy on S3);
4. write the integrity sidecar ``.sidecar/<key>.json`` (sha256, size, content type).

Why staging: obstore turns a ``mode="create"`` put into one buffered PUT, so a
create-only *streaming* write needs a streamed staging object plus a create-only
rename. If the final key already exists, its sha256 (sidecar, or hashed from the
object when the sidecar is missing) decides: equal is an idempotent retry and returns
the existing :class:`StoredObject`; different raises :class:`ArtifactConflictError`.
A crash between 2 and 3 leaves only a staging object; :meth:`ArtifactStore.sweep_staging`
removes old ones. Errors: :mod:`workers.storage.errors`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx
import obstore
from obstore.exceptions import AlreadyExistsError, BaseError, NotFoundError
from obstore.store import LocalStore, MemoryStore, S3Store

from workers.storage.deadline import DownloadBudget, ThroughputMeter, request_timeout
from workers.storage.download import (
    DEFAULT_EXPECTED_TYPES,
    HashingBody,
    check_response,
    check_source_url,
    translate_error,
)
from workers.storage.errors import (
    ArtifactConflictError,
    EmptyArtifactError,
    StorageError,
)
from workers.storage.staging import sweep_local_dir

if TYPE_CHECKING:
    from obstore.store import ClientConfig, ObjectStore, S3Config

    from workers.settings import Settings

__all__ = ["ArtifactStore", "StoredObject", "artifact_key"]

DEFAULT_MAX_BYTES = 1024 * 1024 * 1024
STAGING_PREFIX = ".staging/"
SIDECAR_PREFIX = ".sidecar/"
# S3 parts must be >= 5 MiB; 8 MiB x 4 in flight bounds upload buffers to ~32 MiB.
PART_SIZE_BYTES = 8 * 1024 * 1024
MAX_PARTS_IN_FLIGHT = 4
# obstore raises the builtin FileNotFoundError for a missing object, its own classes else.
_NOT_FOUND = (NotFoundError, FileNotFoundError)
_STORE_ERRORS = (BaseError, OSError)
_COMPONENT = re.compile(r"[\w][\w.=+@,-]{0,199}")
_EXTENSION = re.compile(r"[A-Za-z0-9]{1,10}")


@dataclass(frozen=True)
class StoredObject:
    """An object in the store: its key, hex sha256, size in bytes and content type."""

    key: str
    sha256: str
    size: int
    content_type: str

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return asdict(self)


def _component(value: object, what: str) -> str:
    text = str(value)
    if not _COMPONENT.fullmatch(text) or ".." in text:
        raise ValueError(f"unsafe {what} for a storage key: {text!r}")
    return text


def artifact_key(batch: str, row: int | str, step: str, artifact_id: str, ext: str) -> str:
    """Return the deterministic key ``batch/row/step/<artifact_id>.<ext>``.

    Each part must be one safe path component (word characters and ``.=+@,-``, not
    starting with a dot, no ``..``): a slash or traversal raises :class:`ValueError`.
    """
    extension = ext.removeprefix(".")
    if not _EXTENSION.fullmatch(extension):
        raise ValueError(f"unsafe extension for a storage key: {ext!r}")
    parts = (_component(batch, "batch"), _component(row, "row"), _component(step, "step"))
    return "/".join(parts) + f"/{_component(artifact_id, 'artifact id')}.{extension}"


def _check_key(key: str) -> str:
    segments = key.split("/")
    if not key or any(not s or s.startswith(".") or "\\" in s for s in segments):
        raise ValueError(f"unsafe storage key: {key!r}")
    return key


class ArtifactStore:
    """Create-only artifact storage over one obstore store.

    Build it with :meth:`from_url` or :meth:`from_settings`. Keys are ``/``-separated
    relative paths; names starting with a dot are reserved for staging and sidecars.
    """

    def __init__(
        self,
        store: ObjectStore,
        *,
        url: str,
        max_bytes: int = DEFAULT_MAX_BYTES,
        local_root: Path | None = None,
    ):
        self._store = store
        self._url = url.rstrip("/")
        self.max_bytes = max_bytes
        self._local_root = local_root

    @classmethod
    def from_url(
        cls,
        url: str = "file://./producer-results",
        *,
        s3_endpoint: str | None = None,
        s3_options: Mapping[str, str] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> ArtifactStore:
        """Open ``file://DIR`` (created if missing), ``s3://BUCKET/PREFIX`` or ``memory://``.

        S3 credentials and region come from the usual ``AWS_*`` variables unless given
        in ``s3_options`` (obstore S3 config keys, e.g. ``access_key_id``); an
        ``http://`` endpoint (MinIO, moto) allows plain HTTP.
        """
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme == "file":
            root = Path(url[len("file://") :]).expanduser().resolve()
            root.mkdir(parents=True, exist_ok=True)
            return cls(LocalStore(root), url=root.as_uri(), max_bytes=max_bytes, local_root=root)
        if scheme == "memory":
            return cls(MemoryStore(), url="memory://", max_bytes=max_bytes)
        if scheme in ("s3", "s3a"):
            store = _s3_store(url, s3_endpoint, s3_options or {})
            return cls(store, url=url, max_bytes=max_bytes)
        raise ValueError(
            f"unsupported storage URL scheme {scheme!r}: use file://, s3:// or memory://"
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> ArtifactStore:
        """Open the store the settings name, with their size cap and S3 options."""
        return cls.from_url(
            settings.storage_url,
            s3_endpoint=settings.s3_endpoint,
            s3_options={"copy_if_not_exists": settings.s3_copy_if_not_exists},
            max_bytes=settings.max_artifact_bytes,
        )

    @property
    def url(self) -> str:
        """The store's root URL (absolute ``file://`` for local stores)."""
        return self._url

    def url_for(self, key: str) -> str:
        """Return the URL of ``key`` in this store, for manifests."""
        return f"{self._url}/{_check_key(key)}"

    def store_from_url(
        self,
        source_url: str,
        key: str,
        *,
        http_client: httpx.Client,
        expected_types: Iterable[str] = DEFAULT_EXPECTED_TYPES,
        max_bytes: int | None = None,
        budget: DownloadBudget | None = None,
    ) -> StoredObject:
        """Stream ``source_url`` into ``key`` create-only; return what is stored there.

        Idempotent: an existing object with the same sha256 is returned as is; a
        different one raises :class:`ArtifactConflictError`. Redirects are followed.
        ``budget`` bounds the whole download in time and throughput (see
        :mod:`workers.storage.deadline`).
        """
        _check_key(key)
        check_source_url(source_url)
        cap = self.max_bytes if max_bytes is None else max_bytes
        meter = budget.meter(source_url) if budget is not None else None
        if meter is not None:
            meter.check(0)  # a budget already spent starts nothing
        try:
            with http_client.stream(
                "GET",
                source_url,
                follow_redirects=True,
                timeout=request_timeout(http_client, budget),
            ) as response:
                content_type = check_response(response, cap, tuple(expected_types))
                staging, digest, size = self._stage(response, cap, source_url, meter)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise translate_error(exc, source_url) from exc
        with _store_errors(f"committing {key!r}"):
            return self._commit(staging, StoredObject(key, digest, size, content_type))

    def _stage(
        self, response: httpx.Response, cap: int, url: str, meter: ThroughputMeter | None
    ) -> tuple[str, str, int]:
        staging = f"{STAGING_PREFIX}{uuid.uuid4().hex}"
        body = HashingBody(response, cap, meter)
        try:
            obstore.put(
                self._store,
                staging,
                iter(body),
                use_multipart=True,
                chunk_size=PART_SIZE_BYTES,
                max_concurrency=MAX_PARTS_IN_FLIGHT,
            )
        except Exception as exc:
            raise translate_error(body.error or exc, url) from exc
        return staging, body.sha256.hexdigest(), body.size

    def _commit(self, staging: str, stored: StoredObject) -> StoredObject:
        try:
            obstore.rename(self._store, staging, stored.key, overwrite=False)
        except AlreadyExistsError:
            self._delete_quietly(staging)
            return self._resolve_existing(stored)
        except _STORE_ERRORS:
            self._delete_quietly(staging)
            raise
        self._write_sidecar(stored)
        return stored

    def _resolve_existing(self, wanted: StoredObject) -> StoredObject:
        existing = self._read_sidecar(wanted.key)
        if existing is None or existing.sha256 != wanted.sha256:
            # The sidecar may be missing (crash after commit) or stale: the object decides.
            digest, size = self._hash_object(wanted.key)
            existing = StoredObject(wanted.key, digest, size, wanted.content_type)
            if digest == wanted.sha256:
                self._write_sidecar(existing)
        if existing.sha256 != wanted.sha256:
            raise ArtifactConflictError(
                f"{wanted.key!r} already holds sha256 {existing.sha256}, not {wanted.sha256}"
            )
        return existing

    def _hash_object(self, key: str) -> tuple[str, int]:
        digest, size = hashlib.sha256(), 0
        for chunk in obstore.get(self._store, key):
            view = memoryview(chunk)
            digest.update(view)
            size += view.nbytes
        return digest.hexdigest(), size

    def _read_sidecar(self, key: str) -> StoredObject | None:
        try:
            raw = obstore.get(self._store, SIDECAR_PREFIX + key + ".json").bytes()
            data = json.loads(bytes(raw))
        except _NOT_FOUND:
            return None
        return StoredObject(key, data["sha256"], int(data["size"]), data["content_type"])

    def _write_sidecar(self, stored: StoredObject) -> None:
        path = SIDECAR_PREFIX + stored.key + ".json"
        payload = _canonical_json(stored.to_dict())
        try:
            obstore.put(self._store, path, payload, mode="create")
        except AlreadyExistsError:
            # Left over from an object deleted by hand: the committed object is the truth.
            obstore.put(self._store, path, payload, mode="overwrite")

    def _delete_quietly(self, path: str) -> None:
        # A leftover staging object is swept later; the error being raised matters more.
        with contextlib.suppress(*_STORE_ERRORS):
            obstore.delete(self._store, path)

    def put_bytes(self, key: str, data: bytes, *, content_type: str) -> StoredObject:
        """Write a small object create-only; identical bytes already there are a no-op."""
        digest = hashlib.sha256(data).hexdigest()
        stored = StoredObject(_check_key(key), digest, len(data), content_type)
        if not data:
            raise EmptyArtifactError(f"refusing to store an empty object at {key!r}")
        with _store_errors(f"writing {key!r}"):
            try:
                obstore.put(self._store, key, data, mode="create")
            except AlreadyExistsError:
                existing = hashlib.sha256(self.get_bytes(key)).hexdigest()
                if existing != stored.sha256:
                    raise ArtifactConflictError(
                        f"{key!r} already holds sha256 {existing}, not {stored.sha256}"
                    ) from None
        return stored

    def put_json(self, key: str, data: Any) -> StoredObject:
        """Write ``data`` as canonical JSON create-only (same idempotence as artifacts)."""
        return self.put_bytes(key, _canonical_json(data), content_type="application/json")

    def get_bytes(self, key: str) -> bytes:
        """Return the whole object at ``key`` (small objects only); KeyError if missing."""
        try:
            return bytes(obstore.get(self._store, _check_key(key)).bytes())
        except _NOT_FOUND as exc:
            raise KeyError(key) from exc

    def get_json(self, key: str) -> Any:
        """Return the JSON object at ``key``; KeyError if missing."""
        return json.loads(self.get_bytes(key))

    def exists(self, key: str) -> bool:
        """Whether an object exists at ``key``."""
        try:
            obstore.head(self._store, _check_key(key))
        except _NOT_FOUND:
            return False
        return True

    def delete(self, key: str) -> None:
        """Delete the object at ``key`` and its sidecar; a missing one is no error."""
        with _store_errors(f"deleting {key!r}"):
            for path in (_check_key(key), SIDECAR_PREFIX + key + ".json"):
                with contextlib.suppress(*_NOT_FOUND):
                    obstore.delete(self._store, path)

    def list(self, prefix: str = "") -> list[str]:
        """Return the sorted keys under the directory-like ``prefix`` (internal names hidden)."""
        root = _check_key(prefix.rstrip("/")) if prefix.strip("/") else None
        with _store_errors(f"listing {prefix!r}"):
            keys = [meta["path"] for batch in obstore.list(self._store, root) for meta in batch]
        return sorted(k for k in keys if not k.startswith((STAGING_PREFIX, SIDECAR_PREFIX)))

    def sweep_staging(self, *, older_than_s: float = 24 * 3600) -> int:
        """Delete staging objects older than ``older_than_s`` (crash leftovers); return count.

        ``older_than_s`` must exceed the longest a download may run (the task time
        limit), or an upload in progress would be deleted under its writer.
        """
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        if self._local_root is not None:
            return sweep_local_dir(self._local_root / STAGING_PREFIX, cutoff.timestamp())
        with _store_errors("listing staging"):
            stale = [
                meta["path"]
                for batch in obstore.list(self._store, STAGING_PREFIX.rstrip("/"))
                for meta in batch
                if meta["last_modified"] < cutoff
            ]
        for path in stale:
            self._delete_quietly(path)
        return len(stale)


@contextlib.contextmanager
def _store_errors(doing: str) -> Iterator[None]:
    # The one place obstore's (and the OS's) errors become StorageError.
    try:
        yield
    except _STORE_ERRORS as exc:
        raise StorageError(f"object store failed {doing}: {exc}") from exc


def _canonical_json(data: Any) -> bytes:
    # Sorted keys so equal data gives equal bytes, which makes create-only writes idempotent.
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _s3_store(url: str, endpoint: str | None, options: Mapping[str, str]) -> ObjectStore:
    # "multipart" is how native S3 (and moto) do the create-only rename; R2 users set a
    # header variant instead (see obstore's S3Config.copy_if_not_exists).
    config: dict[str, Any] = {"copy_if_not_exists": "multipart", **options}
    if endpoint:
        config["endpoint"] = endpoint
    client_options: dict[str, Any] = {}
    if (endpoint or "").startswith("http://"):
        client_options["allow_http"] = True
    return S3Store.from_url(
        url, config=cast("S3Config", config), client_options=cast("ClientConfig", client_options)
    )
