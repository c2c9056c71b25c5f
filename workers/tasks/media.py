"""Tasks for the quick endpoints: upload, lyrics, wav and videos.

``upload`` turns an audio URL into an ``audio_id`` for ``upload_cover`` /
``upload_extend`` / ``upload_replace_section``; ``wav`` and ``videos`` export the
song of the previous step (or ``params["audio_id"]``) and store the file.
"""

from __future__ import annotations

from typing import Any

from celery import Task

from workers.app import app
from workers.operations.params import Prev, complete_params
from workers.operations.quick import QUICK_ACTIONS, run_quick_step
from workers.operations.results import carry_outputs
from workers.tasks.base import make_call, run_step


def _quick_task(action: str) -> Task:
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
        return run_step(self, call, run_quick_step)

    step.__name__ = action
    step.__doc__ = f"Call ``/producer/{action}`` exactly once and store its result."
    task: Task = app.task(bind=True, name=f"producer.{action}", acks_late=True)(step)
    return task


upload = _quick_task("upload")
lyrics = _quick_task("lyrics")
wav = _quick_task("wav")
videos = _quick_task("videos")

assert set(QUICK_ACTIONS) == {"upload", "lyrics", "wav", "videos"}
