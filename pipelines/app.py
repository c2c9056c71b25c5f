"""The Celery app with the pipelines' tasks: ``celery -A pipelines.app worker|beat``."""

import pipelines.schedule_tasks  # noqa: F401  (registers producer.schedule.fire, beat config)
from workers.app import app

__all__ = ["app"]
