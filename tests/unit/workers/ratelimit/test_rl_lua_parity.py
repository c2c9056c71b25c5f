"""``token_bucket.lua`` and ``leases.lua`` compute exactly what their Python references do.

Hypothesis drives random sequences of operations through the memory twin and
through the scripts on fakeredis (Lua), both reading one ``FakeClock``; every
reply and the final state must be identical.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import fakeredis
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.ratelimit import (
    EndpointClass,
    FakeClock,
    Limiter,
    LimiterDefaults,
    Limits,
    MemoryBackend,
    RedisBackend,
    Tuning,
)

DEFAULTS = LimiterDefaults(submit=Limits(5.0, 3.0), poll=Limits(1.0, 1.0), max_in_flight=2)
TUNING = Tuning().scaled(10)
ENDPOINTS = st.sampled_from(list(EndpointClass))

ops = st.one_of(
    st.tuples(st.just("advance"), st.integers(0, 3_000_000)),
    st.tuples(st.just("take"), ENDPOINTS, st.sampled_from([0.5, 1.0, 2.0, 7.0])),
    st.tuples(st.just("success"), ENDPOINTS),
    st.tuples(
        st.just("throttle"),
        ENDPOINTS,
        st.one_of(st.none(), st.floats(0, 5)),
        st.one_of(st.none(), st.integers(0, 3)),
    ),
    st.tuples(st.just("set"), st.sampled_from([None, 2.0, 8.0]), st.sampled_from([None, 1.0, 4.0])),
    st.tuples(st.just("lease"), st.sampled_from("abcd"), st.sampled_from([0.5, 2.0])),
    st.tuples(st.just("renew"), st.sampled_from("abcd")),
    st.tuples(st.just("release"), st.sampled_from("abcd")),
    st.tuples(st.just("cap"), st.integers(1, 3)),
)


def apply(limiter: Limiter, op: tuple[Any, ...]) -> object:
    kind, *args = op
    if kind == "take":
        return limiter.acquire("t", args[0], args[1])
    if kind == "success":
        return limiter.report_success("t", args[0])
    if kind == "throttle":
        return limiter.report_throttled("t", args[0], retry_after_s=args[1], epoch=args[2])
    if kind == "set":
        return limiter.set_limits("t", ceiling=args[0], burst=args[1])
    if kind == "lease":
        return limiter.lease("t", args[0], ttl_s=args[1])
    if kind == "renew":
        return limiter.renew("t", args[0], ttl_s=1.0)
    if kind == "release":
        return limiter.release("t", args[0])
    return limiter.set_max_in_flight("t", args[0])


@settings(max_examples=300, deadline=None)
@given(st.lists(ops, max_size=40))
def test_lua_and_python_agree_on_every_reply_and_the_final_state(
    sequence: list[tuple[Any, ...]],
) -> None:
    clock = FakeClock()
    with mock.patch("fakeredis.commands_mixins.server_mixin.time", clock):
        client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        twin = Limiter(MemoryBackend(clock=clock), defaults=DEFAULTS, tuning=TUNING)
        lua = Limiter(RedisBackend(client), defaults=DEFAULTS, tuning=TUNING)
        for op in sequence:
            if op[0] == "advance":
                clock.advance(op[1] / 1_000_000)
            else:
                assert apply(lua, op) == apply(twin, op), op
        assert lua.show("t") == twin.show("t")
        client.close()
