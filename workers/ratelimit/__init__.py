"""Fleet-wide adaptive rate limiting for the Producer API.

One token bucket per (API token, endpoint class) in Redis, updated atomically by
a Lua script that reads the Redis clock; its rate learns from the provider's
429s (multiplicative decrease, pause) and successes (additive increase up to
the configured ceiling). An in-flight cap per token is kept as expiring leases.
Limits can be read and changed at runtime (``producer-batch limits``).

Typical use (see ``docs/ratelimit.md`` for the Celery pattern)::

    limiter = Limiter(RedisBackend(client), defaults=LimiterDefaults.from_settings(s))
    decision = limiter.acquire(token_id, EndpointClass.SUBMIT)
    if not decision.granted:
        ...  # re-queue for decision.countdown_s()
"""

from workers.ratelimit.backend import Backend, EndpointClass
from workers.ratelimit.bucket import Limits, Tuning
from workers.ratelimit.limiter import (
    Decision,
    Limiter,
    LimiterDefaults,
    endpoint_class_for,
    token_id_for,
    tuning_for,
)
from workers.ratelimit.memory import FakeClock, MemoryBackend
from workers.ratelimit.redis_backend import RedisBackend
from workers.ratelimit.status import BucketStatus, LimitStatus

__all__ = [
    "Backend",
    "BucketStatus",
    "Decision",
    "EndpointClass",
    "FakeClock",
    "LimitStatus",
    "Limiter",
    "LimiterDefaults",
    "Limits",
    "MemoryBackend",
    "RedisBackend",
    "Tuning",
    "endpoint_class_for",
    "token_id_for",
    "tuning_for",
]
