"""ArtifactStore on S3 (moto's threaded server): the same guarantees as on disk."""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from workers.storage import (
    ArtifactConflictError,
    ArtifactStore,
    ArtifactTooLargeError,
    ContentTypeError,
    DownloadError,
    EmptyArtifactError,
    UnsafeURLError,
)

URL = "https://cdn.example/song.mp3?sig=abc"
MIB = 1024 * 1024
_buckets = itertools.count()


class Chunks(httpx.SyncByteStream):
    """A response body served chunk by chunk, optionally dropping the connection."""

    def __init__(self, chunks: list[bytes], *, drop_after: int | None = None) -> None:
        self.chunks = chunks
        self.drop_after = drop_after

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if index == self.drop_after:
                raise httpx.ReadError("connection reset mid-body")
            yield chunk


def client(body: bytes | Chunks, content_type: str = "audio/mpeg") -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": content_type}
        if isinstance(body, bytes):
            return httpx.Response(200, headers=headers, content=body)
        return httpx.Response(200, headers=headers, stream=body)

    return httpx.Client(transport=httpx.MockTransport(handler))


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint: str) -> tuple[Any, str]:
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    name = f"artifacts-{next(_buckets)}"
    s3.create_bucket(Bucket=name)
    return s3, name


@pytest.fixture
def store(s3_endpoint: str, bucket: tuple[Any, str]) -> ArtifactStore:
    creds = {"access_key_id": "testing", "secret_access_key": "testing", "region": "us-east-1"}
    return ArtifactStore.from_url(
        f"s3://{bucket[1]}/results", s3_endpoint=s3_endpoint, s3_options=creds, max_bytes=24 * MIB
    )


def bucket_keys(bucket: tuple[Any, str]) -> list[str]:
    s3, name = bucket
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=name).get("Contents", []))


def open_uploads(bucket: tuple[Any, str]) -> list[Any]:
    s3, name = bucket
    return list(s3.list_multipart_uploads(Bucket=name).get("Uploads", []))


def test_streams_a_multipart_body_and_records_sha256(
    store: ArtifactStore, bucket: tuple[Any, str]
) -> None:
    chunks = [bytes([i]) * MIB for i in range(20)]  # 20 MiB: three 8 MiB parts
    body = b"".join(chunks)
    with client(Chunks(chunks)) as http:
        stored = store.store_from_url(URL, "b/1/gen/a.mp3", http_client=http)
    assert stored.sha256 == hashlib.sha256(body).hexdigest()
    assert stored.size == len(body)
    assert hashlib.sha256(store.get_bytes("b/1/gen/a.mp3")).hexdigest() == stored.sha256
    assert bucket_keys(bucket) == ["results/.sidecar/b/1/gen/a.mp3.json", "results/b/1/gen/a.mp3"]
    assert store.list("b") == ["b/1/gen/a.mp3"]
    assert open_uploads(bucket) == []


def test_create_only_retry_is_idempotent_and_conflict_keeps_original(
    store: ArtifactStore, bucket: tuple[Any, str]
) -> None:
    with client(b"song") as http:
        first = store.store_from_url(URL, "k.mp3", http_client=http)
        assert store.store_from_url(URL, "k.mp3", http_client=http) == first
    with client(b"another song") as http, pytest.raises(ArtifactConflictError):
        store.store_from_url(URL, "k.mp3", http_client=http)
    assert store.get_bytes("k.mp3") == b"song"
    assert bucket_keys(bucket) == ["results/.sidecar/k.mp3.json", "results/k.mp3"]


def test_interrupted_download_leaves_no_object_and_no_upload(
    store: ArtifactStore, bucket: tuple[Any, str]
) -> None:
    stream = Chunks([b"x" * MIB] * 20, drop_after=12)  # after one part was uploaded
    with client(stream) as http, pytest.raises(DownloadError) as info:
        store.store_from_url(URL, "k.mp3", http_client=http)
    assert info.value.retryable
    assert bucket_keys(bucket) == []
    assert open_uploads(bucket) == []


def test_size_cap_aborts_the_upload(store: ArtifactStore, bucket: tuple[Any, str]) -> None:
    with client(Chunks([b"x" * MIB] * 40)) as http, pytest.raises(ArtifactTooLargeError):
        store.store_from_url(URL, "k.mp3", http_client=http)
    assert bucket_keys(bucket) == []
    assert open_uploads(bucket) == []


def test_bad_content_type_empty_body_and_scheme_store_nothing(
    store: ArtifactStore, bucket: tuple[Any, str]
) -> None:
    with client(b"<html>", "text/html") as http, pytest.raises(ContentTypeError):
        store.store_from_url(URL, "k.mp3", http_client=http)
    with client(Chunks([])) as http, pytest.raises(EmptyArtifactError):
        store.store_from_url(URL, "k.mp3", http_client=http)
    with client(b"x") as http, pytest.raises(UnsafeURLError, match="'file'"):
        store.store_from_url("file:///etc/passwd", "k.mp3", http_client=http)
    assert bucket_keys(bucket) == []


def test_json_beside_the_artifact_is_create_only(store: ArtifactStore) -> None:
    first = store.put_json("b/1/gen/a.json", {"title": "t"})
    assert store.put_json("b/1/gen/a.json", {"title": "t"}) == first
    with pytest.raises(ArtifactConflictError):
        store.put_json("b/1/gen/a.json", {"title": "other"})
    assert store.get_json("b/1/gen/a.json") == {"title": "t"}
    assert store.exists("b/1/gen/a.json")
    assert not store.exists("b/1/gen/zzz.json")


def test_concurrent_writers_of_the_same_bytes_both_succeed(store: ArtifactStore) -> None:
    def write(_: int) -> str:
        with client(b"same bytes") as http:
            return store.store_from_url(URL, "k.mp3", http_client=http).sha256

    with ThreadPoolExecutor(4) as pool:
        digests = set(pool.map(write, range(4)))
    assert digests == {hashlib.sha256(b"same bytes").hexdigest()}
