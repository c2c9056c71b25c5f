"""Re-queue a Celery task the limiter told to wait: the only Celery-aware part of the limiter.

A task that gets no token must not sleep in its worker slot (that caps the fleet
at its pool size) and must not burn its retries (``Task.retry`` counts every
call against ``max_retries`` and writes a RETRY state). So it re-publishes its
own message -- same task id, arguments, remaining chain, callbacks and retry
count -- with a short countdown, and ends this run with ``Ignore`` (no state
written). Use it from a bound task::

    decision = limiter.acquire(token_id, EndpointClass.SUBMIT)
    if not decision.granted:
        requeue(self, decision)        # raises Ignore
"""

from __future__ import annotations

from typing import Any, NoReturn

from celery.exceptions import Ignore

from workers.constants import MAX_REQUEUE_COUNTDOWN_S
from workers.ratelimit.limiter import Decision


def requeue(task: Any, decision: Decision, *, cap_s: float = MAX_REQUEUE_COUNTDOWN_S) -> NoReturn:
    """Publish the running task again for ``decision.countdown_s(cap_s)`` and stop this run.

    ``task`` is the bound task (``self``). The countdown is the wait spread by a
    little jitter (so waiters do not return all at once) and capped at
    ``cap_s``: a long pause is waited out in several short hops, because an ETA
    message sits in a worker's memory and, on Redis, is redelivered once it
    outlives the visibility timeout.
    """
    task.signature_from_request(countdown=decision.countdown_s(cap_s)).apply_async()
    raise Ignore()
