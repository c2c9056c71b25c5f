"""Every error the emulator can produce, mapped by the real client to its exception class.

Each error is checked for its class (exactly, not a parent), status, code and message, and
for the absence of the token anywhere in it (``raises`` does that). Request counts come
from the emulator's request log and counters, never from the client.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import pytest

from producer_client import (
    APIConnectionError,
    ApiNotImplementedError,
    APITimeoutError,
    AsyncProducer,
    AudioParams,
    BadRequestError,
    DisabledError,
    ExtendParams,
    ForbiddenError,
    GatewayTimeoutError,
    GenerateParams,
    InternalServerError,
    InvalidTokenError,
    MalformedResponseError,
    NoApiError,
    NoTokenError,
    ParamsValidationError,
    Producer,
    RateLimitError,
    ReplaceSectionParams,
    StemsParams,
    TokenExpiredError,
    TokenMismatchedError,
    UsedUpError,
)
from producer_emulator import EmulatorServer
from tests.contract.contract_support import (
    TOKEN,
    StripAuthorization,
    araises,
    assert_no_token,
    client,
    emu,
    make_song,
    raises,
    server,
    statuses,
)

__all__ = ["client", "emu", "server"]  # fixtures imported for pytest

AUDIOS = "/producer/audios"
TASKS = "/producer/tasks"
SONG = GenerateParams(prompt="an error test")
UNKNOWN_MODEL: dict[str, Any] = {"prompt": "x", "model": "FUZZ-9"}


def rule(emu: EmulatorServer, fault: str, path: str = AUDIOS, **extra: Any) -> None:
    """Make every request to ``path`` (or the first ``times``) suffer ``fault``."""
    emu.configure(faults={"rules": [{"fault": fault, "path": path, **extra}]})


def quiet_client(emu: EmulatorServer, **options: Any) -> Producer:
    """A client with no quick retries unless told otherwise."""
    return Producer(api_token=TOKEN, base_url=emu.url, **{"max_retries": 0, **options})


# -- authentication and routing --------------------------------------------------------


def test_client_refuses_an_empty_token() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        Producer(api_token="  ", base_url="http://127.0.0.1:9")


def test_no_token(emu: EmulatorServer) -> None:
    """The client never sends without a token, so a transport strips it on the way out."""
    with Producer(api_token=TOKEN, base_url=emu.url, transport=StripAuthorization()) as bare:
        error = raises(NoTokenError, lambda: bare.audios.submit(SONG))
    assert (error.status_code, error.code) == (400, "no_token")
    assert error.message == "No token specified for the request."
    assert "success" not in error.body
    assert error.trace_id is not None
    assert emu.counters()["errors_by_code"] == {"no_token": 1}


def test_invalid_token_is_not_echoed(emu: EmulatorServer) -> None:
    with Producer(api_token=TOKEN + "-revoked", base_url=emu.url) as wrong:
        error = raises(InvalidTokenError, lambda: wrong.tasks.retrieve("any"))
        assert_no_token(wrong)
    assert (error.status_code, error.code) == (401, "invalid_token")
    assert error.message == "The specified token is invalid or wrong."
    assert statuses(emu, TASKS) == [401]


def test_unknown_path_is_no_api(emu: EmulatorServer, client: Producer) -> None:
    """Sent through the client's own send loop (the public surface has no such path)."""
    error = raises(NoApiError, lambda: client._http.post("/producer/songs", {}, idempotent=True))
    assert (error.status_code, error.code) == (404, "no_api")
    assert error.message == "API does not exist, please make sure url is correct."
    assert statuses(emu, "/producer/songs") == [404]


# -- bad requests: refused by the client, and by the server ----------------------------

INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "model": ({"model": "FUZZ-9"}, "model is invalid."),
    "weirdness": ({"weirdness": 1.5}, "weirdness must be between 0 and 1."),
    "sound_strength": ({"sound_strength": 0.1}, "sound_strength must be between 0.2 and 1."),
    "lyrics_strength": ({"lyrics_strength": -0.5}, "lyrics_strength must be between 0 and 1."),
    "prompt": ({"prompt": "x" * 201}, "prompt must not exceed 200 characters."),
}


@pytest.mark.parametrize("field", sorted(INVALID))
def test_client_validates_before_sending(emu: EmulatorServer, client: Producer, field: str) -> None:
    changes, _ = INVALID[field]
    row = {"action": "generate", "prompt": "x", **changes}
    error = raises(ParamsValidationError, lambda: client.audios.submit(row))
    assert [e.field for e in error.errors] == [field]
    raises(ParamsValidationError, lambda: GenerateParams(**row))
    assert emu.requests() == []
    assert emu.counters()["submissions_total"] == 0


@pytest.mark.parametrize("field", sorted(INVALID))
def test_server_refuses_what_the_client_would(
    emu: EmulatorServer, client: Producer, field: str
) -> None:
    """``model_construct`` skips the client's checks, so the server's 400 is reached."""
    changes, message = INVALID[field]
    fields: dict[str, Any] = {"prompt": "x", **changes}
    unchecked = GenerateParams.model_construct(**fields)
    error = raises(BadRequestError, lambda: client.audios.submit(unchecked))
    assert (error.status_code, error.code, error.message) == (400, "bad_request", message)
    assert "success" not in error.body
    assert statuses(emu, AUDIOS) == [400]
    assert emu.counters()["submissions_total"] == 0


def test_server_only_checks(emu: EmulatorServer, client: Producer) -> None:
    """What only the server can know: the source song and its length."""
    song = make_song(client)
    assert song.id is not None
    assert song.duration is not None
    calls: dict[str, AudioParams] = {
        "audio_id missing-id is not found.": StemsParams(audio_id="missing-id"),
        "continue_at is beyond the end of the song.": ExtendParams(
            audio_id=song.id, continue_at=song.duration + 1
        ),
        "replace_section_end is beyond the end of the song.": ReplaceSectionParams(
            audio_id=song.id, replace_section_start=1, replace_section_end=song.duration + 1
        ),
    }
    for message, params in calls.items():
        error = raises(BadRequestError, functools.partial(client.audios.create, params))
        assert error.message == message
    assert statuses(emu, AUDIOS) == [200, 400, 400, 400]


def test_token_echoed_by_the_server_is_redacted(emu: EmulatorServer, client: Producer) -> None:
    error = raises(BadRequestError, lambda: client.audios.submit(StemsParams(audio_id=TOKEN)))
    assert error.message == "audio_id [redacted] is not found."


# -- rate limits -----------------------------------------------------------------------


def test_submit_rate_limit(emu: EmulatorServer) -> None:
    emu.configure(submit_rate_per_s=0.01, submit_burst=1)
    with quiet_client(emu) as quiet:
        quiet.audios.submit(SONG)
        error = raises(RateLimitError, lambda: quiet.audios.submit(SONG))
        assert (error.status_code, error.code) == (429, "too_many_requests")
        assert error.message == "You have exceeded the rate limit."
        assert error.retry_after_s is None
        emu.configure(send_retry_after=True)
        hinted = raises(RateLimitError, lambda: quiet.lyrics.create(prompt="x"))
    assert hinted.retry_after_s == pytest.approx(100, abs=1)
    assert emu.counters()["rejected_429"]["submit"] == 2
    assert emu.counters()["submissions_total"] == 1


def test_poll_rate_limit_with_a_long_retry_after_is_not_slept_through(
    emu: EmulatorServer, client: Producer
) -> None:
    """The default client retries polls, but not past a Retry-After above 8 s."""
    emu.configure(poll_rate_per_s=0.01, poll_burst=1, send_retry_after=True)
    client.tasks.retrieve("first")
    error = raises(RateLimitError, lambda: client.tasks.retrieve("second"))
    assert error.retry_after_s == pytest.approx(100, abs=1)
    assert statuses(emu, TASKS) == [200, 429]
    assert emu.counters()["rejected_429"]["poll"] == 1


def test_poll_rate_limit_is_retried_after_a_pause(emu: EmulatorServer, client: Producer) -> None:
    """No Retry-After (the API's default): the client backs off 0.5 s and the bucket refills."""
    emu.configure(poll_rate_per_s=4.0, poll_burst=1)
    client.tasks.retrieve("first")
    assert client.tasks.retrieve("second") is None
    assert statuses(emu, TASKS) == [200, 429, 200]


def test_concurrency_cap(emu: EmulatorServer) -> None:
    emu.configure(max_concurrency=1, time_scale=0.0125, send_retry_after=True)
    with quiet_client(emu) as quiet:
        quiet.audios.submit(SONG)
        error = raises(RateLimitError, lambda: quiet.audios.submit(SONG))
    assert error.code == "too_many_requests"
    assert error.retry_after_s == 1
    counters = emu.counters()
    assert counters["rejected_429"]["concurrency"] == 1
    assert counters["submissions_total"] == 1


# -- injected faults -------------------------------------------------------------------


def test_api_error_500(emu: EmulatorServer, client: Producer) -> None:
    rule(emu, "api_error_500")
    error = raises(InternalServerError, lambda: client.audios.submit(SONG))
    assert (error.status_code, error.code) == (500, "api_error")
    assert error.message == "Internal server error."
    assert error.body["success"] is False
    assert statuses(emu, AUDIOS) == [500]
    assert emu.counters()["submissions_total"] == 0


def test_timeout_504_creates_the_task_and_is_not_resent(
    emu: EmulatorServer, client: Producer
) -> None:
    """The upstream goes on after a 504, which is why a paid POST must not be retried."""
    emu.configure(faults={"timeout_delay_s": 1.0})
    rule(emu, "timeout_504")
    error = raises(GatewayTimeoutError, lambda: client.audios.submit(SONG))
    assert (error.status_code, error.code) == (504, "timeout")
    assert statuses(emu, AUDIOS) == [504]
    assert emu.counters()["submissions_total"] == 1
    assert client.tasks.retrieve_batch(type="audios").count == 1


def test_malformed_body(emu: EmulatorServer, client: Producer) -> None:
    rule(emu, "malformed_body")
    error = raises(MalformedResponseError, lambda: client.audios.submit(SONG))
    assert isinstance(error.body, str)
    assert statuses(emu, AUDIOS) == [200]


def test_malformed_poll_is_not_retried(emu: EmulatorServer, client: Producer) -> None:
    rule(emu, "malformed_body", path=TASKS)
    raises(MalformedResponseError, lambda: client.tasks.retrieve_batch())
    assert statuses(emu, TASKS) == [200]


@pytest.mark.parametrize(
    ("fault", "expected", "status", "code"),
    [
        ("forbidden_403", ForbiddenError, 403, "forbidden"),
        ("used_up_403", UsedUpError, 403, "used_up"),
        ("too_many_requests_429", RateLimitError, 429, "too_many_requests"),
        ("token_mismatched_400", TokenMismatchedError, 400, "token_mismatched"),
        ("token_mismatched_401", TokenMismatchedError, 401, "token_mismatched"),
        ("api_not_implemented_400", ApiNotImplementedError, 400, "api_not_implemented"),
        ("disabled_400", DisabledError, 400, "disabled"),
        ("token_expired_401", TokenExpiredError, 401, "token_expired"),
    ],
)
def test_rule_only_gateway_errors(
    emu: EmulatorServer, fault: str, expected: type[Exception], status: int, code: str
) -> None:
    rule(emu, fault)
    with quiet_client(emu) as quiet:
        error = raises(expected, lambda: quiet.audios.submit(SONG))
    assert (getattr(error, "status_code", None), getattr(error, "code", None)) == (status, code)
    assert emu.counters()["submissions_total"] == 0


# -- the client's retry rules ----------------------------------------------------------


def test_poll_is_retried_after_a_500(emu: EmulatorServer, client: Producer) -> None:
    rule(emu, "api_error_500", path=TASKS, times=1)
    assert client.tasks.retrieve("unknown") is None
    assert statuses(emu, TASKS) == [500, 200]


def test_paid_post_is_not_retried_after_a_500(emu: EmulatorServer, client: Producer) -> None:
    rule(emu, "api_error_500", times=1)
    raises(InternalServerError, lambda: client.audios.submit(SONG))
    assert statuses(emu, AUDIOS) == [500]


def test_post_is_retried_after_a_429(
    emu: EmulatorServer, client: Producer, caplog: pytest.LogCaptureFixture
) -> None:
    """A 429 proves nothing was done, so even a paid POST may be sent again."""
    rule(emu, "too_many_requests_429", times=1)
    with caplog.at_level(logging.DEBUG, logger="producer_client"):
        submission = client.audios.submit(SONG)
    assert "retrying POST /producer/audios" in caplog.text
    assert_no_token(caplog.text)
    assert statuses(emu, AUDIOS) == [429, 200]
    assert emu.counters()["submissions_total"] == 1
    assert client.tasks.retrieve(submission.task_id) is not None


def test_post_retry_honours_retry_after(emu: EmulatorServer, client: Producer) -> None:
    emu.configure(send_retry_after=True)
    rule(emu, "too_many_requests_429", times=1)
    client.audios.submit(SONG)
    first, second = (entry["t"] for entry in emu.requests())
    assert second - first >= 1.0
    assert statuses(emu, AUDIOS) == [429, 200]


def test_no_retry_when_max_retries_is_zero(emu: EmulatorServer) -> None:
    rule(emu, "too_many_requests_429", times=1)
    with quiet_client(emu) as quiet:
        raises(RateLimitError, lambda: quiet.audios.submit(SONG))
    assert statuses(emu, AUDIOS) == [429]


def test_read_timeout_of_a_paid_post_is_not_retried(emu: EmulatorServer) -> None:
    emu.configure(time_scale=0.0125)
    with Producer(api_token=TOKEN, base_url=emu.url) as impatient:
        error = raises(APITimeoutError, lambda: impatient.audios.create(SONG, timeout_s=0.05))
    assert error.request_sent is True
    assert emu.counters()["submissions_total"] == 1


def test_connection_refused_is_a_connection_error() -> None:
    with Producer(api_token=TOKEN, base_url="http://127.0.0.1:9", max_retries=0) as nowhere:
        error = raises(APIConnectionError, lambda: nowhere.tasks.retrieve("x"))
    assert error.request_sent is False


# -- the async client ------------------------------------------------------------------


async def test_async_client_maps_errors_and_retries(emu: EmulatorServer) -> None:
    emu.configure(faults={"rules": [{"fault": "api_error_500", "path": TASKS, "times": 1}]})
    async with AsyncProducer(api_token=TOKEN + "-revoked", base_url=emu.url) as wrong:
        await araises(InvalidTokenError, lambda: wrong.tasks.retrieve("x"))
    async with AsyncProducer(api_token=TOKEN, base_url=emu.url) as aclient:
        assert await aclient.tasks.retrieve("x") is None
        bad = GenerateParams.model_construct(**UNKNOWN_MODEL)
        await araises(BadRequestError, lambda: aclient.audios.submit(bad))
    assert statuses(emu, TASKS) == [401, 500, 200]
    assert statuses(emu, AUDIOS) == [400]


def test_poll_gives_up_after_max_retries(emu: EmulatorServer) -> None:
    emu.configure(faults={"api_error_500": 1.0, "endpoints": ["tasks"]})
    with quiet_client(emu, max_retries=1) as patient:
        raises(InternalServerError, lambda: patient.tasks.retrieve("x"))
        patient.lyrics.create(prompt="submits are not hit")
    assert statuses(emu, TASKS) == [500, 500]


async def test_async_burst_rides_through_the_concurrency_cap(emu: EmulatorServer) -> None:
    """Eight concurrent submits against a cap of five: the refused ones are retried (a 429
    proves nothing was created), every song is made once and the cap always held."""
    emu.configure(max_concurrency=5, time_scale=0.005)  # 200 ms generations
    async with AsyncProducer(api_token=TOKEN, base_url=emu.url) as aclient:
        params = [GenerateParams(prompt=f"burst {n}") for n in range(8)]
        submissions = await asyncio.gather(*(aclient.audios.submit(p) for p in params))
    counters = emu.counters()
    assert len({s.task_id for s in submissions}) == 8
    assert counters["submissions_total"] == 8
    assert counters["submissions_duplicated"] == 0
    assert counters["max_in_flight_seen"] == 5
    assert counters["rejected_429"]["concurrency"] >= 1
