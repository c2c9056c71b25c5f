"""THE Celery entry point: ``celery -A pipelines.app worker|beat|inspect|events``.

One object says what a worker runs (arq's ``WorkerSettings`` idea): :data:`TASK_MODULES`
lists every task module, and :func:`build_app` makes the one app from the settings,
with the beat configuration (redbeat) and the schedule hooks. Importing this module
builds :data:`app` from the environment (it never connects), imports every task module
so ``app.tasks`` is complete for producers too, and makes it the default app of every
thread. ``workers.app`` is only the factory: ``celery -A workers.app`` refuses to start.
"""

from __future__ import annotations

import importlib

from celery import Celery

from pipelines.schedules.beat import install_beat_hooks
from pipelines.schedules.spec import beat_config
from workers.app import create_app
from workers.settings import Settings, get_settings

__all__ = ["TASK_MODULES", "app", "build_app"]

TASK_MODULES = (
    "workers.tasks.audios",  # producer.<audio action> steps and producer.collect
    "workers.tasks.media",  # producer.upload / lyrics / wav / videos
    "pipelines.batches.tasks",  # producer.batch.row_done / row_failed
    "pipelines.schedules.tasks",  # producer.schedule.fire
)
"""Every module that registers tasks; a worker imports them all at start."""


def build_app(settings: Settings) -> Celery:
    """The Producer Celery app for ``settings``: every task module, beat, schedule hooks."""
    celery_app = create_app(settings, include=TASK_MODULES, extra_conf=beat_config(settings))
    for module in TASK_MODULES:
        # Shared tasks attach to every app at finalisation: importing is registering.
        importlib.import_module(module)
    install_beat_hooks(celery_app, settings)
    return celery_app


app = build_app(get_settings())
# Pool threads and helper threads (the poller, a feeder) resolve the same app.
app.set_default()
