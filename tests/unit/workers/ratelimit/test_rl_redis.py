"""The Lua scripts on fakeredis (Lua, real clock) and on a real Redis (``REDIS_URL`` or embedded).

Time is real here, so assertions leave room for scheduling; the exact arithmetic
is pinned down by ``test_rl_algorithm.py`` and ``test_rl_lua_parity.py``.
"""

from __future__ import annotations

import threading
import time

import pytest
import redis

from workers.ratelimit import (
    EndpointClass,
    Limiter,
    LimiterDefaults,
    Limits,
    RedisBackend,
    Tuning,
    token_id_for,
)

DEFAULTS = LimiterDefaults(submit=Limits(50.0, 10.0), max_in_flight=2, lease_ttl_s=5.0)
FAST = Tuning(recovery_s=1.0, backoff_s=0.2, window_s=0.5)


def is_fakeredis(client: redis.Redis) -> bool:
    return type(client).__module__.startswith("fakeredis")


def make(client: redis.Redis) -> Limiter:
    return Limiter(RedisBackend(client), defaults=DEFAULTS, tuning=FAST)


def test_burst_then_refill_at_the_rate(lua_client: redis.Redis) -> None:
    limiter = make(lua_client)
    assert sum(limiter.acquire("t").granted for _ in range(15)) == 10
    time.sleep(0.2)
    granted = sum(limiter.acquire("t").granted for _ in range(30))
    assert 9 <= granted <= 13  # 50/s for ~0.2 s


def test_weighted_cost(lua_client: redis.Redis) -> None:
    limiter = make(lua_client)
    assert limiter.acquire("t", cost=6).granted
    decision = limiter.acquire("t", cost=6)
    assert not decision.granted
    assert 30 <= decision.wait_ms <= 41  # 2 tokens short at 50/s
    time.sleep(decision.wait_s)
    assert limiter.acquire("t", cost=6).granted


def test_concurrent_callers_never_exceed_burst_plus_rate(
    lua_client: redis.Redis, redis_url: str
) -> None:
    is_fake = is_fakeredis(lua_client)
    granted: list[int] = []
    stop = time.monotonic() + 1.0
    start = time.monotonic()

    def hammer() -> None:
        client = lua_client if is_fake else redis.Redis.from_url(redis_url)
        limiter, mine = make(client), 0
        while time.monotonic() < stop:
            mine += limiter.acquire("shared").granted
        granted.append(mine)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    allowed = 10 + 50 * (time.monotonic() - start)
    assert 0.85 * allowed <= sum(granted) <= allowed + 1


def test_leases_cap_in_flight_and_expire_when_not_renewed(lua_client: redis.Redis) -> None:
    limiter = make(lua_client)
    assert limiter.lease("t", "a", ttl_s=0.3).granted
    assert limiter.lease("t", "b", ttl_s=5).granted
    denied = limiter.lease("t", "c")
    assert not denied.granted
    assert denied.reason == "in_flight"
    assert 1 <= denied.wait_ms <= 300
    assert limiter.lease("t", "a", ttl_s=0.3).granted  # held id: renewed, not counted twice
    time.sleep(0.35)  # "a" expired: its worker died
    assert limiter.show("t").in_flight == 1
    assert limiter.lease("t", "c").granted
    assert not limiter.renew("t", "a")
    assert limiter.release("t", "b")
    assert not limiter.release("t", "b")
    assert limiter.show("t").in_flight == 1


def test_the_leases_key_expires_with_its_last_lease(lua_client: redis.Redis) -> None:
    limiter = make(lua_client)
    limiter.lease("t", "a", ttl_s=0.1)
    time.sleep(1.3)  # ttl + the 1 s grace the script adds
    assert not any(b"leases" in key for key in lua_client.keys("*"))


def test_runtime_changes_reach_every_worker(lua_client: redis.Redis) -> None:
    worker, operator = make(lua_client), make(lua_client)
    operator.set_limits("t", ceiling=5, burst=1)
    operator.set_max_in_flight("t", 1)
    assert worker.acquire("t").granted
    assert 150 <= worker.acquire("t").wait_ms <= 200
    assert worker.lease("t", "a").granted
    assert not worker.lease("t", "b").granted
    status = worker.show("t")
    assert (status.submit.ceiling, status.submit.burst, status.max_in_flight) == (5, 1, 1)


def test_adaptive_decrease_then_recovery(lua_client: redis.Redis) -> None:
    limiter = make(lua_client)
    epoch = limiter.acquire("t").epoch
    assert limiter.report_throttled("t", epoch=epoch) == pytest.approx(0.2, abs=0.01)
    limiter.report_throttled("t", epoch=epoch)  # a stale reply: no second cut
    status = limiter.show("t").submit
    assert status.throttles == 1
    assert status.rate == pytest.approx(35.0)
    assert status.pause_until is not None
    assert not limiter.acquire("t").granted
    deadline = time.monotonic() + 5
    while limiter.report_success("t") < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert limiter.show("t").submit.rate == 50


def test_the_clock_is_redis_time_not_the_workers(
    lua_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    if is_fakeredis(lua_client):
        pytest.skip("fakeredis's TIME is this process's clock")
    limiter = make(lua_client)
    for _ in range(10):
        limiter.acquire("t")
    monkeypatch.setattr(time, "time", lambda: 4_000_000_000.0)  # a worker an era ahead
    assert not limiter.acquire("t").granted


def test_scripts_are_reloaded_after_a_script_flush(lua_client: redis.Redis) -> None:
    limiter = make(lua_client)
    assert limiter.acquire("t").granted
    lua_client.script_flush()
    assert limiter.acquire("t").granted
    assert limiter.lease("t", "a").granted


def test_keys_name_the_token_id_never_the_token(lua_client: redis.Redis) -> None:
    secret = "sk-very-secret-token"
    tid = token_id_for(secret)
    limiter = make(lua_client)
    limiter.acquire(tid)
    limiter.acquire(tid, EndpointClass.POLL)
    limiter.lease(tid, "lease-1")
    keys = sorted(k.decode() for k in lua_client.keys("*"))
    assert keys == [
        f"producer:limit:{{{tid}}}:leases",
        f"producer:limit:{{{tid}}}:poll",
        f"producer:limit:{{{tid}}}:submit",
    ]
    dump = repr([lua_client.hgetall(k) for k in keys if not k.endswith("leases")])
    assert secret not in dump


def test_a_decoding_client_works_too(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    limiter = make(client)
    assert limiter.acquire("t").granted
    assert limiter.lease("t", "a").granted
    assert limiter.show("t").in_flight == 1
    client.close()
