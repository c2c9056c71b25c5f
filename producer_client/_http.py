"""The one send loop (sync and async twins) and the one place errors are mapped.

Everything between "a resource has a JSON body to POST" and "a resource has a JSON
object back" happens here: the bearer token is attached, transport errors and error
replies are translated into :mod:`producer_client._exceptions`, and the retry policy
of :mod:`producer_client._retry` is applied.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from producer_client._exceptions import (
    APIConnectionError,
    APIError,
    ApiNotImplementedError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadGatewayError,
    BadRequestError,
    DisabledError,
    ForbiddenError,
    GatewayTimeoutError,
    InternalServerError,
    InvalidTokenError,
    MalformedResponseError,
    NoApiError,
    NoTokenError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    TokenExpiredError,
    TokenMismatchedError,
    UsedUpError,
)
from producer_client._retry import parse_retry_after, retry_delay_s, should_retry

log = logging.getLogger("producer_client")

USER_AGENT = "producer-batch (producer_client)"
_SNIPPET_CHARS = 500
_REDACTED = "[redacted]"

ModelT = TypeVar("ModelT", bound=BaseModel)

_BY_CODE: dict[str, type[APIStatusError]] = {
    "bad_request": BadRequestError,
    "no_token": NoTokenError,
    "token_mismatched": TokenMismatchedError,
    "api_not_implemented": ApiNotImplementedError,
    "disabled": DisabledError,
    "invalid_token": InvalidTokenError,
    "token_expired": TokenExpiredError,
    "used_up": UsedUpError,
    "forbidden": ForbiddenError,
    "no_api": NoApiError,
    "too_many_requests": RateLimitError,
    "rate_limited": RateLimitError,  # withdrawn FAQ spelling (CONTRACT §7.2)
    "api_error": InternalServerError,
    "timeout": GatewayTimeoutError,
}
_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NoApiError,
    429: RateLimitError,
    500: InternalServerError,
    502: BadGatewayError,
    503: ServiceUnavailableError,
    504: GatewayTimeoutError,
}


@dataclass(frozen=True, repr=False)
class HttpConfig:
    """What the send loop needs; the token stays a SecretStr end to end."""

    api_token: SecretStr
    base_url: str
    timeout_s: float
    max_retries: int

    def __repr__(self) -> str:
        return (
            f"HttpConfig(base_url={self.base_url!r}, timeout_s={self.timeout_s!r}, "
            f"max_retries={self.max_retries!r})"
        )


class _BearerAuth(httpx.Auth):
    """Adds ``authorization: Bearer <token>`` at send time; its repr shows no token."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["authorization"] = f"Bearer {self._token.get_secret_value()}"
        yield request


def _client_options(config: HttpConfig) -> dict[str, Any]:
    return {
        "base_url": config.base_url,
        "timeout": httpx.Timeout(config.timeout_s),
        "auth": _BearerAuth(config.api_token),
        "headers": {"accept": "application/json", "user-agent": USER_AGENT},
    }


def _request_timeout(timeout_s: float | None) -> Any:
    return httpx.USE_CLIENT_DEFAULT if timeout_s is None else httpx.Timeout(timeout_s)


class SyncHTTP:
    """Blocking send loop over an ``httpx.Client``."""

    def __init__(self, config: HttpConfig, transport: httpx.BaseTransport | None) -> None:
        self._config = config
        self._client = httpx.Client(transport=transport, **_client_options(config))

    @property
    def timeout_s(self) -> float:
        """The client-wide timeout in seconds."""
        return self._config.timeout_s

    def post(
        self, path: str, body: dict[str, Any], *, idempotent: bool, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """POST ``body`` as JSON and return the reply's JSON object, retrying per policy."""
        request = self._client.build_request(
            "POST", path, json=body, timeout=_request_timeout(timeout_s)
        )
        attempt = 0
        while True:
            try:
                return _accept(self._send(request), self._config.api_token)
            except APIError as exc:
                delay = _retry_delay_or_raise(exc, attempt, idempotent, self._config, path)
            time.sleep(delay)
            attempt += 1

    def _send(self, request: httpx.Request) -> httpx.Response:
        try:
            response = self._client.send(request)
        except httpx.TransportError as exc:
            raise _transport_error(exc, self._config.api_token) from exc
        log.debug("POST %s -> %d", request.url.path, response.status_code)
        return response

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


class AsyncHTTP:
    """Async twin of :class:`SyncHTTP` over an ``httpx.AsyncClient``."""

    def __init__(self, config: HttpConfig, transport: httpx.AsyncBaseTransport | None) -> None:
        self._config = config
        self._client = httpx.AsyncClient(transport=transport, **_client_options(config))

    @property
    def timeout_s(self) -> float:
        """The client-wide timeout in seconds."""
        return self._config.timeout_s

    async def post(
        self, path: str, body: dict[str, Any], *, idempotent: bool, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """POST ``body`` as JSON and return the reply's JSON object, retrying per policy."""
        request = self._client.build_request(
            "POST", path, json=body, timeout=_request_timeout(timeout_s)
        )
        attempt = 0
        while True:
            try:
                return _accept(await self._send(request), self._config.api_token)
            except APIError as exc:
                delay = _retry_delay_or_raise(exc, attempt, idempotent, self._config, path)
            await anyio.sleep(delay)
            attempt += 1

    async def _send(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self._client.send(request)
        except httpx.TransportError as exc:
            raise _transport_error(exc, self._config.api_token) from exc
        log.debug("POST %s -> %d", request.url.path, response.status_code)
        return response

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def _retry_delay_or_raise(
    exc: APIError, attempt: int, idempotent: bool, config: HttpConfig, path: str
) -> float:
    """The pause before the next attempt; re-raises ``exc`` when there is none."""
    if attempt >= config.max_retries or not should_retry(exc, idempotent):
        raise exc
    delay = retry_delay_s(attempt, getattr(exc, "retry_after_s", None))
    log.warning(
        "retrying POST %s in %.2fs after %s (retry %d of %d)",
        path,
        delay,
        type(exc).__name__,
        attempt + 1,
        config.max_retries,
    )
    return delay


def _transport_error(exc: httpx.TransportError, token: SecretStr) -> APIConnectionError:
    text = _scrub_text(f"{type(exc).__name__}: {exc}", token)
    # Connect/pool failures happen before a byte is sent: the server cannot have acted.
    never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(text, request_sent=not never_sent)
    return APIConnectionError(text, request_sent=not never_sent)


def _accept(response: httpx.Response, token: SecretStr) -> dict[str, Any]:
    """The JSON object of a successful reply; every other reply becomes an exception."""
    body = _decode(response)
    if not response.is_success:
        raise _status_error(response, body, token)
    if not isinstance(body, dict):
        raise MalformedResponseError(
            f"HTTP {response.status_code} from {response.request.url.path}: expected a JSON object",
            body=_scrub_json(body, token),
        )
    if body.get("success") is False:
        raise _status_error(response, body, token)
    return body


def _decode(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:_SNIPPET_CHARS]


def _status_error(response: httpx.Response, body: Any, token: SecretStr) -> APIStatusError:
    envelope = body if isinstance(body, dict) else {}
    code, message = _code_and_message(envelope.get("error"))
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(response.status_code, APIStatusError)
    trace_id = envelope.get("trace_id")
    return cls(
        status_code=response.status_code,
        code=code,
        message=_scrub_text(message, token) if message else None,
        trace_id=_scrub_text(trace_id, token) if isinstance(trace_id, str) else None,
        body=_scrub_json(body, token),
        retry_after_s=parse_retry_after(response.headers.get("retry-after")),
    )


def _code_and_message(error: Any) -> tuple[str | None, str | None]:
    """``error`` may be ``{code, message}``, a bare string, or null (CONTRACT §7.1)."""
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        return (
            code if isinstance(code, str) else None,
            message if isinstance(message, str) else None,
        )
    if isinstance(error, str) and error:
        return None, error
    return None, None


def parse_as(model: type[ModelT], body: dict[str, Any]) -> ModelT:
    """Validate a 2xx body into ``model``; a wrong shape is a MalformedResponseError."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) or "body" for e in exc.errors())
        raise MalformedResponseError(
            f"unexpected {model.__name__} body (problem with: {fields})", body=body
        ) from None


def _scrub_text(text: str, token: SecretStr) -> str:
    secret = token.get_secret_value()
    return text.replace(secret, _REDACTED) if secret else text


def _scrub_json(value: Any, token: SecretStr) -> Any:
    """A copy of a decoded JSON value with the token replaced wherever a string holds it."""
    if isinstance(value, str):
        return _scrub_text(value, token)
    if isinstance(value, dict):
        return {_scrub_text(str(k), token): _scrub_json(v, token) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_json(item, token) for item in value]
    return value
