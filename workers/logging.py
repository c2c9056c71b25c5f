"""Logging for workers, poller, receiver and CLI: structlog, configured in one function.

:func:`configure_logging` renders JSON lines when stderr is not a terminal (log
shippers) and a readable console format when it is. Standard-library records (Celery,
kombu, httpx) go through the same :class:`structlog.stdlib.ProcessorFormatter`, so
every line has the same shape and passes the same redaction.

Redaction (:func:`redact_secrets`) runs last before rendering, on every event:
registered secrets (:func:`register_secret`: the API token, callback secrets), any
``Bearer ...`` credential, the values of ``token=``/``sig=``-like URL query parameters
and the values of secret-named keys (``authorization``, ``api_token`` ...). Tracebacks
are formatted to text *before* redaction so exception messages are scrubbed too.

Per-task context (:func:`bind_task_context`) lives in :mod:`structlog.contextvars`,
so it appears on every line the task logs, including stdlib ones.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Mapping
from typing import Any, TextIO
from urllib.parse import quote

import structlog
from pydantic import SecretStr
from structlog.types import EventDict, Processor, WrappedLogger

__all__ = [
    "REDACTED",
    "bind_task_context",
    "clear_task_context",
    "configure_logging",
    "get_logger",
    "redact_secrets",
    "register_secret",
]

REDACTED = "[REDACTED]"
# Shorter values would mangle ordinary words in every line; real secrets are longer.
_MIN_SECRET_CHARS = 4
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+")
_QUERY_SECRET = re.compile(
    r"(?i)([?&;](?:token|sig|signature|access_token|api_key|apikey|secret"
    r"|x-amz-signature|x-amz-security-token|x-amz-credential)=)[^&#\s\"']+"
)
_SECRET_KEYS = frozenset(
    {"authorization", "api_token", "token", "callback_secret", "secret", "password"}
)
_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_HANDLER_MARK = "_producer_handler"


def register_secret(value: str | SecretStr | None) -> None:
    """Scrub ``value`` (and its URL-quoted form) from every log event from now on."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not value or len(value) < _MIN_SECRET_CHARS:
        return
    with _secrets_lock:
        _secrets.update({value, quote(value, safe="")})


def _scrub_text(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _BEARER.sub(r"\1" + REDACTED, text)
    return _QUERY_SECRET.sub(r"\1" + REDACTED, text)


def _scrub(value: Any, secrets: list[str]) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _scrub_text(value, secrets)
    if isinstance(value, Mapping):
        return {
            k: REDACTED if str(k).lower() in _SECRET_KEYS else _scrub(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v, secrets) for v in value]
    # Any other object is rendered through str()/repr(): scrub that text if it leaks.
    text = str(value)
    scrubbed = _scrub_text(text, secrets)
    return value if scrubbed == text else scrubbed


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Structlog processor: scrub registered secrets, bearer tokens and signed URL values."""
    with _secrets_lock:
        # Longest first, so a secret containing another is replaced whole.
        secrets = sorted(_secrets, key=len, reverse=True)
    return {
        key: REDACTED if key.lower() in _SECRET_KEYS else _scrub(value, secrets)
        for key, value in event_dict.items()
    }


def _renderer(use_json: bool, stream: TextIO) -> Processor:
    if use_json:
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(colors=stream.isatty())


def configure_logging(
    *, json: bool | None = None, level: str | int = "INFO", stream: TextIO | None = None
) -> None:
    """Route structlog and stdlib logging to ``stream`` (stderr) through one formatter.

    ``json=None`` means JSON lines unless the stream is a terminal. Calling again
    replaces the handler this function installed (other root handlers are kept).
    """
    out = stream if stream is not None else sys.stderr
    use_json = (not out.isatty()) if json is None else json
    pre_chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *pre_chain,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: tests (capture_logs) and reconfiguration must reach every logger.
        cache_logger_on_first_use=False,
    )
    _install_handler(out, level, pre_chain, _renderer(use_json, out))


def _install_handler(
    stream: TextIO, level: str | int, pre_chain: list[Processor], renderer: Processor
) -> None:
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre_chain,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)


def get_logger(name: str | None = None) -> Any:
    """Return a structlog logger (bound to the stdlib logger ``name``)."""
    return structlog.stdlib.get_logger(name)


def bind_task_context(
    *,
    task_id: str | None = None,
    action: str | None = None,
    batch: str | None = None,
    row: int | str | None = None,
    step: str | None = None,
    api_task_id: str | None = None,
    **extra: Any,
) -> None:
    """Add the given (non-None) task fields to every log line of the current context."""
    fields = {
        "task_id": task_id,
        "action": action,
        "batch": batch,
        "row": row,
        "step": step,
        "api_task_id": api_task_id,
        **extra,
    }
    structlog.contextvars.bind_contextvars(**{k: v for k, v in fields.items() if v is not None})


def clear_task_context() -> None:
    """Forget all task fields (a pool thread runs many tasks one after another)."""
    structlog.contextvars.clear_contextvars()
