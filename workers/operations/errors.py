"""The one table that decides what a failure means for a step.

=====================================================  ==========================================
failure                                                what the step does
=====================================================  ==========================================
invalid params (``ParamsValidationError``)              fails now, code ``invalid_params``
bad_request, no_token, token_mismatched,               fails now with the provider's code and
api_not_implemented, disabled, invalid_token,          message (recorded in the ledger): asking
token_expired, used_up, forbidden, no_api              again cannot succeed
429 too_many_requests                                  re-queued after the limiter's pause (the
                                                       shared rate is lowered for every worker)
500, 502, 503, 504, network errors and timeouts,      retried with capped, jittered exponential
a 2xx reply whose body is not the documented JSON      backoff, at most ``max_transient_retries``
                                                       times, then fails with the last error; a
                                                       POST that may have reached the provider
                                                       is adopted on retry, not paid again
provider task ended failed                             fails with the provider's message
provider task never finished (deadline)                fails with ``deadline_exceeded``
artifact refused (non-http URL, too large, wrong       fails (``artifact_refused``)
type, empty)
artifact download interrupted                          retried like a network error
a provider reply we cannot use (an item id that is     fails (``bad_provider_reply``)
not a safe storage key)
Redis unreachable (restarting): ledger, limiter        retried like a network error
(``redis_unavailable``)
=====================================================  ==========================================

Every permanent failure of ``collect`` ends the step completely: ledger ``failed``
(marked for re-collection: the step was paid), in-flight slot released, continuation
finished, the objects this step stored deleted (:mod:`workers.operations.collect`).
"""

from __future__ import annotations

import random

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from producer_client import (
    APIConnectionError,
    APIStatusError,
    MalformedResponseError,
    ParamsValidationError,
)
from workers.storage import ArtifactError

BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 120.0


class _StepError(Exception):
    """A step's failure with the ``code`` and ``message`` recorded on the step."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class StepFailed(_StepError):  # the name reads as the state it reports (not ...Error)
    """A step failed for good; ``code`` and ``message`` are recorded on the step."""


class TransientError(_StepError):
    """A step may succeed if tried again later."""


class BadProviderReply(StepFailed):
    """The provider's reply cannot be used as it is (e.g. an item id unsafe as a key)."""

    def __init__(self, message: str) -> None:
        super().__init__("bad_provider_reply", message)


def classify(exc: BaseException) -> StepFailed | TransientError:
    """Map a failure to a permanent :class:`StepFailed` or a retryable :class:`TransientError`."""
    if isinstance(exc, StepFailed | TransientError):
        return exc
    if isinstance(exc, ParamsValidationError):
        return StepFailed("invalid_params", str(exc))
    if isinstance(exc, APIStatusError):
        code = exc.code or f"http_{exc.status_code}"
        kind = TransientError if exc.retryable else StepFailed
        return kind(code, exc.message)
    if isinstance(exc, APIConnectionError):
        return TransientError("network_error", str(exc))
    if isinstance(exc, MalformedResponseError):
        # The provider may have accepted the POST and lost only the reply (the task
        # exists): retrying lets the ledger adopt it instead of failing a paid step.
        return TransientError("malformed_response", str(exc))
    if isinstance(exc, ArtifactError):
        kind = TransientError if exc.retryable else StepFailed
        return kind("artifact_download" if exc.retryable else "artifact_refused", str(exc))
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        # Redis restarting (ledger, limiter, broker): the step is fine, try it later.
        return TransientError("redis_unavailable", str(exc))
    return StepFailed("internal_error", f"{type(exc).__name__}: {exc}")


def backoff_s(attempt: int, *, rng: random.Random | None = None) -> float:
    """Capped, jittered exponential backoff for the ``attempt``-th retry (0-based)."""
    draw = (rng or random).random()
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0**attempt) * (0.5 + draw / 2)
