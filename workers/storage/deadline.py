"""How long a download may take, and one download of an artifact at a time.

A body drip-fed one byte at a time never trips a per-read timeout, and Celery's task
time limit is not enforced in the threads pool. So the time a download may take is
checked by the download itself, in its streaming loop (:class:`DownloadBudget`, used by
:class:`workers.storage.download.HashingBody`), which works the same in every pool:

* a total deadline, shared by all the downloads of one collect (``download_deadline_s``,
  by default 80 % of the task time limit, so a collect ends before Celery would kill it
  and long before the broker redelivers it);
* a minimum throughput over each window of ``download_throughput_window_s`` seconds, so
  a trickle is dropped long before the deadline.

Each read also waits at most what is left of the deadline (the request's timeout), so a
server that sends nothing cannot hold a download past it either.

:func:`artifact_lock` makes sure a redelivered collect does not start a second,
concurrent download of an artifact that another worker is still fetching: a Redis lock
per artifact key whose TTL is the time left of the downloader's deadline (a dead
holder's lock expires with it). A second collect waits briefly, then gives the
message back as a retryable :class:`DownloadError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import redis

from workers.constants import DOWNLOAD_LOCK_PREFIX
from workers.storage.errors import DownloadError, safe_url

if TYPE_CHECKING:
    from workers.settings import Settings

__all__ = [
    "DownloadBudget",
    "ThroughputMeter",
    "artifact_lock",
    "request_timeout",
]

# A lock outlives its holder's deadline by this much: the holder needs a moment after
# its last byte to commit, and an expired lock must never free a live download.
_LOCK_MARGIN_S = 30.0
_MIN_LOCK_WAIT_S = 0.1


@dataclass
class DownloadBudget:
    """A deadline (monotonic clock) and a minimum throughput for a collect's downloads."""

    expires_at: float
    min_bytes_per_s: float = 0.0
    window_s: float = 30.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    @classmethod
    def starting_now(
        cls,
        deadline_s: float,
        *,
        min_bytes_per_s: float = 0.0,
        window_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> DownloadBudget:
        """A budget of ``deadline_s`` seconds from now."""
        return cls(clock() + deadline_s, min_bytes_per_s, window_s, clock)

    @classmethod
    def from_settings(cls, settings: Settings) -> DownloadBudget:
        """The budget of one collect, starting now, from the ``download_*`` settings."""
        return cls.starting_now(
            settings.effective_download_deadline_s,
            min_bytes_per_s=settings.download_min_bytes_per_s,
            window_s=settings.download_throughput_window_s,
        )

    def remaining_s(self) -> float:
        """Seconds left before the deadline (never negative)."""
        return max(self.expires_at - self.clock(), 0.0)

    def meter(self, url: str) -> ThroughputMeter:
        """A meter for one download of ``url``, checked after every chunk."""
        return ThroughputMeter(self, safe_url(url))


class ThroughputMeter:
    """Counts one download's bytes and raises :class:`DownloadError` past the budget."""

    def __init__(self, budget: DownloadBudget, url: str) -> None:
        self._budget = budget
        self._url = url
        self._window_start = budget.clock()
        self._window_bytes = 0

    def check(self, received: int) -> None:
        """Account ``received`` new bytes; raise when the deadline or the floor is crossed."""
        budget = self._budget
        now = budget.clock()
        if now >= budget.expires_at:
            raise DownloadError(
                f"download of {self._url} passed its deadline (too slow to finish in time)",
                retryable=True,
            )
        self._window_bytes += received
        elapsed = now - self._window_start
        if budget.min_bytes_per_s > 0 and elapsed >= budget.window_s:
            rate = self._window_bytes / elapsed
            if rate < budget.min_bytes_per_s:
                raise DownloadError(
                    f"download of {self._url} is too slow: {rate:.0f} B/s over {elapsed:.1f} s, "
                    f"below the floor of {budget.min_bytes_per_s:.0f} B/s",
                    retryable=True,
                )
            self._window_start, self._window_bytes = now, 0


def request_timeout(client: httpx.Client, budget: DownloadBudget | None) -> httpx.Timeout:
    """``client``'s timeouts, none longer than what is left of ``budget``."""
    if budget is None:
        return client.timeout
    left = max(budget.remaining_s(), 0.001)
    current = client.timeout
    return httpx.Timeout(
        connect=min(current.connect or left, left),
        read=min(current.read or left, left),
        write=min(current.write or left, left),
        pool=min(current.pool or left, left),
    )


@contextmanager
def artifact_lock(
    client: redis.Redis, key: str, budget: DownloadBudget, *, wait_s: float = 2.0
) -> Iterator[None]:
    """Hold the download lock of artifact ``key`` for the block (TTL: the budget's time left).

    Raises a retryable :class:`DownloadError` if another download of ``key`` holds it
    for longer than ``wait_s``: the caller gives its message back instead of starting
    a second concurrent download of the same bytes.
    """
    ttl = budget.remaining_s() + _LOCK_MARGIN_S
    lock = client.lock(
        DOWNLOAD_LOCK_PREFIX + key, timeout=ttl, blocking_timeout=max(wait_s, _MIN_LOCK_WAIT_S)
    )
    if not lock.acquire():
        raise DownloadError(
            f"artifact {key!r} is being downloaded by another worker; trying again later",
            retryable=True,
        )
    try:
        yield
    finally:
        # Released by token: a lock that expired and was taken by another stays theirs.
        with suppress(redis.exceptions.LockError):
            lock.release()
