"""ArtifactStore on file:// and memory://: streaming, checks, create-only idempotence."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import obstore
import pytest

from workers.storage import (
    ArtifactConflictError,
    ArtifactStore,
    ArtifactTooLargeError,
    ContentTypeError,
    DownloadError,
    EmptyArtifactError,
    StorageError,
    StoredObject,
    UnsafeURLError,
    artifact_key,
)
from workers.storage.store import SIDECAR_PREFIX, STAGING_PREFIX

Handler = Callable[[httpx.Request], httpx.Response]
URL = "https://cdn.example/song.mp3?token=s3cr3t"


class Chunks(httpx.SyncByteStream):
    """A response body served chunk by chunk, optionally dropping the connection."""

    def __init__(self, chunks: list[bytes], *, drop_after: int | None = None) -> None:
        self.chunks = chunks
        self.drop_after = drop_after
        self.served = 0

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if index == self.drop_after:
                raise httpx.RemoteProtocolError("peer closed connection mid-body")
            self.served += 1
            yield chunk


def client_for(handler: Handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def audio(body: bytes | Chunks, content_type: str = "audio/mpeg", **headers: str) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        hdrs = {"content-type": content_type, **headers}
        if isinstance(body, bytes):
            return httpx.Response(200, headers=hdrs, content=body)
        return httpx.Response(200, headers=hdrs, stream=body)

    return handler


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    url = f"file://{tmp_path / 'results'}" if request.param == "file" else "memory://"
    return ArtifactStore.from_url(url, max_bytes=1024 * 1024)


def internal_paths(store: ArtifactStore) -> list[str]:
    inner = store._store
    return [m["path"] for b in obstore.list(inner, None) for m in b if m["path"].startswith(".")]


def staging_paths(store: ArtifactStore) -> list[str]:
    return [p for p in internal_paths(store) if p.startswith(STAGING_PREFIX)]


# --- keys ---------------------------------------------------------------------------


def test_artifact_key_is_deterministic() -> None:
    assert artifact_key("b1", 7, "generate", "a-1", "mp3") == "b1/7/generate/a-1.mp3"
    assert artifact_key("b1", "7", "stems", "x", ".zip") == "b1/7/stems/x.zip"


@pytest.mark.parametrize(
    ("batch", "row", "step", "artifact_id", "ext"),
    [
        ("..", 1, "s", "a", "mp3"),
        ("b", 1, "s/../x", "a", "mp3"),
        ("b", 1, "s", "a/b", "mp3"),
        ("b", 1, "s", ".hidden", "mp3"),
        ("", 1, "s", "a", "mp3"),
        ("b", 1, "s", "a", "mp3/x"),
        ("b", 1, "s", "a..b", "mp3"),
        ("b\\c", 1, "s", "a", "mp3"),
    ],
)
def test_artifact_key_rejects_unsafe_components(
    batch: str, row: int, step: str, artifact_id: str, ext: str
) -> None:
    with pytest.raises(ValueError, match="unsafe"):
        artifact_key(batch, row, step, artifact_id, ext)


# --- streaming a URL into the store ----------------------------------------------------


def test_store_from_url_streams_and_records_sha256(store: ArtifactStore) -> None:
    chunks = [bytes([i]) * 100_000 for i in range(5)]
    body = b"".join(chunks)
    stream = Chunks(chunks)
    with client_for(audio(stream, "audio/mpeg; charset=binary")) as http:
        stored = store.store_from_url(URL, "b/1/gen/a.mp3", http_client=http)
    assert stored == StoredObject(
        "b/1/gen/a.mp3", hashlib.sha256(body).hexdigest(), len(body), "audio/mpeg"
    )
    assert stream.served == 5
    assert store.get_bytes("b/1/gen/a.mp3") == body
    assert store.list("b") == ["b/1/gen/a.mp3"]
    assert staging_paths(store) == []
    assert internal_paths(store) == [SIDECAR_PREFIX + "b/1/gen/a.mp3.json"]


def test_retry_with_same_bytes_returns_existing_object(store: ArtifactStore) -> None:
    with client_for(audio(b"song")) as http:
        first = store.store_from_url(URL, "k.mp3", http_client=http)
        again = store.store_from_url(URL, "k.mp3", http_client=http)
    assert again == first
    assert staging_paths(store) == []


def test_different_bytes_at_same_key_conflict_and_keep_the_original(store: ArtifactStore) -> None:
    with client_for(audio(b"song")) as http:
        store.store_from_url(URL, "k.mp3", http_client=http)
    with client_for(audio(b"other song")) as http, pytest.raises(ArtifactConflictError):
        store.store_from_url(URL, "k.mp3", http_client=http)
    assert store.get_bytes("k.mp3") == b"song"
    assert staging_paths(store) == []


def test_missing_sidecar_is_rebuilt_from_the_object(store: ArtifactStore) -> None:
    with client_for(audio(b"song")) as http:
        first = store.store_from_url(URL, "k.mp3", http_client=http)
        obstore.delete(store._store, SIDECAR_PREFIX + "k.mp3.json")
        assert store.store_from_url(URL, "k.mp3", http_client=http) == first
    assert SIDECAR_PREFIX + "k.mp3.json" in internal_paths(store)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://host/a.mp3",
        "file:///etc/passwd",
        "data:audio/mp3,xx",
        "javascript:alert(1)",
        "no-scheme",
    ],
)
def test_non_http_urls_are_refused_without_a_request(store: ArtifactStore, url: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request may be made")

    with client_for(handler) as http, pytest.raises(UnsafeURLError, match="scheme"):
        store.store_from_url(url, "k.mp3", http_client=http)


def test_declared_length_above_cap_is_refused_before_reading(store: ArtifactStore) -> None:
    stream = Chunks([b"x"] * 3)
    handler = audio(stream, **{"content-length": str(store.max_bytes + 1)})
    with client_for(handler) as http, pytest.raises(ArtifactTooLargeError):
        store.store_from_url(URL, "k.mp3", http_client=http)
    assert stream.served == 0
    assert not store.exists("k.mp3")


def test_streamed_body_above_cap_aborts_and_leaves_nothing(store: ArtifactStore) -> None:
    stream = Chunks([b"x" * 300_000] * 50)  # 15 MB, no Content-Length, cap 1 MiB
    with client_for(audio(stream)) as http, pytest.raises(ArtifactTooLargeError):
        store.store_from_url(URL, "k.mp3", http_client=http)
    assert stream.served < 10  # stopped reading soon after the cap
    assert not store.exists("k.mp3")
    assert internal_paths(store) == []


def test_per_call_cap_overrides_the_store_cap(store: ArtifactStore) -> None:
    with client_for(audio(b"0123456789")) as http, pytest.raises(ArtifactTooLargeError):
        store.store_from_url(URL, "k.mp3", http_client=http, max_bytes=5)


@pytest.mark.parametrize("content_type", ["text/html", "application/json", ""])
def test_unexpected_content_type_is_refused(store: ArtifactStore, content_type: str) -> None:
    with client_for(audio(b"<html>", content_type)) as http, pytest.raises(ContentTypeError):
        store.store_from_url(URL, "k.mp3", http_client=http)
    assert not store.exists("k.mp3")


def test_expected_types_can_be_narrowed(store: ArtifactStore) -> None:
    with client_for(audio(b"png", "image/png")) as http:
        assert store.store_from_url(URL, "c.png", http_client=http, expected_types=("image/",))
        with pytest.raises(ContentTypeError):
            store.store_from_url(URL, "d.png", http_client=http, expected_types=("audio/",))


@pytest.mark.parametrize("body", [b"", Chunks([])])
def test_empty_body_is_refused(store: ArtifactStore, body: bytes | Chunks) -> None:
    with client_for(audio(body)) as http, pytest.raises(EmptyArtifactError):
        store.store_from_url(URL, "k.mp3", http_client=http)
    assert not store.exists("k.mp3")
    assert internal_paths(store) == []


def test_interrupted_download_leaves_no_object(store: ArtifactStore) -> None:
    stream = Chunks([b"y" * 200_000] * 5, drop_after=3)
    with client_for(audio(stream)) as http, pytest.raises(DownloadError) as info:
        store.store_from_url(URL, "k.mp3", http_client=http)
    assert info.value.retryable
    assert not store.exists("k.mp3")
    assert internal_paths(store) == []


@pytest.mark.parametrize(
    ("status", "retryable"), [(404, False), (403, False), (429, True), (500, True), (503, True)]
)
def test_http_errors_say_whether_to_retry(
    store: ArtifactStore, status: int, retryable: bool
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"content-type": "audio/mpeg"}, content=b"no")

    with client_for(handler) as http, pytest.raises(DownloadError) as info:
        store.store_from_url(URL, "k.mp3", http_client=http)
    assert info.value.retryable is retryable
    assert "s3cr3t" not in str(info.value)


def test_redirects_are_followed(store: ArtifactStore) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/old":
            return httpx.Response(302, headers={"location": "https://cdn.example/new"})
        return httpx.Response(200, headers={"content-type": "audio/mpeg"}, content=b"moved")

    with client_for(handler) as http:
        stored = store.store_from_url("https://cdn.example/old", "k.mp3", http_client=http)
    assert stored.size == 5


def test_connection_refused_is_a_retryable_download_error(store: ArtifactStore) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with httpx.Client() as http, pytest.raises(DownloadError) as info:
        store.store_from_url(f"http://127.0.0.1:{port}/a.mp3", "k.mp3", http_client=http)
    assert info.value.retryable


def _serve_truncated_once(total: int, sent: int) -> tuple[str, threading.Thread]:
    """A loopback server that promises ``total`` bytes, sends ``sent`` and hangs up."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn, server:
            conn.recv(65536)
            head = f"HTTP/1.1 200 OK\r\ncontent-type: audio/mpeg\r\ncontent-length: {total}\r\n\r\n"
            conn.sendall(head.encode() + b"z" * sent)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{server.getsockname()[1]}/a.mp3", thread


def test_real_connection_drop_mid_body_leaves_no_object(store: ArtifactStore) -> None:
    url, thread = _serve_truncated_once(total=900_000, sent=300_000)
    with httpx.Client() as http, pytest.raises(DownloadError) as info:
        store.store_from_url(url, "k.mp3", http_client=http)
    thread.join(5)
    assert info.value.retryable
    assert not store.exists("k.mp3")
    assert internal_paths(store) == []


# --- small objects, listing, construction -----------------------------------------------


def test_put_json_is_create_only_and_idempotent(store: ArtifactStore) -> None:
    first = store.put_json("b/1/gen/a.json", {"title": "x", "n": 1})
    assert store.put_json("b/1/gen/a.json", {"n": 1, "title": "x"}) == first
    with pytest.raises(ArtifactConflictError):
        store.put_json("b/1/gen/a.json", {"title": "y"})
    assert store.get_json("b/1/gen/a.json") == {"title": "x", "n": 1}
    assert first.content_type == "application/json"


def test_get_exists_and_list(store: ArtifactStore) -> None:
    store.put_bytes("a/1.txt", b"1", content_type="text/plain")
    store.put_bytes("a/2/3.txt", b"3", content_type="text/plain")
    store.put_bytes("ab/4.txt", b"4", content_type="text/plain")
    assert store.exists("a/1.txt")
    assert not store.exists("a/9.txt")
    assert store.list("a") == ["a/1.txt", "a/2/3.txt"]
    assert store.list("a/") == ["a/1.txt", "a/2/3.txt"]
    assert store.list() == ["a/1.txt", "a/2/3.txt", "ab/4.txt"]
    with pytest.raises(KeyError):
        store.get_bytes("a/9.txt")


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", ".staging/x", "a/.sidecar"])
def test_unsafe_keys_are_refused(store: ArtifactStore, key: str) -> None:
    with pytest.raises(ValueError, match="unsafe"):
        store.put_bytes(key, b"x", content_type="text/plain")


def test_empty_small_object_is_refused(store: ArtifactStore) -> None:
    with pytest.raises(EmptyArtifactError):
        store.put_bytes("a.txt", b"", content_type="text/plain")


def test_sweep_staging_removes_crash_leftovers(store: ArtifactStore) -> None:
    obstore.put(store._store, STAGING_PREFIX + "leftover", b"partial")
    assert store.sweep_staging(older_than_s=3600) == 0
    assert store.sweep_staging(older_than_s=-1) == 1
    assert staging_paths(store) == []


def test_file_url_may_be_relative_and_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = ArtifactStore.from_url("file://./producer-results")
    assert (tmp_path / "producer-results").is_dir()
    assert store.url_for("b/1.mp3") == (tmp_path / "producer-results").as_uri() + "/b/1.mp3"


def test_unknown_store_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported storage URL scheme"):
        ArtifactStore.from_url("ftp://host/dir")


def test_store_failure_on_commit_is_a_retryable_storage_error(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_rename(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(obstore, "rename", broken_rename)
    with client_for(audio(b"song")) as http, pytest.raises(StorageError) as info:
        store.store_from_url(URL, "k.mp3", http_client=http)
    assert info.value.retryable
    assert not store.exists("k.mp3")
    assert staging_paths(store) == []
