"""Error replies, shaped like the real platform's (CONTRACT §7).

Two envelopes exist: gateway errors ``{"error": {code, message}, "trace_id"}``
with no ``success`` key (auth, unknown path, rate limit, bad request,
timeout, moderation, balance) and errors raised behind the gateway
(``api_error``), which add ``"success": false``. Messages are the documented
ones from ``examples/errors.json``; the two the vendor never documented
(``timeout``, ``forbidden``) get plain made-up sentences rather than ``null``.
"""

from __future__ import annotations

import uuid
from typing import Any

MESSAGES: dict[str, str] = {
    "no_token": "No token specified for the request.",
    "invalid_token": "The specified token is invalid or wrong.",
    "no_api": "API does not exist, please make sure url is correct.",
    "too_many_requests": "You have exceeded the rate limit.",
    "api_error": "Internal server error.",
    "timeout": "The upstream service timed out.",
    "forbidden": "The request was rejected by content moderation.",
    "used_up": (
        "Your balance is not sufficient for current request, please buy more in Ace Data Cloud."
    ),
    "bad_request": "The request is invalid.",
    "token_mismatched": "The specified token is not matched with API.",
    "api_not_implemented": "The API is not implemented.",
    "disabled": (
        "Your application has been disabled by Ace Data Cloud due to abnormal usage behavior, "
        "please contact our support to get more information."
    ),
    "token_expired": "token expired.",
}

STATUS: dict[str, int] = {
    "no_token": 400,
    "token_mismatched": 400,
    "api_not_implemented": 400,
    "disabled": 400,
    "token_expired": 401,
    "bad_request": 400,
    "invalid_token": 401,
    "forbidden": 403,
    "used_up": 403,
    "no_api": 404,
    "too_many_requests": 429,
    "api_error": 500,
    "timeout": 504,
}

# Raised behind the gateway: these bodies carry "success": false.
_BEHIND_GATEWAY = frozenset({"api_error"})


def new_id() -> str:
    """A fresh UUID-v4 string (task ids, trace ids, audio ids)."""
    return str(uuid.uuid4())


class ApiError(Exception):
    """An error reply: ``code`` picks the status and envelope, ``message`` the text."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        retry_after_s: int | None = None,
        status: int | None = None,
    ) -> None:
        self.code = code
        self.message = message if message is not None else MESSAGES[code]
        # token_mismatched is documented under both 400 and 401, with different messages.
        self.status = status if status is not None else STATUS[code]
        self.retry_after_s = retry_after_s
        super().__init__(self.message)

    def body(self, trace_id: str) -> dict[str, Any]:
        """The JSON body of this error."""
        return error_body(self.code, self.message, trace_id)


def bad_request(message: str) -> ApiError:
    """A 400 ``bad_request`` with ``message``."""
    return ApiError("bad_request", message)


def error_body(code: str, message: str, trace_id: str) -> dict[str, Any]:
    """The envelope for ``code``: with ``success: false`` only behind the gateway."""
    body: dict[str, Any] = {}
    if code in _BEHIND_GATEWAY:
        body["success"] = False
    body["error"] = {"code": code, "message": message}
    body["trace_id"] = trace_id
    return body
