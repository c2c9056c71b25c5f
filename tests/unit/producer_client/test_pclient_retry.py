"""Retry policy: bounded, jittered, and never a second charge for a paid POST."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pclient_support import Harness, Reply, Script, load_example, reply

import producer_client as pc
from producer_client._retry import (
    MAX_DELAY_S,
    MAX_RETRY_AFTER_S,
    retry_delay_s,
    should_retry,
)

OK_SUBMIT = reply(body={"task_id": "t1"})
OK_TASK = reply(body={"id": "t1"})

PAID_CALLS: dict[str, tuple[Callable[[Any], Any], httpx.Response]] = {
    "audios.create": (
        lambda c: c.audios.create(pc.GenerateParams(prompt="x")),
        reply(body=load_example("audios_generate_prompt.json")["response"]),
    ),
    "audios.submit": (lambda c: c.audios.submit(pc.GenerateParams(prompt="x")), OK_SUBMIT),
    "upload.create": (
        lambda c: c.upload.create(audio_url="https://a/x.mp3"),
        reply(body=load_example("upload.json")["response"]),
    ),
    "lyrics.create": (
        lambda c: c.lyrics.create(prompt="winter"),
        reply(body=load_example("lyrics.json")["response"]),
    ),
    "wav.create": (
        lambda c: c.wav.create(audio_id="a"),
        reply(body=load_example("wav.json")["response"]),
    ),
    "videos.create": (
        lambda c: c.videos.create(audio_id="a"),
        reply(body=load_example("videos.json")["response"]),
    ),
}
POLL_CALLS: dict[str, Callable[[Any], Any]] = {
    "tasks.retrieve": lambda c: c.tasks.retrieve("t1"),
    "tasks.retrieve_batch": lambda c: c.tasks.retrieve_batch(["t1"]),
}

# Failures after which the server may have acted on the request.
MAYBE_ACTED: dict[str, Reply] = {
    "read timeout": httpx.ReadTimeout,
    "write timeout": httpx.WriteTimeout,
    "connection dropped": httpx.RemoteProtocolError,
    "500 api_error": reply(500, {"error": {"code": "api_error", "message": "fetch failed"}}),
    "502": httpx.Response(502, text="bad gateway"),
    "504 timeout": reply(504, {"error": {"code": "timeout", "message": None}}),
}
# Failures that prove the server did not act on it.
REFUSED: dict[str, Reply] = {
    "connect error": httpx.ConnectError,
    "connect timeout": httpx.ConnectTimeout,
    "429": reply(429, {"error": {"code": "too_many_requests", "message": "slow"}}),
    "503": httpx.Response(503, text="unavailable"),
}


@pytest.mark.parametrize("failure", MAYBE_ACTED.values(), ids=MAYBE_ACTED.keys())
@pytest.mark.parametrize("call", PAID_CALLS, ids=PAID_CALLS.keys())
def test_paid_post_not_retried_once_it_may_have_been_acted_on(
    harness: Harness, call: str, failure: Reply
) -> None:
    fn, ok = PAID_CALLS[call]
    script = Script(failure, ok)
    with pytest.raises(pc.APIError):
        harness.run(script, fn)
    assert len(script.requests) == 1


@pytest.mark.parametrize("failure", REFUSED.values(), ids=REFUSED.keys())
@pytest.mark.parametrize("call", PAID_CALLS, ids=PAID_CALLS.keys())
def test_paid_post_retried_when_refused(harness: Harness, call: str, failure: Reply) -> None:
    fn, ok = PAID_CALLS[call]
    script = Script(failure, ok)
    harness.run(script, fn)
    assert len(script.requests) == 2
    assert script.bodies[0] == script.bodies[1]


@pytest.mark.parametrize(
    "failure", [*MAYBE_ACTED.values(), *REFUSED.values()], ids=[*MAYBE_ACTED, *REFUSED]
)
@pytest.mark.parametrize("call", POLL_CALLS, ids=POLL_CALLS.keys())
def test_polls_retried_on_any_transient_failure(
    harness: Harness, call: str, failure: Reply
) -> None:
    ok = OK_TASK if call == "tasks.retrieve" else reply(body={"items": [], "count": 0})
    script = Script(failure, ok)
    harness.run(script, POLL_CALLS[call])
    assert len(script.requests) == 2


@pytest.mark.parametrize("max_retries", [0, 1, 2, 3])
def test_retries_are_bounded(harness: Harness, max_retries: int) -> None:
    script = Script(reply(500, {"error": {"code": "api_error"}}))
    with pytest.raises(pc.InternalServerError):
        harness.run(script, POLL_CALLS["tasks.retrieve"], max_retries=max_retries)
    assert len(script.requests) == 1 + max_retries


def test_default_is_two_retries(harness: Harness, retry_delays: list[float]) -> None:
    script = Script(httpx.ReadTimeout)
    with pytest.raises(pc.APITimeoutError):
        harness.run(script, POLL_CALLS["tasks.retrieve"])
    assert len(script.requests) == 3
    assert 0.5 <= retry_delays[0] <= 0.75
    assert 1.0 <= retry_delays[1] <= 1.25


def test_workers_see_every_429_with_max_retries_zero(harness: Harness) -> None:
    script = Script(reply(429, {"error": {"code": "too_many_requests"}}), OK_SUBMIT)
    with pytest.raises(pc.RateLimitError):
        harness.run(script, PAID_CALLS["audios.submit"][0], max_retries=0)
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    "failure",
    [
        reply(400, {"error": {"code": "bad_request"}}),
        reply(401, {"error": "nope"}),
        reply(403, {"error": {"code": "used_up"}}),
        reply(404, {}),
        httpx.Response(200, text="x"),
    ],
)
def test_non_retryable_errors_are_not_retried(harness: Harness, failure: httpx.Response) -> None:
    script = Script(failure, OK_TASK)
    with pytest.raises(pc.APIError):
        harness.run(script, POLL_CALLS["tasks.retrieve"])
    assert len(script.requests) == 1


def test_retry_after_is_honoured(harness: Harness, retry_delays: list[float]) -> None:
    limited = reply(429, {"error": {"code": "too_many_requests"}}, headers={"Retry-After": "3"})
    script = Script(limited, OK_SUBMIT)
    harness.run(script, PAID_CALLS["audios.submit"][0])
    assert len(script.requests) == 2
    assert 3.0 <= retry_delays[0] <= 3.25


def test_long_retry_after_is_raised_not_slept(harness: Harness) -> None:
    headers = {"Retry-After": str(int(MAX_RETRY_AFTER_S) + 52)}
    limited = reply(429, {"error": {"code": "too_many_requests"}}, headers=headers)
    script = Script(limited, OK_TASK)
    with pytest.raises(pc.RateLimitError) as info:
        harness.run(script, POLL_CALLS["tasks.retrieve"])
    assert info.value.retry_after_s == MAX_RETRY_AFTER_S + 52
    assert len(script.requests) == 1


@given(attempt=st.integers(min_value=0, max_value=50))
def test_backoff_delay_is_capped_and_jittered(attempt: int) -> None:
    base = min(0.5 * 2**attempt, MAX_DELAY_S)
    assert base <= retry_delay_s(attempt, None) <= base + 0.25


@given(retry_after=st.floats(min_value=-10, max_value=1000, allow_nan=False))
def test_retry_after_delay_is_capped(retry_after: float) -> None:
    delay = retry_delay_s(0, retry_after)
    assert 0.0 <= delay <= MAX_RETRY_AFTER_S + 0.25
    assert delay >= min(max(retry_after, 0.0), MAX_RETRY_AFTER_S)


def _status(cls: type[pc.APIStatusError], retry_after_s: float | None = None) -> Any:
    return cls(
        status_code=0,
        code=None,
        message=None,
        trace_id=None,
        body=None,
        retry_after_s=retry_after_s,
    )


@pytest.mark.parametrize(
    ("exc", "idempotent", "expected"),
    [
        (pc.APIConnectionError(request_sent=False), False, True),
        (pc.APIConnectionError(request_sent=True), False, False),
        (pc.APITimeoutError(request_sent=True), False, False),
        (pc.APITimeoutError(request_sent=True), True, True),
        (_status(pc.RateLimitError), False, True),
        (_status(pc.RateLimitError, 60.0), True, False),
        (_status(pc.ServiceUnavailableError), False, True),
        (_status(pc.InternalServerError), False, False),
        (_status(pc.InternalServerError), True, True),
        (_status(pc.GatewayTimeoutError), False, False),
        (_status(pc.BadRequestError), True, False),
        (pc.MalformedResponseError(), True, False),
    ],
)
def test_should_retry_table(exc: pc.APIError, idempotent: bool, expected: bool) -> None:
    assert should_retry(exc, idempotent) is expected
