"""Key prefixes and durations of the pipelines, in one place (units in the names).

Every key starts with :data:`workers.constants.KEY_PREFIX`, like the workers' own, so
one ``SCAN producer:*`` shows all of the project's state. Each package keeps its block.
"""

from __future__ import annotations

from workers.constants import KEY_PREFIX

# --- Schedules (pipelines/schedules) -------------------------------------------
# Redis layout: the table in pipelines/schedules/store.py.
SCHEDULE_INDEX_KEY = KEY_PREFIX + "schedules"  # set of schedule names
SCHEDULE_SPEC_PREFIX = KEY_PREFIX + "schedule:"  # hash per schedule: spec, armed_at, last_run
SCHEDULE_RUNS_PREFIX = KEY_PREFIX + "schedule-runs:"  # list per schedule, newest first
# Runs kept per schedule; a run keeps this many of its batch's row errors (the batch
# itself has them all).
SCHEDULE_RUNS_KEPT = 50
SCHEDULE_RUN_ERRORS_KEPT = 20
# celery-redbeat's keys; its entries of our schedules are named ENTRY_PREFIX + <name>,
# and a sync touches no other entry under the prefix.
REDBEAT_KEY_PREFIX = KEY_PREFIX + "redbeat:"
# Same double colon as redbeat's own "::schedule": no entry name can collide with it.
REDBEAT_LOCK_KEY = REDBEAT_KEY_PREFIX + ":lock"
REDBEAT_ENTRY_PREFIX = "schedule:"
# Message header stamped at publish on every fire: the batch id is derived from it.
FIRED_AT_HEADER = "producer_fired_at"
# --- end of schedules block ------------------------------------------------------
