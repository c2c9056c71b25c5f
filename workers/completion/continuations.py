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
* ``cb:<callback_id>`` — api task id a signed callback URL belongs to.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from pydantic import BaseModel, Field

from workers.constants import INFLIGHT_PREFIX

_CLAIM_LUA = (Path(__file__).with_name("claim.lua")).read_text()

# Celery request attributes that decide what happens after a task returns.
DELIVERY_FIELDS = (
    "chain", "callbacks", "errbacks", "group", "group_index", "chord", "root_id", "parent_id",
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
        self._claim = client.register_script(_CLAIM_LUA)

    def _task_key(self, api_task_id: str) -> str:
        return f"{self._prefix}task:{api_task_id}"

    def _due_key(self, token_id: str) -> str:
        return f"{self._prefix}due:{token_id}"

    def _cb_key(self, callback_id: str) -> str:
        return f"{self._prefix}cb:{callback_id}"

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

    def claim(self, api_task_id: str, token_id: str) -> Continuation | None:
        """Atomically take the continuation; ``None`` when another claimer won."""
        raw = self._claim(keys=[self._task_key(api_task_id), self._due_key(token_id)],
                          args=[api_task_id])
        return None if raw is None else Continuation.model_validate_json(raw)

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
