"""The client's retry policy: constants and two small functions.

The client only retries quickly and a bounded number of times; the workers own the
slow, fleet-wide backoff (they build the client with ``max_retries=0``).

The one rule that matters most: a *paid* POST (audios, upload, wav, videos, lyrics)
is retried only when the server certainly did not act on it — the connection was
never made, or the server refused the request outright (429, 503). A read timeout,
a 504 or a 500 after the body was sent may mean the song is being generated and
paid for; sending again could pay twice.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from producer_client._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    RateLimitError,
    ServiceUnavailableError,
)

DEFAULT_MAX_RETRIES = 2
BASE_DELAY_S = 0.5
MAX_DELAY_S = 4.0
JITTER_S = 0.25
# A Retry-After longer than this is not slept through inside one call: the error is
# raised so the caller (a worker) can re-queue instead of holding a slot.
MAX_RETRY_AFTER_S = 8.0

# Errors that prove the server did not act on the request.
_REFUSED_STATUS_ERRORS: tuple[type[APIStatusError], ...] = (
    RateLimitError,
    ServiceUnavailableError,
)


def should_retry(exc: APIError, method_is_idempotent: bool) -> bool:
    """Whether ``exc`` may be retried for a request of this kind."""
    if not exc.retryable:
        return False
    retry_after = getattr(exc, "retry_after_s", None)
    if retry_after is not None and retry_after > MAX_RETRY_AFTER_S:
        return False
    if method_is_idempotent:
        return True
    return _request_refused(exc)


def _request_refused(exc: APIError) -> bool:
    if isinstance(exc, APIConnectionError):
        return not exc.request_sent
    return isinstance(exc, _REFUSED_STATUS_ERRORS)


def retry_delay_s(attempt: int, retry_after_s: float | None) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based), jittered."""
    jitter = random.uniform(0.0, JITTER_S)
    if retry_after_s is not None:
        return min(max(retry_after_s, 0.0), MAX_RETRY_AFTER_S) + jitter
    return min(BASE_DELAY_S * 2.0**attempt, MAX_DELAY_S) + jitter


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); None if unusable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        return _seconds_until(text, now or datetime.now(UTC))
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _seconds_until(http_date: str, now: datetime) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)
