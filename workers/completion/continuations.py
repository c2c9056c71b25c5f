"""Continuations: what a step left behind when it handed its wait to the provider.

A step task submits in async mode and then *ends* (Celery ``Ignore``) instead of
holding its worker slot for the minutes a song takes. Before it ends it saves a
:class:`Continuation`: its own Celery task id and the delivery options Celery
needs to carry on (the rest of the chain, links, group and chord membership).
When the provider reports the task finished, whoever learns it first (the
callback receiver or the poller) *claims* the continuation — an atomic
get-and-delete, so a duplicated callback racing the poller resumes it once — and
:func:`resume` applies the ``collect`` task under the original task id with the
saved options. Celery's own result and chain machinery then continue as if the
step had never paused.

Redis layout (all under ``constants.INFLIGHT_PREFIX``):

* ``task:<api_task_id>`` — the continuation JSON;
* ``due:<token_id>`` — sorted set of api task ids scored by when to poll next;
* ``cb:<callback_id>`` — api task id a signed callback URL belongs to;
* ``claimed:<api_task_id>`` — the continuation after its claim, kept until the
  step's ``collect`` reports it :meth:`~ContinuationStore.finished`;
* ``resumed:<token_id>`` — sorted set of claimed api task ids scored by claim time.

A ``collect`` message can be lost (a worker SIGKILLed right after the broker handed
it over); the claimed copy lets the poller find such a step and put its
continuation back (:meth:`~ContinuationStore.unclaim`) instead of leaving it
waiting forever.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis
from pydantic import BaseModel, Field

from workers._redis import register_scripts
from workers.constants import INFLIGHT_PREFIX

CLAIMED_TTL_S = 7 * 24 * 3600
"""A claimed copy no collect reported finished is forgotten after this long."""

# Celery request attributes that decide what happens after a task returns.
DELIVERY_FIELDS = (
    "chain",
    "callbacks",
    "errbacks",
    "group",
    "group_index",
    "chord",
    "root_id",
    "parent_id",
)


class Continuation(BaseModel):
    """Everything needed to finish a paused step, saved as JSON in Redis."""

    celery_task_id: str
    api_task_id: str
    token_id: str
    step_key: str
    action: str
    submitted_at: float
    deadline_at: float
    callback_id: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    delivery: dict[str, Any] = Field(default_factory=dict)


def delivery_from_request(request: Any) -> dict[str, Any]:
    """Extract the chain/group/chord options from a Celery task request."""
    return {name: getattr(request, name, None) for name in DELIVERY_FIELDS}


class ContinuationStore:
    """Saves, schedules and atomically claims continuations in Redis."""

    def __init__(self, client: redis.Redis, *, prefix: str = INFLIGHT_PREFIX) -> None:
        self._redis = client
        self._prefix = prefix
        scripts = register_scripts(client, "workers.completion")
        self._claim = scripts["claim"]
        self._unclaim = scripts["unclaim"]

    def _task_key(self, api_task_id: str) -> str:
        return f"{self._prefix}task:{api_task_id}"

    def _due_key(self, token_id: str) -> str:
        return f"{self._prefix}due:{token_id}"

    def _cb_key(self, callback_id: str) -> str:
        return f"{self._prefix}cb:{callback_id}"

    def _claimed_key(self, api_task_id: str) -> str:
        return f"{self._prefix}claimed:{api_task_id}"

    def _resumed_key(self, token_id: str) -> str:
        return f"{self._prefix}resumed:{token_id}"

    def save(self, cont: Continuation, *, first_poll_at: float) -> None:
        """Record ``cont`` and schedule its first poll at ``first_poll_at`` (epoch s)."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(self._task_key(cont.api_task_id), cont.model_dump_json())
        pipe.zadd(self._due_key(cont.token_id), {cont.api_task_id: first_poll_at})
        if cont.callback_id is not None:
            ttl_s = max(60, int(cont.deadline_at - time.time()) + 3600)
            pipe.set(self._cb_key(cont.callback_id), cont.api_task_id, ex=ttl_s)
        pipe.execute()

    def get(self, api_task_id: str) -> Continuation | None:
        """Return the continuation of ``api_task_id`` without claiming it."""
        raw = self._redis.get(self._task_key(api_task_id))
        return None if raw is None else Continuation.model_validate_json(raw)

    def claim(
        self, api_task_id: str, token_id: str, *, at: float | None = None
    ) -> Continuation | None:
        """Atomically take the continuation; ``None`` when another claimer won.

        ``at`` (epoch s, default now) is the claim time :meth:`stale_claims` compares.
        """
        keys = [
            self._task_key(api_task_id),
            self._due_key(token_id),
            self._resumed_key(token_id),
            self._claimed_key(api_task_id),
        ]
        when = time.time() if at is None else at
        raw = self._claim(keys=keys, args=[api_task_id, when, CLAIMED_TTL_S])
        return None if raw is None else Continuation.model_validate_json(raw)

    def pending(self, api_task_id: str) -> bool:
        """Whether ``api_task_id`` waits for the provider or for its claimed collect."""
        keys = (self._task_key(api_task_id), self._claimed_key(api_task_id))
        return bool(self._redis.exists(*keys))

    def finished(self, api_task_id: str, token_id: str) -> None:
        """The step's collect ended (done or failed): forget the claimed copy."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self._claimed_key(api_task_id))
        pipe.zrem(self._resumed_key(token_id), api_task_id)
        pipe.execute()

    def stale_claims(self, token_id: str, *, claimed_before: float, limit: int) -> list[str]:
        """Api task ids claimed before ``claimed_before`` whose collect never finished."""
        ids = self._redis.zrangebyscore(
            self._resumed_key(token_id), "-inf", claimed_before, start=0, num=limit
        )
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    def unclaim(self, api_task_id: str, token_id: str, *, poll_at: float) -> bool:
        """Put a claimed continuation back to be polled at ``poll_at``; False if none."""
        keys = [
            self._claimed_key(api_task_id),
            self._resumed_key(token_id),
            self._task_key(api_task_id),
            self._due_key(token_id),
        ]
        return bool(self._unclaim(keys=keys, args=[api_task_id, poll_at]))

    def api_task_for_callback(self, callback_id: str) -> str | None:
        """The api task id a callback URL was issued for, if it is still pending."""
        raw = self._redis.get(self._cb_key(callback_id))
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)

    def due(self, token_id: str, *, now: float, limit: int) -> list[str]:
        """Up to ``limit`` api task ids of ``token_id`` whose poll time has come, oldest first."""
        ids = self._redis.zrangebyscore(self._due_key(token_id), "-inf", now, start=0, num=limit)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    def reschedule(self, token_id: str, next_polls: dict[str, float]) -> None:
        """Move still-running tasks to their next poll time (only those still in flight)."""
        if next_polls:
            self._redis.zadd(self._due_key(token_id), next_polls, xx=True)

    def in_flight(self, token_id: str) -> int:
        """How many continuations of ``token_id`` wait for the provider."""
        return int(self._redis.zcard(self._due_key(token_id)))

    def token_ids(self) -> list[str]:
        """Every token id with continuations in flight."""
        pattern = f"{self._prefix}due:*"
        cut = len(f"{self._prefix}due:")
        return sorted(
            (k.decode() if isinstance(k, bytes) else str(k))[cut:]
            for k in self._redis.scan_iter(match=pattern, count=500)
        )

    def load_many(self, api_task_ids: Sequence[str]) -> list[Continuation | None]:
        """Fetch several continuations in one round trip."""
        if not api_task_ids:
            return []
        raws = self._redis.mget([self._task_key(i) for i in api_task_ids])
        return [None if r is None else Continuation.model_validate_json(r) for r in raws]
