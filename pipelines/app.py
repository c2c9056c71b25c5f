"""The Celery app with the pipelines' tasks: ``celery -A pipelines.app worker|beat``.

Workers that run batches must load this module (not only ``workers.app``): it
registers the row-completion tasks the feeder links to every row.
"""

import pipelines.batches.tasks  # registers producer.batch.row_done / row_failed
import pipelines.schedule_tasks  # noqa: F401  (registers producer.schedule.fire, beat config)
from workers.app import app

__all__ = ["app"]
