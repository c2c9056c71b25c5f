"""Key prefixes and durations used by the workers, in one place.

Every Redis key the project writes starts with :data:`KEY_PREFIX`, so one
``SCAN producer:*`` shows all of our state and nothing else's. Durations carry
their unit in the name.
"""

from __future__ import annotations

KEY_PREFIX = "producer:"

# Rate limiter (workers/ratelimit)
LIMITER_PREFIX = KEY_PREFIX + "limit:"

# Ledger (workers/ledger.py): one hash per step idempotency key.
LEDGER_PREFIX = KEY_PREFIX + "ledger:"

# Continuations of steps waiting for the provider (workers/completion).
INFLIGHT_PREFIX = KEY_PREFIX + "inflight:"

# Batches (pipelines/batches.py).
BATCH_PREFIX = KEY_PREFIX + "batch:"

# How long finished ledger records are kept: long enough to make a re-submitted
# CSV a no-op for a month.
LEDGER_DONE_TTL_S = 30 * 24 * 3600

# The provider documents 429 for polls faster than 1/s per token.
DEFAULT_POLL_RATE_PER_S = 1.0
