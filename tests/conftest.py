"""Shared fixtures: a real Redis (``REDIS_URL`` or an embedded server)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

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
