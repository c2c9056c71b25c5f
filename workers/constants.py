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

# Ledger (workers/ledger/): one hash per step idempotency key.
LEDGER_PREFIX = KEY_PREFIX + "ledger:"
# Reverse index api task id -> ledger key, so one provider task is recorded (or adopted)
# by at most one step.
LEDGER_CLAIM_PREFIX = KEY_PREFIX + "ledger-claim:"

# Continuations of steps waiting for the provider (workers/completion).
INFLIGHT_PREFIX = KEY_PREFIX + "inflight:"

# One download of an artifact at a time (workers/storage/deadline.py): a lock per
# storage key, with a TTL of the downloader's deadline.
DOWNLOAD_LOCK_PREFIX = KEY_PREFIX + "download-lock:"

# How long finished ledger records are kept: long enough to make a re-submitted
# CSV a no-op for a month.
LEDGER_DONE_TTL_S = 30 * 24 * 3600

# The provider documents 429 for polls faster than 1/s per token.
DEFAULT_POLL_RATE_PER_S = 1.0
