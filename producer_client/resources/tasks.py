"""``POST /producer/tasks``: poll one task, several, or list recent ones (CONTRACT §4).

Polls are free and change nothing server-side, so the send loop may retry them on any
transient error.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import anyio

from producer_client._exceptions import FieldError, ParamsValidationError, WaitTimeoutError
from producer_client._http import parse_as
from producer_client.resources._base import AsyncResource, SyncResource, require_text
from producer_client.types.tasks import TaskBatch, TaskOutcome, TaskRecord

TASKS_PATH = "/producer/tasks"
DEFAULT_POLL_INTERVAL_S = 5.0
DEFAULT_WAIT_TIMEOUT_S = 600.0


def retrieve_body(task_id: str) -> dict[str, Any]:
    """Body of a single-task poll."""
    return {"action": "retrieve", "id": require_text("id", task_id, context="retrieve")}


def retrieve_batch_body(ids: Sequence[str], **filters: Any) -> dict[str, Any]:
    """Body of a batch poll; no ids lists recent tasks (with the optional filters)."""
    if isinstance(ids, str):
        # A bare string is a Sequence[str] too; sending its characters is never meant.
        raise ParamsValidationError([FieldError("ids", "must be a sequence of task ids")])
    body: dict[str, Any] = {"action": "retrieve_batch"}
    if ids:
        body["ids"] = [require_text("ids", i, context="retrieve_batch") for i in ids]
    for name in ("limit", "offset"):
        _check_count(name, filters.get(name))
    body.update({k: v for k, v in filters.items() if v is not None})
    return body


def _check_count(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        error = FieldError(name, "must be a non-negative integer")
        raise ParamsValidationError([error], action="retrieve_batch")


def record_or_none(reply: dict[str, Any]) -> TaskRecord | None:
    """The record in a retrieve reply; None for ``{}`` (unknown id, CONTRACT §4.2)."""
    return parse_as(TaskRecord, reply) if reply else None


class Tasks(SyncResource):
    """Task records: ``retrieve``, ``retrieve_batch`` and a simple ``wait``."""

    def retrieve(self, task_id: str) -> TaskRecord | None:
        """One task's record, or None when the API does not know the id."""
        reply = self._http.post(TASKS_PATH, retrieve_body(task_id), idempotent=True)
        return record_or_none(reply)

    def retrieve_batch(
        self,
        ids: Sequence[str] = (),
        *,
        limit: int | None = None,
        offset: int | None = None,
        created_at_min: float | None = None,
        created_at_max: float | None = None,
        type: str | None = None,
    ) -> TaskBatch:
        """Several tasks in one request; with no ``ids``, the most recent tasks."""
        body = retrieve_batch_body(
            ids,
            limit=limit,
            offset=offset,
            created_at_min=created_at_min,
            created_at_max=created_at_max,
            type=type,
        )
        return parse_as(TaskBatch, self._http.post(TASKS_PATH, body, idempotent=True))

    def wait(
        self,
        task_id: str,
        *,
        interval_s: float = DEFAULT_POLL_INTERVAL_S,
        timeout_s: float = DEFAULT_WAIT_TIMEOUT_S,
    ) -> TaskRecord:
        """Poll until the task is done and return its record, succeeded or failed.

        Blocks the calling thread; workers use the central poller instead. An unknown id
        is treated as not yet visible. Raises :class:`WaitTimeoutError` after
        ``timeout_s``; errors of a poll (after the client's own retries) propagate.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            record = self.retrieve(task_id)
            if record is not None and record.outcome is not TaskOutcome.PENDING:
                return record
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(task_id=task_id, timeout_s=timeout_s, last=record)
            time.sleep(min(interval_s, remaining))


class AsyncTasks(AsyncResource):
    """Async twin of :class:`Tasks`."""

    async def retrieve(self, task_id: str) -> TaskRecord | None:
        """One task's record, or None when the API does not know the id."""
        reply = await self._http.post(TASKS_PATH, retrieve_body(task_id), idempotent=True)
        return record_or_none(reply)

    async def retrieve_batch(
        self,
        ids: Sequence[str] = (),
        *,
        limit: int | None = None,
        offset: int | None = None,
        created_at_min: float | None = None,
        created_at_max: float | None = None,
        type: str | None = None,
    ) -> TaskBatch:
        """Several tasks in one request; with no ``ids``, the most recent tasks."""
        body = retrieve_batch_body(
            ids,
            limit=limit,
            offset=offset,
            created_at_min=created_at_min,
            created_at_max=created_at_max,
            type=type,
        )
        return parse_as(TaskBatch, await self._http.post(TASKS_PATH, body, idempotent=True))

    async def wait(
        self,
        task_id: str,
        *,
        interval_s: float = DEFAULT_POLL_INTERVAL_S,
        timeout_s: float = DEFAULT_WAIT_TIMEOUT_S,
    ) -> TaskRecord:
        """Poll until the task is done and return its record, succeeded or failed."""
        deadline = time.monotonic() + timeout_s
        while True:
            record = await self.retrieve(task_id)
            if record is not None and record.outcome is not TaskOutcome.PENDING:
                return record
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(task_id=task_id, timeout_s=timeout_s, last=record)
            await anyio.sleep(min(interval_s, remaining))
