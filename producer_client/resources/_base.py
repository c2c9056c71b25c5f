"""What every resource shares: its send loop and small argument checks.

Argument checks raise :class:`ParamsValidationError` so a bad call never reaches the
(paid) API.
"""

from __future__ import annotations

from producer_client._exceptions import FieldError, ParamsValidationError
from producer_client._http import AsyncHTTP, SyncHTTP


class SyncResource:
    """A family of endpoints hung off :class:`~producer_client.Producer`."""

    def __init__(self, http: SyncHTTP) -> None:
        self._http = http


class AsyncResource:
    """A family of endpoints hung off :class:`~producer_client.AsyncProducer`."""

    def __init__(self, http: AsyncHTTP) -> None:
        self._http = http


def require_text(field: str, value: object, *, context: str | None = None) -> str:
    """``value`` if it is a non-blank string, else ParamsValidationError naming ``field``."""
    if not isinstance(value, str) or not value.strip():
        error = FieldError(field, "must be a non-empty string")
        raise ParamsValidationError([error], action=context)
    return value


def require_url(field: str, value: object, *, context: str | None = None) -> str:
    """``value`` if it is an http(s) URL, else ParamsValidationError naming ``field``."""
    text = require_text(field, value, context=context)
    if not text.startswith(("http://", "https://")):
        error = FieldError(field, "must be an http(s) URL")
        raise ParamsValidationError([error], action=context)
    return text


def optional_url(field: str, value: object, *, context: str | None = None) -> str | None:
    """Like :func:`require_url` but None passes through."""
    return None if value is None else require_url(field, value, context=context)
