"""Logging: one configuration, JSON lines, stdlib routed through structlog, redaction."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from pydantic import SecretStr
from structlog.testing import capture_logs

from workers.logging import (
    REDACTED,
    bind_task_context,
    clear_task_context,
    configure_logging,
    get_logger,
    redact_secrets,
    register_secret,
)

TOKEN = "sk-live-0123456789abcdef"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    level = root.level
    out = io.StringIO()
    configure_logging(json=True, level="DEBUG", stream=out)
    register_secret(SecretStr(TOKEN))
    yield out
    clear_task_context()
    for handler in [h for h in root.handlers if getattr(h, "_producer_handler", False)]:
        root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_structlog_event_is_one_json_line_with_a_registered_secret_redacted(
    stream: io.StringIO,
) -> None:
    get_logger("workers.test").info("submitted", token_hint=f"using {TOKEN}", n=3)
    raw = stream.getvalue()
    assert TOKEN not in raw
    (line,) = lines(stream)
    assert line["event"] == "submitted"
    assert line["token_hint"] == f"using {REDACTED}"
    assert (line["level"], line["logger"], line["n"]) == ("info", "workers.test", 3)
    assert "timestamp" in line


def test_stdlib_records_are_routed_and_redacted(stream: io.StringIO) -> None:
    logging.getLogger("celery.worker").warning("connecting with %s", f"Bearer {TOKEN}")
    (line,) = lines(stream)
    assert line["event"] == f"connecting with Bearer {REDACTED}"
    assert (line["level"], line["logger"]) == ("warning", "celery.worker")


def test_signed_url_values_and_bearer_tokens_are_scrubbed(stream: io.StringIO) -> None:
    url = "https://cb.example/hook?id=7&sig=deadbeef&token=abc123#x"
    get_logger().info(
        "callback", url=url, headers={"Authorization": "Bearer xyz"}, note="auth: bearer qwerty"
    )
    (line,) = lines(stream)
    assert line["url"] == f"https://cb.example/hook?id=7&sig={REDACTED}&token={REDACTED}#x"
    assert line["headers"] == {"Authorization": REDACTED}
    assert line["note"] == f"auth: bearer {REDACTED}"


def test_secret_in_an_exception_traceback_is_redacted(stream: io.StringIO) -> None:
    try:
        raise RuntimeError(f"request failed for token {TOKEN}")
    except RuntimeError:
        get_logger().exception("boom")
        logging.getLogger("kombu").exception("stdlib boom")
    raw = stream.getvalue()
    assert TOKEN not in raw
    first, second = lines(stream)
    assert "RuntimeError: request failed for token [REDACTED]" in first["exception"]
    assert "RuntimeError" in second["exception"]


def test_secret_named_keys_and_nested_values_are_redacted(stream: io.StringIO) -> None:
    get_logger().info("cfg", api_token="whatever", nested={"list": [f"x{TOKEN}y", 1, None]})
    (line,) = lines(stream)
    assert line["api_token"] == REDACTED
    assert line["nested"] == {"list": [f"x{REDACTED}y", 1, None]}


def test_task_context_is_on_every_line_until_cleared(stream: io.StringIO) -> None:
    bind_task_context(task_id="c-1", action="generate", batch="b", row=4, api_task_id=None)
    get_logger().info("one")
    logging.getLogger("celery").info("two")
    clear_task_context()
    get_logger().info("three")
    one, two, three = lines(stream)
    for line in (one, two):
        assert (line["task_id"], line["action"], line["batch"], line["row"]) == (
            "c-1",
            "generate",
            "b",
            4,
        )
        assert "api_task_id" not in line
    assert "task_id" not in three


def test_bind_task_context_with_capture_logs() -> None:
    bind_task_context(task_id="c-2", step="extend", api_task_id="t-9")
    try:
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            structlog.get_logger().info("resumed", attempt=2)
    finally:
        clear_task_context()
    assert logs == [
        {
            "event": "resumed",
            "attempt": 2,
            "log_level": "info",
            "task_id": "c-2",
            "step": "extend",
            "api_task_id": "t-9",
        }
    ]


def test_redact_processor_on_its_own() -> None:
    register_secret("cb-secret-value")
    register_secret(None)
    register_secret("ab")  # too short to be a real secret: ignored
    out = redact_secrets(None, "info", {"event": "x cb-secret-value ab", "obj": ValueError("ab")})
    assert out["event"] == f"x {REDACTED} ab"
    assert isinstance(out["obj"], ValueError)


def test_console_rendering_when_asked(stream: io.StringIO) -> None:
    out = io.StringIO()
    configure_logging(json=False, stream=out)
    get_logger("c").info("hello", secret_hint=TOKEN)
    text = out.getvalue()
    assert "hello" in text
    assert TOKEN not in text
    assert not text.lstrip().startswith("{")
    assert stream.getvalue() == ""  # the earlier handler was replaced, not duplicated


def test_level_filters_structlog_and_stdlib(stream: io.StringIO) -> None:
    configure_logging(json=True, level="WARNING", stream=stream)
    get_logger().info("hidden")
    logging.getLogger("x").info("hidden too")
    get_logger().warning("shown")
    assert [line["event"] for line in lines(stream)] == ["shown"]
