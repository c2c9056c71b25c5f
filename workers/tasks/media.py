"""Tasks for the quick endpoints: upload, lyrics, wav and videos.

``upload`` turns an audio URL into an ``audio_id`` for ``upload_cover`` /
``upload_extend`` / ``upload_replace_section``; ``wav`` and ``videos`` export the
song of the previous step (or ``params["audio_id"]``) and store the file.
"""

from __future__ import annotations

from celery import Task

from workers.operations.quick import run_quick_step
from workers.tasks.base import step_task


def _quick_task(action: str) -> Task:
    return step_task(
        action, run_quick_step, f"Call ``/producer/{action}`` exactly once and store its result."
    )


upload = _quick_task("upload")
lyrics = _quick_task("lyrics")
wav = _quick_task("wav")
videos = _quick_task("videos")
