"""Build the poller and the callback receiver from a worker's :class:`Services`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from celery import Celery
from starlette.applications import Starlette

from producer_client import RateLimitError, TaskRecord
from workers.completion.callbacks import create_receiver_app
from workers.completion.continuations import Continuation
from workers.completion.outcome import ProviderOutcome
from workers.completion.poller import Poller
from workers.completion.resume import resume
from workers.ratelimit import EndpointClass
from workers.runtime import Services


def poller_for(svc: Services, app: Celery) -> Poller:
    """The poller of ``svc``'s token: polls within the shared poll budget, resumes on ``app``."""

    def fetch(ids: Sequence[str]) -> list[TaskRecord]:
        # Polls feed the shared poll rate like submissions feed theirs: a 429 (request
        # timing jitter can bring two polls closer than 1 s at the provider) lowers it
        # for every poller, successes bring it back up to the ceiling.
        try:
            items = svc.client.tasks.retrieve_batch(list(ids)).items
        except RateLimitError as exc:
            svc.limiter.report_throttled(
                svc.token_id, EndpointClass.POLL, retry_after_s=exc.retry_after_s
            )
            raise
        svc.limiter.report_success(svc.token_id, EndpointClass.POLL)
        return items

    def take_poll_budget() -> float:
        decision = svc.limiter.acquire(svc.token_id, EndpointClass.POLL)
        return 0.0 if decision.granted else max(decision.wait_s, 0.001)

    def apply(cont: Continuation, outcome: ProviderOutcome) -> None:
        resume(app, cont, outcome)

    settings = svc.settings
    return Poller(
        store=svc.continuations,
        token_id=svc.token_id,
        fetch=fetch,
        take_poll_budget=take_poll_budget,
        resume=apply,
        batch_size=settings.poll_batch_size,
        first_poll_after_s=settings.poll_first_after_s,
        max_interval_s=settings.poll_max_interval_s,
        # A collect still unfinished after twice the visibility timeout was lost, not
        # slow: by then the broker would have redelivered it from a dead worker.
        reclaim_after_s=2.0 * settings.visibility_timeout_s,
    )


def receiver_for(svc: Services, app: Celery) -> Starlette:
    """The callback receiver ASGI app for ``svc``; needs ``PRODUCER_CALLBACK_SECRET``."""
    if svc.callback_secret is None:
        raise ValueError("the callback receiver needs PRODUCER_CALLBACK_SECRET")
    return create_receiver_app(
        svc.continuations,
        lambda cont, outcome: resume(app, cont, outcome),
        svc.callback_secret,
        confirm_with_provider(svc),
    )


# How long a callback may wait for the shared poll budget before it is left to the poller.
CONFIRM_BUDGET_WAIT_S = 5.0


def confirm_with_provider(
    svc: Services,
    *,
    wait_s: float = CONFIRM_BUDGET_WAIT_S,
    sleep: Callable[[float], None] = time.sleep,
) -> Callable[[str], ProviderOutcome | None]:
    """Ask the provider about one task, within the poll budget: its outcome if finished.

    A callback body is never trusted: the outcome collected is built from the record
    ``tasks.retrieve`` returns. None when the task is unknown, still running, or the
    poll budget has no room within ``wait_s`` (the poller finishes it then).
    """

    def confirm(api_task_id: str) -> ProviderOutcome | None:
        deadline = time.monotonic() + wait_s
        while True:
            decision = svc.limiter.acquire(svc.token_id, EndpointClass.POLL)
            if decision.granted:
                break
            pause = max(decision.wait_s, 0.001)
            if time.monotonic() + pause > deadline:
                return None
            sleep(pause)
        try:
            record = svc.client.tasks.retrieve(api_task_id)
        except RateLimitError as exc:
            svc.limiter.report_throttled(
                svc.token_id, EndpointClass.POLL, retry_after_s=exc.retry_after_s
            )
            raise
        svc.limiter.report_success(svc.token_id, EndpointClass.POLL)
        if record is None or record.id != api_task_id:
            return None
        name = str(record.outcome.value)
        if name == "pending":
            return None
        return ProviderOutcome.from_record(name, record.model_dump(mode="json"), source="callback")

    return confirm
