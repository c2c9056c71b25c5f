"""Running generations: one event-loop timer per task, no thread, no sleeping coroutine.

:meth:`Runner.launch` counts the task against its token's in-flight cap and
arms ``loop.call_later``; when the timer fires :meth:`Runner._finish` writes
the final response, frees the slot, wakes a waiting sync request and hands
the body to the callback sender. A timer handle costs a few hundred bytes, so
thousands of tasks in flight are cheap.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from producer_emulator.faults.injector import FaultPlan
from producer_emulator.jobs.callbacks import CallbackSender
from producer_emulator.records import failure_body, success_body
from producer_emulator.state import EmulatorState, TaskRecord


@dataclass(frozen=True, slots=True)
class Job:
    """What a generation publishes when it ends."""

    item: dict[str, Any]
    plan: FaultPlan
    callback_url: str | None
    new_audio_ids: tuple[str, ...] = field(default_factory=tuple)


class Runner:
    """Completes generations on the server loop."""

    def __init__(self, state: EmulatorState, callbacks: CallbackSender) -> None:
        self._state = state
        self._callbacks = callbacks

    def launch(self, record: TaskRecord, job: Job, *, hold: bool) -> asyncio.Future[None] | None:
        """Start ``record``'s clock; return a future resolved at the end when ``hold``."""
        state = self._state
        wait_s = state.generation_wait_s()
        record.due_mono = record.start_mono + wait_s
        state.in_flight.add(record.token, record.id, record.due_mono)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] | None = None
        if hold:
            waiter = state.waiters[record.id] = loop.create_future()
        state.timers[record.id] = loop.call_later(wait_s, self._finish, record.id, job)
        return waiter

    def _finish(self, task_id: str, job: Job) -> None:
        state = self._state
        state.timers.pop(task_id, None)
        record = state.tasks.get(task_id)
        if record is None:
            return
        body = self._outcome(record, job)
        record.response = body
        record.finished_at = time.time()
        state.in_flight.remove(record.token, task_id)
        waiter = state.waiters.pop(task_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if job.callback_url is not None:
            self._callbacks.dispatch(job.callback_url, body, job.plan)

    def _outcome(self, record: TaskRecord, job: Job) -> dict[str, Any]:
        state = self._state
        variant = job.plan.task
        if variant is None or variant == "task_failure_partial":
            for audio_id in job.new_audio_ids:
                entry = state.audios.get(audio_id)
                if entry is not None:
                    entry.ready = True
        if variant is None:
            return success_body(record.id, record.trace_id, [job.item])
        state.counters.tasks_failed += 1
        if variant != "task_failure_partial":
            # A failed song never existed: it cannot be fetched or used as a source.
            for audio_id in job.new_audio_ids:
                state.audios.pop(audio_id, None)
        return failure_body(record.id, record.trace_id, variant, job.item)
