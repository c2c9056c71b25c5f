"""Error replies, malformed bodies and transport failures map to the documented classes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from pclient_support import Harness, Script, load_example, reply

import producer_client as pc
from producer_client._retry import parse_retry_after

EXPECTED_CLASS = {
    (400, "token_mismatched"): pc.TokenMismatchedError,
    (400, "api_not_implemented"): pc.ApiNotImplementedError,
    (400, "disabled"): pc.DisabledError,
    (400, "bad_request"): pc.BadRequestError,
    (400, "no_token"): pc.NoTokenError,
    (401, "invalid_token"): pc.InvalidTokenError,
    (401, "token_expired"): pc.TokenExpiredError,
    (401, "token_mismatched"): pc.TokenMismatchedError,
    (403, "used_up"): pc.UsedUpError,
    (403, "forbidden"): pc.ForbiddenError,
    (404, "no_api"): pc.NoApiError,
    (429, "too_many_requests"): pc.RateLimitError,
    (500, "api_error"): pc.InternalServerError,
    (504, "timeout"): pc.GatewayTimeoutError,
}
ERROR_BODIES = [
    (int(status), body)
    for status, bodies in load_example("errors.json")["by_status"].items()
    for body in bodies
]
RETRYABLE = {
    pc.RateLimitError,
    pc.InternalServerError,
    pc.GatewayTimeoutError,
    pc.BadGatewayError,
    pc.ServiceUnavailableError,
}


def generate(client: Any) -> Any:
    return client.audios.submit(pc.GenerateParams(prompt="x"))


def raised(harness: Harness, response: httpx.Response, **client_kw: Any) -> Any:
    with pytest.raises(pc.ProducerError) as info:
        harness.run(Script(response), generate, max_retries=0, **client_kw)
    return info.value


@pytest.mark.parametrize(("status", "body"), ERROR_BODIES)
def test_documented_errors_map_to_their_class(
    harness: Harness, status: int, body: dict[str, Any]
) -> None:
    exc = raised(harness, reply(status, body))
    cls = EXPECTED_CLASS[(status, body["error"]["code"])]
    assert type(exc) is cls
    assert isinstance(exc, pc.APIStatusError)
    assert (exc.status_code, exc.code, exc.trace_id) == (
        status,
        body["error"]["code"],
        body["trace_id"],
    )
    assert exc.body == body
    assert exc.retryable is (cls in RETRYABLE)
    assert f"HTTP {status} {exc.code}" in str(exc)


@pytest.mark.parametrize(("status", "body"), ERROR_BODIES)
def test_same_errors_with_success_false(
    harness: Harness, status: int, body: dict[str, Any]
) -> None:
    exc = raised(harness, reply(status, {"success": False, **body}))
    assert type(exc) is EXPECTED_CLASS[(status, body["error"]["code"])]


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, pc.BadRequestError),
        (401, pc.AuthenticationError),
        (403, pc.PermissionDeniedError),
        (404, pc.NoApiError),
        (429, pc.RateLimitError),
        (500, pc.InternalServerError),
        (502, pc.BadGatewayError),
        (503, pc.ServiceUnavailableError),
        (504, pc.GatewayTimeoutError),
        (418, pc.APIStatusError),
        (501, pc.APIStatusError),
    ],
)
@pytest.mark.parametrize("error", ["a bare string", None, {"code": "brand_new_code"}])
def test_unknown_codes_fall_back_by_status(
    harness: Harness, status: int, cls: type[pc.APIStatusError], error: Any
) -> None:
    exc = raised(harness, reply(status, {"error": error, "trace_id": "tr"}))
    assert type(exc) is cls
    if isinstance(error, str):
        assert exc.message == error
        assert exc.code is None


def test_error_without_body_uses_status(harness: Harness) -> None:
    exc = raised(harness, httpx.Response(502, text="<html>Bad Gateway</html>"))
    assert type(exc) is pc.BadGatewayError
    assert exc.body == "<html>Bad Gateway</html>"
    assert exc.trace_id is None


def test_success_false_on_200_raises_by_code(harness: Harness) -> None:
    body = {"success": False, "error": {"code": "forbidden", "message": "moderated"}}
    exc = raised(harness, reply(200, body))
    assert type(exc) is pc.ForbiddenError
    assert (exc.status_code, exc.message) == (200, "moderated")
    plain = raised(harness, reply(200, {"success": False}))
    assert type(plain) is pc.APIStatusError


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="not json"),
        httpx.Response(200, json=[1, 2]),
        httpx.Response(200, json="text"),
        httpx.Response(200),
    ],
)
def test_malformed_2xx_bodies(harness: Harness, response: httpx.Response) -> None:
    exc = raised(harness, response)
    assert type(exc) is pc.MalformedResponseError
    assert exc.retryable is False


def test_wrong_shape_2xx_is_malformed(harness: Harness) -> None:
    with pytest.raises(pc.MalformedResponseError, match="TaskRecord"):
        harness.run(Script(reply(body={"type": "audios"})), lambda c: c.tasks.retrieve("x"))
    with pytest.raises(pc.MalformedResponseError, match="WavResult"):
        harness.run(
            Script(reply(body={"success": True, "data": []})), lambda c: c.wav.create(audio_id="a")
        )


@pytest.mark.parametrize(
    ("error", "cls", "sent"),
    [
        (httpx.ConnectError, pc.APIConnectionError, False),
        (httpx.ConnectTimeout, pc.APITimeoutError, False),
        (httpx.PoolTimeout, pc.APITimeoutError, False),
        (httpx.ReadTimeout, pc.APITimeoutError, True),
        (httpx.WriteTimeout, pc.APITimeoutError, True),
        (httpx.ReadError, pc.APIConnectionError, True),
        (httpx.RemoteProtocolError, pc.APIConnectionError, True),
    ],
)
def test_transport_errors_translated(
    harness: Harness,
    error: type[httpx.TransportError],
    cls: type[pc.APIConnectionError],
    sent: bool,
) -> None:
    with pytest.raises(pc.APIConnectionError) as info:
        harness.run(Script(error), generate, max_retries=0)
    assert type(info.value) is cls
    assert info.value.request_sent is sent
    assert info.value.retryable is True
    assert isinstance(info.value.__cause__, error)


def test_rate_limit_retry_after_seconds(harness: Harness) -> None:
    body = {"error": {"code": "too_many_requests", "message": "slow down"}}
    exc = raised(harness, reply(429, body, headers={"Retry-After": "7"}))
    assert isinstance(exc, pc.RateLimitError)
    assert exc.retry_after_s == 7.0
    assert raised(harness, reply(429, body)).retry_after_s is None


def test_parse_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now) == pytest.approx(30.0)
    assert parse_retry_after(earlier, now=now) == 0.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-3") == 0.0
    for bad in (None, "", "soon", "nan", "inf"):
        assert parse_retry_after(bad) is None


def test_exception_tree() -> None:
    assert issubclass(pc.ParamsValidationError, ValueError)
    assert issubclass(pc.APITimeoutError, pc.APIConnectionError)
    assert issubclass(pc.InvalidTokenError, pc.AuthenticationError)
    assert issubclass(pc.UsedUpError, pc.PermissionDeniedError)
    for name in pc.__all__:
        obj = getattr(pc, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, pc.ProducerError)
            assert isinstance(obj.retryable, bool)
            assert obj.__doc__
