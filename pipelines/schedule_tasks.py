"""Schedules in Redis and in beat: the store, the fire task, the beat wiring.

:class:`ScheduleStore` keeps each :class:`~pipelines.schedules.ScheduleSpec` in Redis
beside one celery-redbeat entry that makes beat send ``producer.schedule.fire(name)``
when it is due; :func:`fire_schedule` submits the schedule's CSV as an ordinary batch
and records the run. Redis layout (all under ``producer:``):

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

Importing this module (``pipelines/app.py`` does, so ``celery -A pipelines.app
worker|beat`` gets it) also wires :data:`workers.app.app`:

- registers ``producer.schedule.fire(name)``;
- adds the redbeat configuration (:func:`pipelines.schedules.beat_config`), so a plain
  ``celery -A pipelines.app beat`` uses redbeat with our lock and key prefix;
- stamps every fire message with the moment it was published (header
  ``producer_fired_at``): the batch id is derived from it, so a message delivered
  twice, or a slot fired twice, lands on the same batch id and resumes it;
- at beat start, syncs ``PRODUCER_SCHEDULES_FILE`` into Redis when it is set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import redis
import structlog
from celery import Celery, Task, signals
from pydantic import BaseModel, Field
from redbeat import RedBeatSchedulerEntry
from redbeat.schedulers import ensure_conf

from pipelines.batches.submit import SubmitReport, submit_batch
from pipelines.schedules import (
    FIRE_TASK,
    ScheduleConfigError,
    ScheduleSpec,
    beat_config,
    beat_schedule,
    due_since,
    load_schedules,
    next_cron_time,
    validate_pipelines,
)
from pipelines.specs.canvas import RowError
from pipelines.specs.loader import get_pipeline
from pipelines.spend.prices import PriceTable
from workers.app import app
from workers.constants import KEY_PREFIX
from workers.runtime import get_services
from workers.settings import Settings, get_settings
from workers.storage import ArtifactStore

log = structlog.get_logger(__name__)

INDEX_KEY = KEY_PREFIX + "schedules"
SPEC_PREFIX = KEY_PREFIX + "schedule:"
RUNS_PREFIX = KEY_PREFIX + "schedule-runs:"
ENTRY_PREFIX = "schedule:"
RUNS_KEPT = 50
FIRED_AT_HEADER = "producer_fired_at"
# Set at beat start: only beat's own fire messages carry the entry's last run time.
_beat_process = {"started": False}
# A run keeps this many of the batch's row errors (the batch itself has them all).
_ERRORS_KEPT = 20


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


def sync_file(store: ScheduleStore, path: Path) -> SyncReport:
    """Load ``path``, check its pipelines, and make the store match it."""
    specs = load_schedules(path)
    validate_pipelines(specs, get_settings().pipelines_file)
    return store.sync(specs)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ScheduleStore:
    """Schedules in Redis, each with its redbeat entry kept in step."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
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
        return ENTRY_PREFIX + name

    def get(self, name: str) -> ScheduleSpec | None:
        """The spec named ``name``, or None."""
        raw = self.redis.hget(SPEC_PREFIX + name, "spec")
        return None if raw is None else ScheduleSpec.model_validate_json(raw)

    def specs(self) -> list[ScheduleSpec]:
        """Every schedule, sorted by name."""
        names = sorted(_text(n) for n in self.redis.smembers(INDEX_KEY))
        return [spec for spec in map(self.get, names) if spec is not None]

    def state(self, name: str) -> ScheduleState | None:
        """When the schedule was armed and its last run, or None if unknown."""
        armed, last = self.redis.hmget(SPEC_PREFIX + name, ["armed_at", "last_run"])
        if armed is None:
            return None
        last_run = None if last is None else RunRecord.model_validate_json(last)
        return ScheduleState(armed_at=datetime.fromisoformat(_text(armed)), last_run=last_run)

    def put(self, spec: ScheduleSpec, *, now: datetime | None = None) -> str:
        """Create or update ``spec`` and its beat entry; returns created/updated/unchanged."""
        now = now or datetime.now(UTC)
        old = self.get(spec.name)
        key = SPEC_PREFIX + spec.name
        with self.redis.pipeline() as pipe:
            pipe.sadd(INDEX_KEY, spec.name)
            pipe.hset(key, "spec", spec.model_dump_json())
            # Armed once: the first cron slot counted is the first after this moment.
            pipe.hsetnx(key, "armed_at", now.isoformat())
            pipe.execute()
        if old is None or self._entry_changed(old, spec):
            self._save_entry(spec, now)
        if old is None:
            return "created"
        return "unchanged" if old == spec else "updated"

    def _entry_changed(self, old: ScheduleSpec, new: ScheduleSpec) -> bool:
        trigger = ("cron", "every", "timezone", "enabled")
        return any(getattr(old, f) != getattr(new, f) for f in trigger) or (
            new.enabled and self.entry(new.name) is None)

    def _save_entry(self, spec: ScheduleSpec, now: datetime) -> None:
        existing = self.entry(spec.name)
        if not spec.enabled:
            # A disabled schedule has no entry: beat never loads it, and enabling it
            # again starts from "now" instead of firing a catch-up run at once.
            if existing is not None:
                existing.delete()
            return
        entry = RedBeatSchedulerEntry(
            name=self._entry_name(spec.name), task=FIRE_TASK, schedule=beat_schedule(spec),
            args=[spec.name], app=self._beat_app,
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
            pipe.srem(INDEX_KEY, name)
            pipe.delete(SPEC_PREFIX + name, RUNS_PREFIX + name)
            removed, _ = pipe.execute()
        return bool(removed) or entry is not None

    def owned_entry_names(self) -> set[str]:
        """Schedule names of every redbeat entry this module owns (orphans included)."""
        prefix = self._redbeat.key_prefix + ENTRY_PREFIX
        keys = [_text(key) for key in self.redis.zrange(self._redbeat.schedule_key, 0, -1)]
        return {key[len(prefix):] for key in keys if key.startswith(prefix)}

    def sync(self, specs: Iterable[ScheduleSpec], *, now: datetime | None = None) -> SyncReport:
        """Make Redis hold exactly ``specs``: create, update and remove our schedules."""
        report = SyncReport()
        wanted = {spec.name: spec for spec in sorted(specs, key=lambda s: s.name)}
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
            pipe.hset(SPEC_PREFIX + name, "last_run", payload)
            pipe.lpush(RUNS_PREFIX + name, payload)
            pipe.ltrim(RUNS_PREFIX + name, 0, RUNS_KEPT - 1)
            pipe.execute()

    def runs(self, name: str, limit: int = RUNS_KEPT) -> list[RunRecord]:
        """The latest runs, newest first."""
        raw = self.redis.lrange(RUNS_PREFIX + name, 0, limit - 1)
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


Submitter = Callable[[ScheduleSpec, str], SubmitReport]
"""Submit ``spec``'s CSV as batch ``batch_id`` (``submit_batch`` or a test's stand-in)."""


def batch_id_for(spec: ScheduleSpec, fired_at: datetime) -> str:
    """``s-<name>-<slot>``: a cron's minute, or the interval's grid slot (seconds)."""
    if spec.every is None:
        slot = fired_at.astimezone(UTC).strftime("%Y%m%d%H%M")
    else:
        # Consecutive fires are at least one interval apart, so each gets its own
        # grid slot, while two fires of one slot (two beats, a redelivery) share it.
        start = int(fired_at.timestamp()) // spec.every * spec.every
        slot = datetime.fromtimestamp(start, UTC).strftime("%Y%m%d%H%M%S")
    return f"s-{spec.name}-{slot}"


def batch_submitter(client: redis.Redis, store: ArtifactStore | None = None) -> Submitter:
    """The real submitter: ``pipelines.batches.submit.submit_batch`` on ``client``."""
    def submit(spec: ScheduleSpec, batch_id: str) -> SubmitReport:
        return submit_batch(
            client, source=spec.csv,
            pipeline=get_pipeline(spec.pipeline, get_settings().pipelines_file),
            batch_id=batch_id, skip_invalid=spec.skip_invalid, max_spend=spec.max_spend,
            store=store, origin="schedule",
            prices=PriceTable.load(get_settings().prices_file),
        )

    return submit


def fire_schedule(
    store: ScheduleStore, name: str, *, fired_at: datetime, submit: Submitter,
    origin: Literal["beat", "run-now"] = "beat",
) -> RunRecord | None:
    """Submit schedule ``name``'s batch for the fire at ``fired_at`` and record the run.

    Returns None when there is nothing to run: the schedule is gone or disabled, or
    (beat fires of a cron) no slot of its own timezone fell since the last run.
    """
    spec = store.get(name)
    if spec is None or (origin == "beat" and not _due(store, spec, fired_at)):
        log.info("schedule_skipped", schedule=name, fired_at=fired_at.isoformat(),
                 reason="missing" if spec is None else "not_due")
        return None
    run = _submit(spec, batch_id_for(spec, fired_at), fired_at, origin, submit)
    store.record_run(name, run)
    log.info("schedule_fired", schedule=name, batch_id=run.batch_id, status=run.status,
             accepted=run.accepted, rejected=run.rejected, origin=origin)
    return run


def _due(store: ScheduleStore, spec: ScheduleSpec, fired_at: datetime) -> bool:
    if not spec.enabled:
        return False
    state = store.state(spec.name)
    if state is None:
        return False
    since = state.last_run.fired_at if state.last_run is not None else state.armed_at
    return due_since(spec, since, fired_at)


def _submit(
    spec: ScheduleSpec, batch_id: str, fired_at: datetime,
    origin: Literal["beat", "run-now"], submit: Submitter,
) -> RunRecord:
    try:
        report = submit(spec, batch_id)
    except Exception as exc:
        # A refused CSV or a broken pipeline is one failed run in the schedule's
        # history; raising would only repeat the same failure on every fire.
        log.warning("schedule_run_failed", schedule=spec.name, batch_id=batch_id,
                    error=f"{type(exc).__name__}: {exc}")
        return RunRecord(fired_at=fired_at, origin=origin, batch_id=batch_id, status="failed",
                         errors=[f"{type(exc).__name__}: {exc}"])
    refused = report.refused
    status: Literal["submitted", "resumed", "failed"] = (
        "failed" if refused else "resumed" if report.resumed else "submitted")
    errors = [_row_error(error) for error in report.errors[:_ERRORS_KEPT]]
    return RunRecord(
        fired_at=fired_at, origin=origin, batch_id=report.batch_id, status=status,
        accepted=report.accepted, rejected=report.rejected,
        errors=[refused, *errors] if refused else errors,
    )


def _row_error(error: RowError) -> str:
    where = f"row {error.row}" + (f", {error.column}" if error.column else "")
    return f"{where}: {error.message}"


def fired_at_of(request: Any) -> datetime:
    """When the fire message was published (its header), else now."""
    stamped = getattr(request, FIRED_AT_HEADER, None)
    return datetime.fromisoformat(stamped) if isinstance(stamped, str) else datetime.now(UTC)


def _fire(self: Task, name: str) -> dict[str, Any] | None:
    """Beat's entry point: submit schedule ``name``'s batch (see :func:`fire_schedule`)."""
    services = get_services()
    store = ScheduleStore(services.redis, services.settings)
    try:
        run = fire_schedule(store, name, fired_at=fired_at_of(self.request),
                            submit=batch_submitter(services.redis, services.store))
    finally:
        store.close()
    return None if run is None else run.model_dump(mode="json")


fire: Task = app.task(bind=True, name=FIRE_TASK)(_fire)


def _stamp_fired_at(sender: str | None = None, headers: dict[str, Any] | None = None,
                    body: Any = None, **_: Any) -> None:
    # Stamped at publish: a message the worker runs late still names its own slot.
    if sender == FIRE_TASK and headers is not None:
        headers.setdefault(FIRED_AT_HEADER, _publish_time(body).isoformat())


def _publish_time(body: Any) -> datetime:
    """In beat: the entry's ``last_run_at``, which beat saved just before publishing.

    Beat fires only when ``now >= last_run_at + every``, so consecutive ``last_run_at``
    values are at least one interval apart and each fire gets its own grid slot; the
    wall clock read a moment later may land a few microseconds short of that.
    """
    if _beat_process["started"]:
        try:
            key = ensure_conf(app).key_prefix + ENTRY_PREFIX + str(body[0][0])
            last = RedBeatSchedulerEntry.load_meta(key, app)["last_run_at"]
        except (LookupError, TypeError, redis.RedisError):
            last = None
        if isinstance(last, datetime):
            return last
    return datetime.now(UTC)


def _on_beat_start(**_: Any) -> None:
    _beat_process["started"] = True
    settings = get_settings()
    if not (settings.schedules_file and settings.redis_url):
        return
    client = redis.Redis.from_url(settings.redis_url)
    store = ScheduleStore(client, settings)
    try:
        report = sync_file(store, Path(settings.schedules_file))
        log.info("schedules_synced", file=settings.schedules_file, created=report.created,
                 updated=report.updated, removed=report.removed)
    except ScheduleConfigError as exc:
        # Beat keeps running on what Redis holds; the log says what to fix.
        log.error("schedules_file_invalid", file=settings.schedules_file, error=str(exc))
    finally:
        store.close()
        client.close()


app.conf.update(beat_config(get_settings()))
signals.before_task_publish.connect(_stamp_fired_at, weak=False)
signals.beat_init.connect(_on_beat_start, weak=False)
