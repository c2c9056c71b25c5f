"""Resume a paused step: apply ``collect`` under the step's own Celery task id.

Sending ``collect`` with the original task id and the saved delivery options
(chain, links, group, chord) makes Celery store its result as the step's result
and carry the chain on, so ``chain(generate.s(), extend.s(), stems.s())
.apply_async().get()`` returns the stems result although no task ever waited.
"""

from __future__ import annotations

from celery import Celery

from workers.completion.continuations import Continuation
from workers.completion.outcome import ProviderOutcome

COLLECT_TASK_NAME = "producer.collect"


def resume(app: Celery, cont: Continuation, outcome: ProviderOutcome) -> None:
    """Publish ``collect(outcome, continuation)`` as the continuation of ``cont``.

    Both travel as JSON: ``outcome.to_json()`` and the continuation's model dump.
    """
    d = cont.delivery
    app.send_task(
        COLLECT_TASK_NAME,
        args=[outcome.to_json(), cont.model_dump(mode="json")],
        task_id=cont.celery_task_id,
        chain=d.get("chain"),
        link=d.get("callbacks"),
        link_error=d.get("errbacks"),
        group_id=d.get("group"),
        group_index=d.get("group_index"),
        chord=d.get("chord"),
        root_id=d.get("root_id"),
        parent_id=d.get("parent_id"),
    )
