"""Schedules in Redis, each beside the celery-redbeat entry that makes beat fire it.

:class:`ScheduleStore` keeps each :class:`~pipelines.schedules.spec.ScheduleSpec` in
Redis beside one celery-redbeat entry that makes beat send ``producer.schedule.fire(name)``
when it is due (the task: :mod:`pipelines.schedules.tasks`). Redis layout (all under
``producer:``; the names are in :mod:`pipelines.constants`):

=====================================  ==============================================
``producer:schedules``                 set of schedule names (the index)
``producer:schedule:<name>``           hash: ``spec`` (JSON), ``armed_at``, ``last_run``
``producer:schedule-runs:<name>``      list of the latest runs, newest first
``producer:redbeat:schedule:<name>``   the redbeat entry (definition + last_run_at)
``producer:redbeat::schedule``         redbeat's due-time index (a sorted set)
``producer:redbeat::lock``             the one-active-beat lock
=====================================  ==============================================

Only redbeat entries named ``schedule:<name>`` belong to us: a sync never touches
other entries under the same redbeat prefix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import redis
from celery import Celery
from celery.schedules import crontab, schedule
from pydantic import BaseModel, Field
from redbeat import RedBeatSchedulerEntry
from redbeat.schedulers import ensure_conf

from pipelines.constants import (
    REDBEAT_ENTRY_PREFIX,
    SCHEDULE_INDEX_KEY,
    SCHEDULE_RUNS_KEPT,
    SCHEDULE_RUNS_PREFIX,
    SCHEDULE_SPEC_PREFIX,
)
from pipelines.schedules.spec import (
    FIRE_TASK,
    ScheduleSpec,
    beat_config,
    beat_schedule,
    load_schedules,
    next_cron_time,
    validate_pipelines,
)
from workers.settings import Settings


class RunRecord(BaseModel):
    """One fire of a schedule and the batch it produced (or why it produced none)."""

    fired_at: datetime
    origin: Literal["beat", "run-now"]
    batch_id: str
    status: Literal["submitted", "resumed", "failed"]
    accepted: int = 0
    rejected: int = 0
    errors: list[str] = Field(default_factory=list)


class ScheduleState(BaseModel):
    """What the store knows about a schedule beyond its spec."""

    armed_at: datetime
    last_run: RunRecord | None = None


@dataclass
class SyncReport:
    """What a sync changed: schedule names per action."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def sync_file(store: ScheduleStore, path: Path, *, pipelines_file: Path | None) -> SyncReport:
    """Load ``path``, check its pipelines (built-ins + ``pipelines_file``), sync the store."""
    specs = load_schedules(path)
    validate_pipelines(specs, pipelines_file, max_steps=store.max_steps)
    return store.sync(specs)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ScheduleStore:
    """Schedules in Redis, each with its redbeat entry kept in step."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.max_steps = settings.max_steps_per_row  # pipelines are checked against it
        # A private app carries the redbeat configuration, so the CLI and the fire
        # task write entries exactly where the beat (built from the same settings) reads.
        self._beat_app = Celery("producer-schedules", set_as_current=False)
        self._beat_app.conf.update(beat_config(settings))
        self._redbeat = ensure_conf(self._beat_app)

    def close(self) -> None:
        """Close redbeat's own connection (the caller owns ``self.redis``)."""
        connection = getattr(self._beat_app, "redbeat_redis", None)
        if connection is not None:
            connection.close()
        self._beat_app.close()

    def _entry_name(self, name: str) -> str:
        return REDBEAT_ENTRY_PREFIX + name

    def get(self, name: str) -> ScheduleSpec | None:
        """The spec named ``name``, or None."""
        raw = self.redis.hget(SCHEDULE_SPEC_PREFIX + name, "spec")
        return None if raw is None else ScheduleSpec.model_validate_json(raw)

    def specs(self) -> list[ScheduleSpec]:
        """Every schedule, sorted by name."""
        names = sorted(_text(n) for n in self.redis.smembers(SCHEDULE_INDEX_KEY))
        return [spec for spec in map(self.get, names) if spec is not None]

    def state(self, name: str) -> ScheduleState | None:
        """When the schedule was armed and its last run, or None if unknown."""
        armed, last = self.redis.hmget(SCHEDULE_SPEC_PREFIX + name, ["armed_at", "last_run"])
        if armed is None:
            return None
        last_run = None if last is None else RunRecord.model_validate_json(last)
        return ScheduleState(armed_at=datetime.fromisoformat(_text(armed)), last_run=last_run)

    def put(self, spec: ScheduleSpec, *, now: datetime | None = None) -> str:
        """Create or update ``spec`` and its beat entry; returns created/updated/unchanged."""
        now = now or datetime.now(UTC)
        # Everything that can fail is computed before the first write: nothing half-written.
        trigger = beat_schedule(spec)
        old = self.get(spec.name)
        key = SCHEDULE_SPEC_PREFIX + spec.name
        with self.redis.pipeline() as pipe:
            pipe.sadd(SCHEDULE_INDEX_KEY, spec.name)
            pipe.hset(key, "spec", spec.model_dump_json())
            # Armed once: the first cron slot counted is the first after this moment.
            pipe.hsetnx(key, "armed_at", now.isoformat())
            pipe.execute()
        if old is None or self._entry_changed(old, spec):
            self._save_entry(spec, trigger, now)
        if old is None:
            return "created"
        return "unchanged" if old == spec else "updated"

    def _entry_changed(self, old: ScheduleSpec, new: ScheduleSpec) -> bool:
        trigger = ("cron", "every", "timezone", "enabled")
        return any(getattr(old, f) != getattr(new, f) for f in trigger) or (
            new.enabled and self.entry(new.name) is None
        )

    def _save_entry(self, spec: ScheduleSpec, trigger: crontab | schedule, now: datetime) -> None:
        existing = self.entry(spec.name)
        if not spec.enabled:
            # A disabled schedule has no entry: beat never loads it, and enabling it
            # again starts from "now" instead of firing a catch-up run at once.
            if existing is not None:
                existing.delete()
            return
        entry = RedBeatSchedulerEntry(
            name=self._entry_name(spec.name),
            task=FIRE_TASK,
            schedule=trigger,
            args=[spec.name],
            app=self._beat_app,
            # An interval fire not started within one interval is dropped: the next is
            # already queued, and a backlog would otherwise become a burst of batches.
            options={"expires": spec.every} if spec.every is not None else {},
        )
        # Keep the persisted last run across updates; a new entry counts from now
        # (redbeat would otherwise treat it as never run and fire it at once).
        entry.last_run_at = existing.last_run_at if existing is not None else now
        entry.save()

    def entry(self, name: str) -> RedBeatSchedulerEntry | None:
        """The redbeat entry of schedule ``name``, or None."""
        key = RedBeatSchedulerEntry.generate_key(self._beat_app, self._entry_name(name))
        try:
            return RedBeatSchedulerEntry.from_key(key, app=self._beat_app)
        except KeyError:
            return None

    def remove(self, name: str) -> bool:
        """Delete the schedule, its runs and its beat entry; False if there was none."""
        entry = self.entry(name)
        if entry is not None:
            entry.delete()
        with self.redis.pipeline() as pipe:
            pipe.srem(SCHEDULE_INDEX_KEY, name)
            pipe.delete(SCHEDULE_SPEC_PREFIX + name, SCHEDULE_RUNS_PREFIX + name)
            removed, _ = pipe.execute()
        return bool(removed) or entry is not None

    def owned_entry_names(self) -> set[str]:
        """Schedule names of every redbeat entry this module owns (orphans included)."""
        prefix = self._redbeat.key_prefix + REDBEAT_ENTRY_PREFIX
        keys = [_text(key) for key in self.redis.zrange(self._redbeat.schedule_key, 0, -1)]
        return {key[len(prefix) :] for key in keys if key.startswith(prefix)}

    def sync(self, specs: Iterable[ScheduleSpec], *, now: datetime | None = None) -> SyncReport:
        """Make Redis hold exactly ``specs``: create, update and remove our schedules."""
        report = SyncReport()
        wanted = {spec.name: spec for spec in sorted(specs, key=lambda s: s.name)}
        for spec in wanted.values():
            beat_schedule(spec)  # every trigger representable before the first write
        for spec in wanted.values():
            getattr(report, self.put(spec, now=now)).append(spec.name)
        stale = ({s.name for s in self.specs()} | self.owned_entry_names()) - set(wanted)
        for name in sorted(stale):
            self.remove(name)
            report.removed.append(name)
        return report

    def record_run(self, name: str, run: RunRecord) -> None:
        """Remember ``run`` as the schedule's last run and in its recent history."""
        payload = run.model_dump_json()
        with self.redis.pipeline() as pipe:
            pipe.hset(SCHEDULE_SPEC_PREFIX + name, "last_run", payload)
            pipe.lpush(SCHEDULE_RUNS_PREFIX + name, payload)
            pipe.ltrim(SCHEDULE_RUNS_PREFIX + name, 0, SCHEDULE_RUNS_KEPT - 1)
            pipe.execute()

    def runs(self, name: str, limit: int = SCHEDULE_RUNS_KEPT) -> list[RunRecord]:
        """The latest runs, newest first."""
        raw = self.redis.lrange(SCHEDULE_RUNS_PREFIX + name, 0, limit - 1)
        return [RunRecord.model_validate_json(item) for item in raw]

    def next_run(self, spec: ScheduleSpec, now: datetime | None = None) -> datetime | None:
        """When the schedule next runs a batch (None: disabled or never)."""
        now = now or datetime.now(UTC)
        if not spec.enabled:
            return None
        if spec.cron is not None:
            return next_cron_time(spec, now)
        entry = self.entry(spec.name)
        last = None if entry is None else entry.last_run_at
        if not isinstance(last, datetime):
            return None
        # Overdue (beat was down) means beat fires it at its next look: now.
        return max(last + timedelta(seconds=spec.every or 0), now)
