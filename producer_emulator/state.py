"""Everything the emulator remembers: tasks, songs, limits, counters, the request log.

One :class:`EmulatorState` lives per app, in memory. Every read and write
happens on the server's event loop (admin calls arrive over HTTP like any
other), so plain dicts are safe without locks. Rendered media are never kept
here: a song is its small :class:`~producer_emulator.render.media.SongSpec`.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from producer_emulator.config import EmulatorConfig
from producer_emulator.errors import ApiError
from producer_emulator.faults.injector import FaultInjector
from producer_emulator.limits import InFlight, RateLimiter
from producer_emulator.render.media import SongSpec

_USER_NAMESPACE = uuid.UUID("7b0c5f1e-2f0a-4c55-9d7c-6d1f3e0a9b21")
_object_ids = itertools.count(1)


def token_hash(token: str | None) -> str | None:
    """A short stable digest of a token, safe to show in counters and logs."""
    if token is None:
        return None
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def derived_id(token: str, kind: str) -> str:
    """A stable UUID per token for bookkeeping fields (``user_id``, ``application_id``)."""
    return str(uuid.uuid5(_USER_NAMESPACE, f"{kind}:{token}"))


def object_id(now: float) -> str:
    """A Mongo-ObjectId-looking ``_id``: 4 bytes of time, 8 bytes of counter."""
    return f"{int(now):08x}{next(_object_ids):016x}"


@dataclass(slots=True)
class TaskRecord:
    """One task as stored; :mod:`~producer_emulator.records` renders it."""

    id: str
    type: str
    token: str
    trace_id: str
    request: dict[str, Any]
    created_at: float
    started_at: float
    mongo_id: str
    finished_at: float | None = None
    response: dict[str, Any] | None = None
    start_mono: float = 0.0
    due_mono: float = 0.0
    preview_item: dict[str, Any] | None = None


@dataclass(slots=True)
class AudioEntry:
    """A song the emulator can serve and use as a source: generated or uploaded."""

    audio_id: str
    spec: SongSpec
    seed: int
    title: str
    lyric: str
    ready: bool
    uploaded: bool = False


@dataclass(slots=True)
class Counters:
    """Totals reported by ``GET /_emulator/counters``."""

    submissions_total: int = 0
    submissions_by_fingerprint: Counter[str] = field(default_factory=Counter)
    submissions_by_endpoint: Counter[str] = field(default_factory=Counter)
    rejected_429: Counter[str] = field(default_factory=Counter)
    errors_by_code: Counter[str] = field(default_factory=Counter)
    polls: int = 0
    callbacks_sent: int = 0
    callbacks_failed: int = 0
    callbacks_dropped: int = 0
    callbacks_duplicated: int = 0
    tasks_total: int = 0
    tasks_failed: int = 0


class EmulatorState:
    """The emulator's memory; built by ``create_app`` and reachable as ``app.state.emulator``."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.initial_config = config
        # Bumped by every reset: a request begun in an older epoch is not counted or logged.
        self.epoch = 0
        self._fresh(config)

    def _fresh(self, config: EmulatorConfig) -> None:
        self.config = config
        self.faults = FaultInjector(config.seed)
        self.limiter = RateLimiter()
        self.in_flight = InFlight()
        self.tasks: dict[str, TaskRecord] = {}
        self.task_ids_by_token: dict[str, list[str]] = {}
        self.audios: dict[str, AudioEntry] = {}
        self.stems_sources: dict[str, str] = {}
        self.counters = Counters()
        self.requests: deque[tuple[float, str, int, str | None]] = deque(
            maxlen=config.request_log_size
        )
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.waiters: dict[str, asyncio.Future[None]] = {}
        self._rng = random.Random(_offset_seed(config.seed, 1))

    # -- configuration -------------------------------------------------------------

    def apply_config(self, config: EmulatorConfig) -> None:
        """Switch to ``config`` at runtime; buckets and in-flight counts carry over."""
        if config.seed != self.config.seed:
            self.faults.reseed(config.seed)
            self._rng = random.Random(_offset_seed(config.seed, 1))
        elif config.faults.rules != self.config.faults.rules:
            self.faults.forget_rule_counts()
        if config.request_log_size != self.config.request_log_size:
            self.requests = deque(self.requests, maxlen=config.request_log_size)
        self.config = config

    def reset(self, *, keep_config: bool) -> None:
        """Forget every task, song, counter and bucket; cancel pending completions."""
        for handle in self.timers.values():
            handle.cancel()
        for waiter in self.waiters.values():
            # A held sync request answers 500 rather than dying with its connection.
            if not waiter.done():
                waiter.set_exception(ApiError("api_error", "The emulator was reset."))
        self.epoch += 1
        self._fresh(self.config if keep_config else self.initial_config)

    # -- randomness ----------------------------------------------------------------

    def song_seed(self, requested: str | None) -> int:
        """The media seed: from the request's ``seed`` when given, else drawn."""
        if requested is None:
            return self._rng.randrange(2**32)
        if requested.isdigit():
            return int(requested) % 2**32
        return int.from_bytes(hashlib.sha256(requested.encode()).digest()[:4], "big")

    def generation_wait_s(self) -> float:
        """Real seconds the next generation takes: mean +- jitter, time-scaled."""
        cfg = self.config
        emulated = cfg.generation_s + self._rng.uniform(
            -cfg.generation_jitter_s, cfg.generation_jitter_s
        )
        return cfg.scaled(max(0.0, emulated))

    # -- tasks ---------------------------------------------------------------------

    def new_task(
        self, *, task_id: str, kind: str, token: str, trace_id: str, body: dict[str, Any]
    ) -> TaskRecord:
        """Create and store a task record for an accepted request."""
        now = round(time.time(), 3)  # ms, as reported, so list filters compare exactly
        record = TaskRecord(
            id=task_id,
            type=kind,
            token=token,
            trace_id=trace_id,
            request=body,
            created_at=now,
            started_at=now,
            mongo_id=object_id(now),
            start_mono=time.monotonic(),
        )
        self.tasks[task_id] = record
        self.task_ids_by_token.setdefault(token, []).append(task_id)
        self.counters.tasks_total += 1
        self._evict_finished()
        return record

    def task_for(self, token: str, task_id: str) -> TaskRecord | None:
        """The task ``task_id`` when it belongs to ``token``."""
        record = self.tasks.get(task_id)
        return record if record is not None and record.token == token else None

    def tasks_of(self, token: str) -> list[TaskRecord]:
        """``token``'s tasks, newest first."""
        ids = self.task_ids_by_token.get(token, [])
        found = (self.tasks.get(task_id) for task_id in reversed(ids))
        return [record for record in found if record is not None]

    def _evict_finished(self) -> None:
        # Oldest first; a running task is never dropped, so eviction stops there.
        while len(self.tasks) > self.config.max_tasks:
            oldest = next(iter(self.tasks.values()))
            if oldest.finished_at is None:
                return
            del self.tasks[oldest.id]

    # -- counters and log ------------------------------------------------------------

    def count_submission(self, endpoint: str, fingerprint: str) -> None:
        """Count an accepted (task-creating) request."""
        self.counters.submissions_total += 1
        self.counters.submissions_by_endpoint[endpoint] += 1
        # audios keys are the bare fingerprint the workers compute; the other
        # endpoints are prefixed so wav and videos of one audio_id stay apart.
        key = fingerprint if endpoint == "audios" else f"{endpoint}:{fingerprint}"
        self.counters.submissions_by_fingerprint[key] += 1

    def log_request(self, path: str, status: int, token: str | None) -> None:
        """Append one producer request to the bounded log."""
        self.requests.append((time.time(), path, status, token_hash(token)))

    def counters_json(self, *, fingerprints: bool = True) -> dict[str, Any]:
        """The counters as the admin endpoint reports them.

        ``submissions_duplicated`` is the number of fingerprints submitted more
        than once; ``fingerprints=False`` leaves out the (large) per-fingerprint map.
        """
        c = self.counters
        by_fingerprint = c.submissions_by_fingerprint
        return {
            "submissions_total": c.submissions_total,
            "submissions_duplicated": sum(1 for n in by_fingerprint.values() if n > 1),
            **({"submissions_by_fingerprint": dict(by_fingerprint)} if fingerprints else {}),
            "submissions_by_endpoint": dict(c.submissions_by_endpoint),
            "rejected_429": {k: c.rejected_429[k] for k in ("submit", "poll", "concurrency")},
            "errors_by_code": dict(c.errors_by_code),
            "polls": c.polls,
            "callbacks_sent": c.callbacks_sent,
            "callbacks_failed": c.callbacks_failed,
            "callbacks_dropped": c.callbacks_dropped,
            "callbacks_duplicated": c.callbacks_duplicated,
            "in_flight": self.in_flight.total,
            "in_flight_by_token": {token_hash(t): n for t, n in self.in_flight.by_token().items()},
            "max_in_flight_seen": self.in_flight.max_seen,
            "tasks_total": c.tasks_total,
            "tasks_failed": c.tasks_failed,
        }


def _offset_seed(seed: int | None, offset: int) -> int | None:
    return None if seed is None else seed + offset
