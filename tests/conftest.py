"""Shared fixtures: a real Redis (``REDIS_URL`` or an embedded server)."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis
from celery.result import AsyncResult

from workers.embedded_redis import EmbeddedRedis


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """URL of a real Redis: ``REDIS_URL`` when set, else an embedded server for the session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis() as server:
        yield server.url
        release_results(server.url)


def release_results(url: str) -> None:
    """Let go of every Celery result's subscription while the server still answers.

    A result that was sent but never awaited stays subscribed to its task's channel;
    when it is finalised it unsubscribes. Finalised after the server stopped (a result
    in a reference cycle, freed by pytest's last garbage collection), the unsubscribe
    retries the dead server for ~20 s and raises in ``AsyncResult.__del__``: pytest then
    reports ``PytestUnraisableExceptionWarning`` and fails a run whose tests all passed.
    So: finalise the garbage now, and release the results on this server that Celery
    itself still holds (a group's children stay in the backend's pending results after
    ``get()``).
    """
    gc.collect()
    port = urlsplit(url).port
    for result in [o for o in gc.get_objects() if isinstance(o, AsyncResult)]:
        params = getattr(result.backend, "connparams", None) or {}
        if params.get("port") == port:
            result.backend.remove_pending_result(result)


@pytest.fixture
def redis_url(redis_server_url: str) -> Iterator[str]:
    """A Redis URL on a database flushed before the test.

    Tests on one database run one at a time (no xdist), so flushing is safe and keeps
    state from leaking between tests.
    """
    client = redis.Redis.from_url(redis_server_url)
    client.flushdb()
    client.close()
    yield redis_server_url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A ``redis.Redis`` client on the flushed test database."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()
