"""Fixtures for the limiter tests: backends with a controllable clock.

``FakeClock`` reports seconds exactly the way ``token_bucket.lua`` computes them
from Redis ``TIME``, so the memory twin and the Lua script on a fakeredis whose
``TIME`` reads the same clock see bit-identical times.
"""

from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import pytest
import redis

from workers.ratelimit import (
    FakeClock,
    Limiter,
    LimiterDefaults,
    Limits,
    MemoryBackend,
    RedisBackend,
    Tuning,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_redis(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[fakeredis.FakeRedis]:
    """fakeredis (with Lua) whose ``TIME`` reads ``clock``."""
    monkeypatch.setattr("fakeredis.commands_mixins.server_mixin.time", clock)
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    yield client
    client.close()


DEFAULTS = LimiterDefaults(
    submit=Limits(ceiling=10.0, burst=5.0),
    poll=Limits(ceiling=1.0, burst=1.0),
    max_in_flight=3,
    lease_ttl_s=60.0,
)


@pytest.fixture(params=["memory", "fakeredis"])
def limiter(
    request: pytest.FixtureRequest, clock: FakeClock, fake_redis: fakeredis.FakeRedis
) -> Limiter:
    """The same limiter over the memory twin and over Lua on fakeredis, both on ``clock``."""
    backend = MemoryBackend(clock=clock) if request.param == "memory" else RedisBackend(fake_redis)
    return Limiter(backend, defaults=DEFAULTS, tuning=Tuning())


@pytest.fixture(params=["fakeredis-lua", "redis"])
def lua_client(request: pytest.FixtureRequest, redis_url: str) -> Iterator[redis.Redis]:
    """A client running the real scripts: fakeredis (Lua, real clock) or a real Redis."""
    if request.param == "redis":
        client: redis.Redis = redis.Redis.from_url(redis_url)
    else:
        client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    yield client
    client.close()
