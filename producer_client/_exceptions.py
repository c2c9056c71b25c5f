"""Every error the client raises.

Our exception hierarchy:

* ProducerError
  + ParamsValidationError       (also a ValueError; raised before any request)
  + APIError
  |  + APIStatusError           (non-2xx reply, or a 2xx body with ``success: false``)
  |  |  + BadRequestError        400 bad_request (and unknown 400 codes)
  |  |  + NoTokenError           400 no_token
  |  |  + TokenMismatchedError   400 / 401 token_mismatched
  |  |  + ApiNotImplementedError 400 api_not_implemented
  |  |  + DisabledError          400 / 403 disabled
  |  |  + AuthenticationError    401 (unknown 401 codes)
  |  |  |  + InvalidTokenError   401 invalid_token
  |  |  |  + TokenExpiredError   401 token_expired
  |  |  + PermissionDeniedError  403 (unknown 403 codes)
  |  |  |  + UsedUpError        403 used_up
  |  |  |  + ForbiddenError     403 forbidden (content moderation)
  |  |  + NoApiError             404 no_api
  |  |  + RateLimitError         429 too_many_requests        [retryable]
  |  |  + InternalServerError    500 api_error                [retryable]
  |  |  + BadGatewayError        502                          [retryable]
  |  |  + ServiceUnavailableError 503                         [retryable]
  |  |  + GatewayTimeoutError    504 timeout                  [retryable]
  |  + APIConnectionError       (transport failure)          [retryable]
  |  |  + APITimeoutError
  |  + MalformedResponseError   (2xx body that is not JSON or not the documented shape)
  + WaitTimeoutError            (``tasks.wait`` gave up)
  + TaskFailedError             (a finished task that did not succeed)

``retryable`` is a class attribute saying whether the failure is transient. Whether a
*given* request is retried also depends on whether it could have been paid for twice:
see :func:`producer_client._retry.should_retry`.

Messages never contain the API token: the client builds them from status, code, the
server's message and the trace id only, and scrubs the token from server text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from producer_client.types.tasks import TaskRecord

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "ApiNotImplementedError",
    "AuthenticationError",
    "BadGatewayError",
    "BadRequestError",
    "DisabledError",
    "FieldError",
    "ForbiddenError",
    "GatewayTimeoutError",
    "InternalServerError",
    "InvalidTokenError",
    "MalformedResponseError",
    "NoApiError",
    "NoTokenError",
    "ParamsValidationError",
    "PermissionDeniedError",
    "ProducerError",
    "RateLimitError",
    "ServiceUnavailableError",
    "TaskFailedError",
    "TokenExpiredError",
    "TokenMismatchedError",
    "UsedUpError",
    "WaitTimeoutError",
]


class ProducerError(Exception):
    """Base class of every error raised by ``producer_client``."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str | None = None) -> None:
        # procrastinate style: a class's docstring is its default message.
        text = message or (type(self).__doc__ or type(self).__name__).strip()
        super().__init__(text)
        self.message = text


@dataclass(frozen=True)
class FieldError:
    """One problem with one request field."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ParamsValidationError(ProducerError, ValueError):
    """Request parameters are invalid; nothing was sent."""

    def __init__(self, errors: list[FieldError], *, action: str | None = None) -> None:
        self.errors = list(errors)
        self.action = action
        prefix = f"{action}: " if action else ""
        super().__init__("; ".join(f"{prefix}{error}" for error in self.errors))


class APIError(ProducerError):
    """The API could not be reached or answered with something other than success."""


class APIStatusError(APIError):
    """The API answered with an error (non-2xx status or ``success: false``)."""

    def __init__(
        self,
        *,
        status_code: int,
        code: str | None,
        message: str | None,
        trace_id: str | None,
        body: Any,
        retry_after_s: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.trace_id = trace_id
        self.body = body
        self.retry_after_s = retry_after_s
        detail = message or (type(self).__doc__ or "").strip()
        super().__init__(_status_text(status_code, code, detail, trace_id))
        self.message = detail


def _status_text(status: int, code: str | None, detail: str, trace_id: str | None) -> str:
    head = f"HTTP {status}" + (f" {code}" if code else "")
    tail = f" (trace_id={trace_id})" if trace_id else ""
    return f"{head}: {detail}{tail}"


class BadRequestError(APIStatusError):
    """The request was rejected as invalid."""


class NoTokenError(APIStatusError):
    """No token was sent with the request."""


class TokenMismatchedError(APIStatusError):
    """The token is not valid for this API (service credential of another service)."""


class ApiNotImplementedError(APIStatusError):
    """The API is not implemented."""


class DisabledError(APIStatusError):
    """The application was disabled by the provider."""


class AuthenticationError(APIStatusError):
    """The token was not accepted."""


class InvalidTokenError(AuthenticationError):
    """The token is invalid or wrong."""


class TokenExpiredError(AuthenticationError):
    """The token has expired."""


class PermissionDeniedError(APIStatusError):
    """The request was refused."""


class UsedUpError(PermissionDeniedError):
    """The account balance is not sufficient for this request."""


class ForbiddenError(PermissionDeniedError):
    """The request was refused by content moderation."""


class NoApiError(APIStatusError):
    """The API path does not exist."""


class RateLimitError(APIStatusError):
    """Rate limit exceeded; ``retry_after_s`` holds the server's hint when it sent one."""

    retryable = True


class InternalServerError(APIStatusError):
    """The API failed internally."""

    retryable = True


class BadGatewayError(APIStatusError):
    """A gateway got a bad answer from upstream."""

    retryable = True


class ServiceUnavailableError(APIStatusError):
    """The API is unavailable and refused the request."""

    retryable = True


class GatewayTimeoutError(APIStatusError):
    """The upstream generation timed out at the gateway."""

    retryable = True


class APIConnectionError(APIError):
    """The API could not be reached, or the connection failed mid-request."""

    retryable = True

    def __init__(self, message: str | None = None, *, request_sent: bool) -> None:
        # Whether the request may have reached the server decides if a paid POST
        # can be retried without risking a second charge.
        self.request_sent = request_sent
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    """The request timed out."""


class MalformedResponseError(APIError):
    """The API answered 2xx with a body that is not the documented JSON shape."""

    def __init__(self, message: str | None = None, *, body: Any = None) -> None:
        self.body = body
        super().__init__(message)


class WaitTimeoutError(ProducerError):
    """The task did not finish in time."""

    def __init__(self, *, task_id: str, timeout_s: float, last: TaskRecord | None) -> None:
        self.task_id = task_id
        self.timeout_s = timeout_s
        self.last = last
        super().__init__(f"task {task_id} not finished after {timeout_s:g}s")


class TaskFailedError(ProducerError):
    """The task finished without success."""

    def __init__(self, record: TaskRecord) -> None:
        self.record = record
        super().__init__(f"task {record.id} failed: {record.error_message or 'Task failed'}")
