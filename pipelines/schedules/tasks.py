"""The fire task: beat's ``producer.schedule.fire(name)`` submits the schedule's batch.

:func:`fire_schedule` submits the schedule's CSV as an ordinary batch and records the
run. The batch id comes from the moment the fire message was published (header
``producer_fired_at``, stamped by :mod:`pipelines.schedules.beat`), so a message
delivered twice, or a slot fired twice, lands on the same batch id and resumes it.
The task registers with ``celery.shared_task``; :mod:`pipelines.app` lists this module.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import redis
import structlog
from celery import Task, shared_task

from pipelines.batches.submit import SubmitReport, submit_batch
from pipelines.constants import FIRED_AT_HEADER, SCHEDULE_RUN_ERRORS_KEPT
from pipelines.schedules.spec import FIRE_TASK, ScheduleSpec, due_since
from pipelines.schedules.store import RunRecord, ScheduleStore
from pipelines.specs.canvas import RowError
from pipelines.specs.loader import get_pipeline
from pipelines.spend.prices import PriceTable
from workers.app import ProducerTask
from workers.runtime import get_services
from workers.settings import Settings
from workers.storage import ArtifactStore

log = structlog.get_logger(__name__)

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


def batch_submitter(
    client: redis.Redis, settings: Settings, store: ArtifactStore | None = None
) -> Submitter:
    """The real submitter: ``submit_batch`` on ``client``, ``settings``' pipelines and prices."""

    def submit(spec: ScheduleSpec, batch_id: str) -> SubmitReport:
        return submit_batch(
            client,
            source=spec.csv,
            pipeline=get_pipeline(
                spec.pipeline, settings.pipelines_file, max_steps=settings.max_steps_per_row
            ),
            batch_id=batch_id,
            skip_invalid=spec.skip_invalid,
            max_spend=spec.max_spend,
            store=store,
            origin="schedule",
            prices=PriceTable.load(settings.prices_file),
        )

    return submit


def fire_schedule(
    store: ScheduleStore,
    name: str,
    *,
    fired_at: datetime,
    submit: Submitter,
    origin: Literal["beat", "run-now"] = "beat",
) -> RunRecord | None:
    """Submit schedule ``name``'s batch for the fire at ``fired_at`` and record the run.

    Returns None when there is nothing to run: the schedule is gone or disabled, or
    (beat fires of a cron) no slot of its own timezone fell since the last run.
    """
    spec = store.get(name)
    if spec is None or (origin == "beat" and not _due(store, spec, fired_at)):
        log.info(
            "schedule_skipped",
            schedule=name,
            fired_at=fired_at.isoformat(),
            reason="missing" if spec is None else "not_due",
        )
        return None
    run = _submit(spec, batch_id_for(spec, fired_at), fired_at, origin, submit)
    store.record_run(name, run)
    log.info(
        "schedule_fired",
        schedule=name,
        batch_id=run.batch_id,
        status=run.status,
        accepted=run.accepted,
        rejected=run.rejected,
        origin=origin,
    )
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
    spec: ScheduleSpec,
    batch_id: str,
    fired_at: datetime,
    origin: Literal["beat", "run-now"],
    submit: Submitter,
) -> RunRecord:
    try:
        report = submit(spec, batch_id)
    except Exception as exc:
        # A refused CSV or a broken pipeline is one failed run in the schedule's
        # history; raising would only repeat the same failure on every fire.
        log.warning(
            "schedule_run_failed",
            schedule=spec.name,
            batch_id=batch_id,
            error=f"{type(exc).__name__}: {exc}",
        )
        return RunRecord(
            fired_at=fired_at,
            origin=origin,
            batch_id=batch_id,
            status="failed",
            errors=[f"{type(exc).__name__}: {exc}"],
        )
    refused = report.refused
    status: Literal["submitted", "resumed", "failed"] = (
        "failed" if refused else "resumed" if report.resumed else "submitted"
    )
    errors = [_row_error(error) for error in report.errors[:SCHEDULE_RUN_ERRORS_KEPT]]
    return RunRecord(
        fired_at=fired_at,
        origin=origin,
        batch_id=report.batch_id,
        status=status,
        accepted=report.accepted,
        rejected=report.rejected,
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
        submit = batch_submitter(services.redis, services.settings, services.store)
        run = fire_schedule(store, name, fired_at=fired_at_of(self.request), submit=submit)
    finally:
        store.close()
    return None if run is None else run.model_dump(mode="json")


fire: Task = shared_task(bind=True, name=FIRE_TASK, base=ProducerTask)(_fire)
