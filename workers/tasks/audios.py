"""One Celery task per ``/producer/audios`` action, plus ``collect``.

Call with keyword params; inside a chain the previous step's result arrives as
the first positional argument::

    chain(generate.s(params={"prompt": "lo-fi rain"}), extend.s(), stems.s()).apply_async()

Each task submits in async mode and ends at once (state ``AWAITING_PROVIDER``);
``collect`` later runs under the same task id and returns the step's result.
"""

from __future__ import annotations

import contextlib
from typing import Any

from celery import Task, shared_task

from workers.app import ProducerTask
from workers.completion.continuations import Continuation
from workers.completion.outcome import ProviderOutcome
from workers.completion.resume import COLLECT_TASK_NAME
from workers.logging import bind_task_context
from workers.operations.actions import AUDIOS_ACTIONS
from workers.operations.collect import collect_step, fail_collect
from workers.operations.errors import StepFailed
from workers.operations.submit import Finished, StepCall, submit_audio_step
from workers.runtime import Services
from workers.tasks.base import EXPECTED_FAILURES, run_step, step_task

TASKS: dict[str, Task] = {
    action: step_task(
        action,
        submit_audio_step,
        f"Submit a ``{action}`` step and pause until the provider finishes it.",
    )
    for action in AUDIOS_ACTIONS
}

generate = TASKS["generate"]
cover = TASKS["cover"]
upload_cover = TASKS["upload_cover"]
extend = TASKS["extend"]
upload_extend = TASKS["upload_extend"]
variation = TASKS["variation"]
replace_section = TASKS["replace_section"]
upload_replace_section = TASKS["upload_replace_section"]
swap_vocals = TASKS["swap_vocals"]
swap_instrumentals = TASKS["swap_instrumentals"]
stems = TASKS["stems"]


def _collect(
    self: Task, outcome: dict[str, Any], continuation: dict[str, Any], **_: Any
) -> dict[str, Any]:
    """Store the finished step's files and return its result (runs under the step's id)."""
    cont = Continuation.model_validate(continuation)
    provider = ProviderOutcome.from_json(outcome)
    bind_task_context(task_id=cont.celery_task_id, action=cont.action, api_task_id=cont.api_task_id)
    call = StepCall(
        action=cont.action,
        params={},
        key=cont.step_key,
        context={},
        celery_task_id=cont.celery_task_id,
        delivery=cont.delivery,
    )

    def give_up(svc: Services, failed: StepFailed) -> None:
        # Out of retries (a download kept breaking): end the step as completely as a
        # permanent failure does; fail_collect raises the failure, run_step reports it.
        with contextlib.suppress(StepFailed):
            fail_collect(svc, cont, provider, failed)

    return run_step(
        self, call, lambda svc, _: Finished(collect_step(svc, provider, cont)), give_up=give_up
    )


collect: Task = shared_task(
    bind=True,
    name=COLLECT_TASK_NAME,
    acks_late=True,
    base=ProducerTask,
    throws=EXPECTED_FAILURES,
)(_collect)
