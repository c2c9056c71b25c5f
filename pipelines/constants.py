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

# --- Batches (pipelines/batches/: state.py, submit.py, feeder.py) ------------
# Per batch: BATCH_PREFIX + "{<batch_id>}" (record hash) and "{<batch_id>}:<part>"
# (rows, state, running, requeue, errors, rate); braces: one cluster slot per batch.
# Fleet-wide keys start with "_" (a batch id never does).
BATCH_PREFIX = KEY_PREFIX + "batch:"
BATCH_INDEX_KEY = BATCH_PREFIX + "_index"  # zset batch id -> created_at
BATCH_ACTIVE_KEY = BATCH_PREFIX + "_active"  # list: batches with rows to feed (rotation)
BATCH_WINDOW_KEY = BATCH_PREFIX + "_window"  # zset "<batch>/<row>" -> admitted_at
BATCH_CONFIG_KEY = BATCH_PREFIX + "_config"  # hash: runtime window override

# Rows are written under a TTL and made permanent only when the record is written, so
# a submit that dies half-way leaves nothing behind for long.
BATCH_STAGING_TTL_S = 3600

# A batch paused by a spend cap is offered another reservation this often.
BATCH_PAUSE_RETRY_S = 5.0

# A row whose earlier canvas still has a step at the provider (a resume, an abandoned
# row run again) waits this long before the feeder looks at it again.
BATCH_DEFER_S = 2.0

# Admitted-but-unfinished rows allowed per in-flight slot of the limiter: a row holds
# at most one slot at a time (its steps run one after another), and a step that finds
# no slot waits up to workers.constants.MAX_REQUEUE_COUNTDOWN_S, so admitting more
# rows than slots only parks them.
BATCH_WINDOW_PER_SLOT = 1.0
# --- end of batches block -------------------------------------------------------

# --- Spend (pipelines/spend/: guard.py, scripts/spend.lua) ------------------
# Keys: SPEND_PREFIX + "batch:<batch_id>" (totals hash), + "batch:<batch_id>:holds"
# (one field per reservation key) and SPEND_GLOBAL_KEY (fleet totals + runtime cap).
# No TTL: they are money records; SpendGuard.forget(batch_id) drops a batch's keys.
SPEND_PREFIX = KEY_PREFIX + "spend:"
SPEND_GLOBAL_KEY = SPEND_PREFIX + "global"
# Totals keys of the batches that hold a step still at the provider (settled when it lands).
SPEND_PENDING_KEY = SPEND_PREFIX + "pending"

# Amounts are stored as integers of this many units per currency unit (USD or
# credits): integer sums are exact, so no float drift can creep past a cap.
SPEND_MICROS_PER_UNIT = 1_000_000
# --- end of spend block ---------------------------------------------------------
