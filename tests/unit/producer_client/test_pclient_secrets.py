"""The API token is sent as a bearer header and appears nowhere else."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from pclient_support import TOKEN, Harness, Script, reply
from pydantic import SecretStr

import producer_client as pc

ECHOING_ERRORS = [
    (status, code)
    for status, code in [
        (400, "bad_request"),
        (400, "no_token"),
        (400, "token_mismatched"),
        (400, "api_not_implemented"),
        (400, "disabled"),
        (401, "invalid_token"),
        (401, "token_expired"),
        (403, "used_up"),
        (403, "forbidden"),
        (404, "no_api"),
        (429, "too_many_requests"),
        (500, "api_error"),
        (502, None),
        (503, None),
        (504, "timeout"),
        (418, None),
    ]
]


def test_sync_repr_hides_token() -> None:
    client = pc.Producer(api_token=TOKEN)
    try:
        text = repr(client) + str(client) + repr(client._config) + repr(vars(client))
        assert TOKEN not in text
        assert "max_retries=2" in repr(client)
    finally:
        client.close()


def test_async_repr_hides_token() -> None:
    async def check() -> None:
        async with pc.AsyncProducer(api_token=SecretStr(TOKEN), max_retries=0) as client:
            assert TOKEN not in repr(client) + repr(vars(client))
            assert client.max_retries == 0

    asyncio.run(check())


def test_bearer_header_on_every_request(harness: Harness) -> None:
    script = Script(reply(body={"id": "t"}), reply(body={"data": [{"file_url": "u"}]}))
    harness.run(script, lambda c: c.tasks.retrieve("t"))
    harness.run(script, lambda c: c.wav.create(audio_id="a"))
    assert [r.headers["authorization"] for r in script.requests] == [f"Bearer {TOKEN}"] * 2


@pytest.mark.parametrize(("status", "code"), ECHOING_ERRORS)
def test_error_messages_and_bodies_scrub_an_echoed_token(
    harness: Harness, status: int, code: str | None
) -> None:
    body = {"error": {"code": code, "message": f"token {TOKEN} refused"}, "trace_id": TOKEN}
    script = Script(reply(status, body))
    with pytest.raises(pc.APIStatusError) as info:
        harness.run(script, lambda c: c.lyrics.create(prompt="x"), max_retries=0)
    exc = info.value
    assert TOKEN not in str(exc) + repr(exc) + repr(exc.body) + exc.message
    assert "refused" in str(exc)


@pytest.mark.parametrize(
    "error", [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError]
)
def test_transport_errors_do_not_leak(harness: Harness, error: type[httpx.TransportError]) -> None:
    with pytest.raises(pc.APIConnectionError) as info:
        harness.run(Script(error), lambda c: c.tasks.retrieve("t"), max_retries=0)
    assert TOKEN not in str(info.value) + repr(info.value)


def test_other_errors_do_not_leak() -> None:
    record = pc.TaskRecord.model_validate(
        {"id": "t", "finished_at": 1.0, "response": {"success": False}}
    )
    errors: list[Exception] = [
        pc.TaskFailedError(record),
        pc.WaitTimeoutError(task_id="t", timeout_s=1.0, last=record),
        pc.MalformedResponseError(),
    ]
    with pytest.raises(pc.ParamsValidationError) as info:
        pc.StemsParams()  # type: ignore[call-arg]
    errors.append(info.value)
    for exc in errors:
        assert TOKEN not in str(exc) + repr(exc)


def test_logs_never_contain_the_token(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    script = Script(reply(500, {"error": {"code": "api_error"}}), reply(body={"id": "t"}))
    harness.run(script, lambda c: c.tasks.retrieve("t"))
    assert any("retrying POST /producer/tasks" in r.getMessage() for r in caplog.records)
    assert all(TOKEN not in r.getMessage() for r in caplog.records)
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"api_token": ""},
        {"api_token": "  "},
        {"api_token": TOKEN, "timeout_s": 0},
        {"api_token": TOKEN, "max_retries": -1},
        {"api_token": TOKEN, "base_url": "ftp://x"},
    ],
)
def test_bad_configuration_rejected_without_echoing_token(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as info:
        pc.Producer(**kwargs)
    assert TOKEN not in str(info.value)
