"""Key prefixes and durations used by the workers, in one place.

Every Redis key the project writes starts with :data:`KEY_PREFIX`, so one
``SCAN producer:*`` shows all of our state and nothing else's. Durations carry
their unit in the name.
"""

from __future__ import annotations

KEY_PREFIX = "producer:"

# --- Rate limiter (workers/ratelimit) --------------------------------------
# Keys: LIMITER_PREFIX + "{<token_id>}:submit|poll|leases" (braces: one cluster slot).
LIMITER_PREFIX = KEY_PREFIX + "limit:"

# Polls at 1/s with a burst of 1: never two polls of one token closer than 1 s.
DEFAULT_POLL_BURST = 1.0

# An in-flight lease lives this long unless renewed: longer than a generation
# (1-3 min) with margin, short enough that a crashed worker's slot comes back soon.
LEASE_TTL_S = 600.0

# A task told "wait N ms" is re-published with a countdown of at most this many
# seconds (then asks again): ETA messages are held in worker RAM and, on Redis,
# redelivered past the visibility timeout, so they must stay short.
MAX_REQUEUE_COUNTDOWN_S = 30.0

# Spread re-published waiters by up to this fraction of their wait (no herd).
REQUEUE_JITTER_FRACTION = 0.2

# Token ids are this many hex chars of sha256(api token): the token itself never
# reaches Redis keys, logs or CLI output.
TOKEN_ID_HEX_CHARS = 16
# --- end of rate limiter block -----------------------------------------------

# Ledger (workers/ledger.py): one hash per step idempotency key.
LEDGER_PREFIX = KEY_PREFIX + "ledger:"
# Reverse index api task id -> ledger key, so one provider task is recorded (or adopted)
# by at most one step.
LEDGER_CLAIM_PREFIX = KEY_PREFIX + "ledger-claim:"

# Continuations of steps waiting for the provider (workers/completion).
INFLIGHT_PREFIX = KEY_PREFIX + "inflight:"

# --- Spend control (pipelines/spend/guard.py, pipelines/spend/scripts/spend.lua) ------------------
# Keys: SPEND_PREFIX + "batch:<batch_id>" (totals hash), + "batch:<batch_id>:holds"
# (one field per reservation key) and SPEND_GLOBAL_KEY (fleet totals + runtime cap).
# No TTL: they are money records; SpendGuard.forget(batch_id) drops a batch's keys.
SPEND_PREFIX = KEY_PREFIX + "spend:"
SPEND_GLOBAL_KEY = SPEND_PREFIX + "global"

# Amounts are stored as integers of this many units per currency unit (USD or
# credits): integer sums are exact, so no float drift can creep past a cap.
SPEND_MICROS_PER_UNIT = 1_000_000
# --- end of spend control block ----------------------------------------------

# --- Batches (pipelines/batches/submit.py, batchstate.py, feeder.py) -----------------
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
# no slot waits up to MAX_REQUEUE_COUNTDOWN_S, so admitting more rows than slots only
# parks them.
BATCH_WINDOW_PER_SLOT = 1.0
# --- end of batches block ------------------------------------------------------

# How long finished ledger records are kept: long enough to make a re-submitted
# CSV a no-op for a month.
LEDGER_DONE_TTL_S = 30 * 24 * 3600

# The provider documents 429 for polls faster than 1/s per token.
DEFAULT_POLL_RATE_PER_S = 1.0
