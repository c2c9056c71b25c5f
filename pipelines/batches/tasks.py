"""The row-completion tasks of batches (shared tasks: :mod:`pipelines.app` lists this module).

The feeder ends every row's canvas with ``producer.batch.row_done`` and links
``producer.batch.row_failed`` as its errback. Both record the row once
(a duplicate canvas after a resume changes nothing), settle the row's spend and
feed the next row at once, so the window refills without waiting for the feeder
service's next round.

``row_failed`` has the ``(request, exc, traceback)`` signature, so the worker whose
step failed runs it in place (no message); a worker that lacks it sends it as a task
with the failed task's id instead, which it handles too. Start workers with
``celery -A pipelines.app worker`` so these tasks are registered.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import redis
import structlog
from celery import Celery, Task, current_app, shared_task
from redis.exceptions import RedisError

from pipelines.batches.failures import failure_of
from pipelines.batches.feeder import ROW_DONE_TASK, ROW_FAILED_TASK, Feeder
from pipelines.batches.settle import settle_ended_row
from pipelines.batches.state import BatchInfo, BatchState
from pipelines.spend.prices import PriceTable
from workers.app import ProducerTask
from workers.runtime import Services, get_services
from workers.settings import get_settings

log = structlog.get_logger(__name__)

_lock = threading.Lock()
_feeder: tuple[int, int, Feeder] | None = None


def process_feeder() -> Feeder:
    """This process's feeder, built from its services (rebuilt after a fork or new services)."""
    global _feeder
    svc = get_services()
    # In a worker the current app is the worker's own (pipelines.app, or the app
    # `producer-batch run` built).
    app = current_app._get_current_object()
    with _lock:
        if _feeder is None or _feeder[:2] != (os.getpid(), id(svc)) or _feeder[2].app is not app:
            _feeder = (os.getpid(), id(svc), feeder_for(svc, app))
        return _feeder[2]


def feeder_for(svc: Services, app: Celery, *, window: int | None = None) -> Feeder:
    """A feeder over ``svc``'s Redis, limiter and token sending through ``app``, with the
    configured global cap."""
    prices = PriceTable.load(svc.settings.prices_file)
    cap = prices.parse_cap(svc.settings.global_spend_cap)
    return Feeder(
        svc.redis,
        app,
        limiter=svc.limiter,
        token_id=svc.token_id,
        prices=prices,
        global_cap=cap,
        window=window,
    )


def _row_done(_result: Any = None, *, batch_id: str, row: int, attempt: int, **_: Any) -> bool:
    """The row's last step succeeded: record it done, settle its spend, feed the next."""
    feeder = process_feeder()
    recorded = feeder.row_ended(batch_id, row)
    log.info("batch_row_done", batch_id=batch_id, row=row, attempt=attempt, recorded=recorded)
    return recorded


def _row_failed(
    request: Any = None,
    exc: Any = None,
    traceback: Any = None,
    *,
    batch_id: str,
    row: int,
    attempt: int,
    **_: Any,
) -> bool:
    """A step of the row failed for good: record the failure (step, code, message) once."""
    del request, traceback
    try:
        feeder = process_feeder()
    except Exception as services_error:
        # The services could not be built (e.g. no API token): the step failed for the
        # same reason. The row must still end, or it stays `running` for ever.
        return _record_failure_bare(batch_id, row, attempt, exc, services_error)
    info = feeder.info(batch_id)
    plan: list[tuple[str, str]] = info.plan if isinstance(info, BatchInfo) else []
    failure = failure_of(feeder.state.redis, batch_id, row, plan, exc)
    recorded = feeder.row_ended(batch_id, row, failure=failure)
    log.info(
        "batch_row_failed",
        batch_id=batch_id,
        row=row,
        attempt=attempt,
        recorded=recorded,
        **failure,
    )
    return recorded


def _record_failure_bare(
    batch_id: str, row: int, attempt: int, exc: Any, services_error: Exception
) -> bool:
    """End a failed row with Redis alone (this worker's result backend), no services."""
    client = redis.Redis.from_url(current_app._get_current_object().conf.result_backend)
    try:
        state = BatchState(client)
        record = state.record(batch_id)
        plan = BatchInfo.from_record(record).plan if record is not None else []
        failure = failure_of(client, batch_id, row, plan, exc)
        recorded, held = state.finish(batch_id, row, failure=failure)
        prices = PriceTable.load(get_settings().prices_file)
        settle_ended_row(client, batch_id, row, held, prices)
    finally:
        client.close()
    log.error(
        "batch_row_failed",
        batch_id=batch_id,
        row=row,
        attempt=attempt,
        recorded=recorded,
        services_error=f"{type(services_error).__name__}: {services_error}",
        **failure,
    )
    return recorded


# A Redis hiccup must not turn a finished row into a failed one: retry the bookkeeping.
row_done: Task = shared_task(
    name=ROW_DONE_TASK,
    acks_late=True,
    autoretry_for=(RedisError,),
    retry_backoff=True,
    max_retries=10,
    base=ProducerTask,
)(_row_done)
row_failed: Task = shared_task(name=ROW_FAILED_TASK, acks_late=True, base=ProducerTask)(_row_failed)
