"""The beat side of schedules: hooks the entry point installs on its app.

:func:`install_beat_hooks` (called by :func:`pipelines.app.build_app`, nothing runs at
import) connects two Celery signals:

- ``before_task_publish`` stamps every fire message with the moment it was published
  (header ``producer_fired_at``): the batch id is derived from it, so a message
  delivered twice, or a slot fired twice, lands on the same batch id and resumes it;
- ``beat_init`` syncs the settings' ``PRODUCER_SCHEDULES_FILE`` into Redis when set.

The redbeat configuration itself is :func:`pipelines.schedules.spec.beat_config`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import structlog
from celery import Celery, signals
from redbeat import RedBeatSchedulerEntry
from redbeat.schedulers import ensure_conf

from pipelines.constants import FIRED_AT_HEADER, REDBEAT_ENTRY_PREFIX
from pipelines.schedules.spec import FIRE_TASK, ScheduleConfigError
from pipelines.schedules.store import ScheduleStore, sync_file
from workers.settings import Settings

__all__ = ["BeatHooks", "current_hooks", "install_beat_hooks"]

log = structlog.get_logger(__name__)


class BeatHooks:
    """The schedule hooks of one app, built from its settings."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.started = False
        """Set at beat start: only beat's own fire messages carry the entry's last run."""

    def stamp_fired_at(
        self,
        sender: str | None = None,
        headers: dict[str, Any] | None = None,
        body: Any = None,
        **_: Any,
    ) -> None:
        """``before_task_publish``: stamp a fire message with its publish time."""
        # Stamped at publish: a message the worker runs late still names its own slot.
        if sender == FIRE_TASK and headers is not None:
            headers.setdefault(FIRED_AT_HEADER, self.publish_time(body).isoformat())

    def publish_time(self, body: Any) -> datetime:
        """In beat: the entry's ``last_run_at``, which beat saved just before publishing.

        Beat fires only when ``now >= last_run_at + every``, so consecutive ``last_run_at``
        values are at least one interval apart and each fire gets its own grid slot; the
        wall clock read a moment later may land a few microseconds short of that.
        """
        if self.started:
            try:
                key = ensure_conf(self.app).key_prefix + REDBEAT_ENTRY_PREFIX + str(body[0][0])
                last = RedBeatSchedulerEntry.load_meta(key, self.app)["last_run_at"]
            except (LookupError, TypeError, redis.RedisError):
                last = None
            if isinstance(last, datetime):
                return last
        return datetime.now(UTC)

    def on_beat_start(self, **_: Any) -> None:
        """``beat_init``: note that this process is beat; sync the schedules file."""
        self.started = True
        settings = self.settings
        if not (settings.schedules_file and settings.redis_url):
            return
        client = redis.Redis.from_url(settings.redis_url)
        store = ScheduleStore(client, settings)
        try:
            report = sync_file(
                store, Path(settings.schedules_file), pipelines_file=settings.pipelines_file
            )
            log.info(
                "schedules_synced",
                file=settings.schedules_file,
                created=report.created,
                updated=report.updated,
                removed=report.removed,
            )
        except ScheduleConfigError as exc:
            # Beat keeps running on what Redis holds; the log says what to fix.
            log.error("schedules_file_invalid", file=settings.schedules_file, error=str(exc))
        finally:
            store.close()
            client.close()


# The hooks of the app built last: a process builds one app (the entry point's, or
# `producer-batch run`'s own), and Celery's signals are process-wide.
_current: list[BeatHooks] = []


def current_hooks() -> BeatHooks | None:
    """The hooks installed last, or None before any app was built."""
    return _current[-1] if _current else None


def _stamp_fired_at(**kwargs: Any) -> None:
    hooks = current_hooks()
    if hooks is not None:
        hooks.stamp_fired_at(**kwargs)


def _on_beat_start(**kwargs: Any) -> None:
    hooks = current_hooks()
    if hooks is not None:
        hooks.on_beat_start(**kwargs)


def install_beat_hooks(app: Celery, settings: Settings) -> BeatHooks:
    """Make ``app``'s hooks the current ones; connect the signals once per process."""
    hooks = BeatHooks(app, settings)
    _current[:] = [hooks]
    signals.before_task_publish.connect(
        _stamp_fired_at, weak=False, dispatch_uid="producer.schedules.stamp_fired_at"
    )
    signals.beat_init.connect(
        _on_beat_start, weak=False, dispatch_uid="producer.schedules.on_beat_start"
    )
    return hooks
