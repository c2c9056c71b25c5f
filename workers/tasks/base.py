"""What every step task shares: decoding a call, running it, deciding retries.

Tasks stay thin: they turn Celery's request into a :class:`StepCall`, bind the
log context, call a plain function in :mod:`workers.operations`, and translate
its answer — a result, a pause (``Ignore`` after marking the step
``AWAITING_PROVIDER``), a wait for capacity (re-queue), a transient error
(backoff retry) or a permanent failure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from celery import Task, shared_task
from celery.exceptions import Ignore

from workers.app import ProducerTask
from workers.completion.continuations import delivery_from_request
from workers.ledger import State, step_key
from workers.logging import bind_task_context
from workers.operations.errors import StepFailed, TransientError, backoff_s, classify
from workers.operations.params import Prev, complete_params
from workers.operations.results import carry_outputs
from workers.operations.submit import Finished, Outcome, Paused, StepCall, Wait
from workers.runtime import Services, get_services

log = structlog.get_logger(__name__)

AWAITING_PROVIDER = "AWAITING_PROVIDER"
"""Custom Celery state of a step whose song is rendering at the provider."""

EXPECTED_FAILURES = (StepFailed,)
"""A step's failure the error table decided: Celery logs it as expected, without traceback."""

# Waits for capacity re-queue the message; they are counted apart from error retries.
TRANSIENT_ATTEMPT_KW = "transient_attempt"


def make_call(
    task: Task, action: str, params: dict[str, Any], key: str | None, context: dict[str, Any]
) -> StepCall:
    """Build the :class:`StepCall` of the running task (idempotency key included)."""
    request = task.request
    if key is None:
        has_row = context.get("batch") is not None and context.get("row") is not None
        key = (
            step_key(str(context["batch"]), context["row"], str(context.get("step") or action))
            if has_row
            else f"task/{request.id}"
        )
    return StepCall(
        action=action,
        params=params,
        key=key,
        context=context,
        celery_task_id=str(request.id),
        delivery=delivery_from_request(request),
    )


GiveUp = Callable[[Services, StepFailed], None]
"""Ends a step whose transient failures ran out of retries (records it failed, frees all)."""


def run_step(
    task: Task,
    call: StepCall,
    operation: Callable[[Services, StepCall], Outcome],
    *,
    give_up: GiveUp | None = None,
) -> dict[str, Any]:
    """Run ``operation`` and turn its outcome into what Celery expects.

    ``give_up`` ends the step when its retries run out; by default the ledger records
    it failed (a step that holds more, like ``collect``, passes its own).
    """
    bind_task_context(
        task_id=call.celery_task_id,
        action=call.action,
        batch=call.context.get("batch"),
        row=call.context.get("row"),
    )
    svc = get_services()  # once per run; passed down, never looked up again below
    try:
        outcome = operation(svc, call)
    except Exception as exc:
        raise _retry_or_fail(svc, task, call, exc, give_up or _mark_failed(call)) from exc
    return _deliver(svc, task, call, outcome)


def _deliver(svc: Services, task: Task, call: StepCall, outcome: Outcome) -> dict[str, Any]:
    if isinstance(outcome, Finished):
        log.info("step_finished", step_key=call.key, api_task_id=outcome.result.get("api_task_id"))
        return outcome.result
    if isinstance(outcome, Paused):
        task.update_state(
            state=AWAITING_PROVIDER, meta={"api_task_id": outcome.api_task_id, "step_key": call.key}
        )
        _restore_finished_state(svc, task, call)
        log.info(
            "step_submitted",
            step_key=call.key,
            api_task_id=outcome.api_task_id,
            adopted=outcome.adopted,
        )
        raise Ignore()
    assert isinstance(outcome, Wait)
    countdown = _countdown(svc, outcome.countdown_s)
    log.info(
        "step_waiting", step_key=call.key, reason=outcome.reason, countdown_s=round(countdown, 3)
    )
    # Re-publish rather than Task.retry: a wait for capacity is not a failure, must not
    # spend the task's max_retries (Celery's default of 3 failed busy batches) and
    # writes no RETRY state. Same id, arguments and chain; this run ends with Ignore.
    task.signature_from_request(countdown=countdown).apply_async()
    raise Ignore()


def _restore_finished_state(svc: Services, task: Task, call: StepCall) -> None:
    """Undo the AWAITING_PROVIDER write when the step finished meanwhile.

    A redelivered step can pause again while its ``collect`` (resumed from the
    continuation) is already done: that collect's SUCCESS, written just before, would
    be overwritten and ``.get()`` would wait forever. The ledger knows better.
    """
    entry = svc.ledger.get(call.key)
    if entry is None or entry.state not in (State.DONE, State.FAILED):
        return
    if entry.state is State.DONE:
        task.backend.store_result(call.celery_task_id, entry.result, "SUCCESS")
    else:
        failed = StepFailed(entry.error_code or "failed", entry.error_message or "step failed")
        task.backend.store_result(call.celery_task_id, failed, "FAILURE")


def _countdown(svc: Services, seconds: float) -> float:
    # On Redis an ETA message is redelivered once it is held longer than the visibility
    # timeout, so a countdown must stay well below it (it is short only in tests).
    return max(0.0, min(seconds, svc.settings.visibility_timeout_s / 2))


def _mark_failed(call: StepCall) -> GiveUp:
    def give_up(svc: Services, failed: StepFailed) -> None:
        svc.ledger.mark_failed(call.key, code=failed.code, message=failed.message)

    return give_up


def _retry_or_fail(
    svc: Services, task: Task, call: StepCall, exc: Exception, give_up: GiveUp
) -> BaseException:
    verdict = classify(exc)
    if isinstance(verdict, StepFailed):
        log.warning("step_failed", step_key=call.key, code=verdict.code, message=verdict.message)
        return verdict
    attempt = int(task.request.kwargs.get(TRANSIENT_ATTEMPT_KW) or 0)
    limit = svc.settings.max_transient_retries
    if attempt >= limit:
        failed = StepFailed(verdict.code, f"gave up after {attempt} retries: {verdict.message}")
        give_up(svc, failed)
        log.warning("step_failed", step_key=call.key, code=failed.code, message=failed.message)
        return failed
    delay = _countdown(svc, backoff_s(attempt))
    log.info(
        "step_retry",
        step_key=call.key,
        code=verdict.code,
        attempt=attempt + 1,
        countdown_s=round(delay, 2),
    )
    kwargs = {**task.request.kwargs, TRANSIENT_ATTEMPT_KW: attempt + 1}
    # max_retries=None would mean the task's default (3), not "unlimited": our own
    # attempt count above is the limit, so Celery's must not be lower.
    retry: BaseException = task.retry(
        countdown=delay, max_retries=limit + 1, kwargs=kwargs, exc=verdict
    )
    return retry


def step_task(action: str, operation: Callable[[Services, StepCall], Outcome], doc: str) -> Task:
    """Register ``producer.<action>``: complete params from ``prev``, then run ``operation``.

    The task is shared (``celery.shared_task``): it attaches to the app
    :mod:`pipelines.app` builds, and refuses to be sent from any other
    (:class:`~workers.app.ProducerTask`).

    Every step task has the same call convention ``(prev=None, params=None, key=None,
    context=None)``: inside a chain the previous step's result arrives as ``prev``.
    """

    def step(
        self: Task,
        prev: Prev = None,
        params: dict[str, Any] | None = None,
        key: str | None = None,
        context: dict[str, Any] | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        full = complete_params(action, params, prev)
        call = make_call(self, action, full, key, carry_outputs(context, prev))
        return run_step(self, call, operation)

    step.__name__ = action
    step.__doc__ = doc
    task: Task = shared_task(
        bind=True,
        name=f"producer.{action}",
        acks_late=True,
        base=ProducerTask,
        throws=EXPECTED_FAILURES,
    )(step)
    return task


__all__ = [
    "AWAITING_PROVIDER",
    "EXPECTED_FAILURES",
    "GiveUp",
    "StepFailed",
    "TransientError",
    "make_call",
    "run_step",
    "step_task",
]
