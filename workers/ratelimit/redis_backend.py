"""The fleet-wide backend: bucket and leases in Redis, updated by Lua, timed by Redis.

Every worker process talks to the same keys, so N workers share one limit. Each
operation is one ``EVALSHA`` of a script loaded from its ``.lua`` file in
``scripts/`` (:func:`workers._redis.register_scripts`, once per backend; redis-py
reloads it after a ``SCRIPT FLUSH``). Scripts read the clock with ``TIME``, so skew between worker
machines cannot widen the limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis

from workers._redis import register_scripts
from workers.ratelimit.backend import (
    BucketCall,
    BucketReply,
    EndpointClass,
    LeaseOp,
    LeaseReply,
    Snapshot,
    bucket_key,
    leases_key,
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _numbers(raw: Mapping[Any, Any]) -> dict[str, float]:
    return {_text(k): float(_text(v)) for k, v in raw.items()}


def _pairs(raw: Sequence[Any]) -> dict[str, float]:
    return {_text(member): float(score) for member, score in raw}


class RedisBackend:
    """Limiter state in Redis: works with any ``redis.Redis`` client (bytes or str replies)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        scripts = register_scripts(client, "workers.ratelimit")
        self._bucket = scripts["token_bucket"]
        self._leases = scripts["leases"]

    @property
    def client(self) -> redis.Redis:
        """The Redis client the backend uses."""
        return self._client

    def bucket(self, token_id: str, endpoint: EndpointClass, call: BucketCall) -> BucketReply:
        """Run ``scripts/token_bucket.lua`` once."""
        args = [
            call.op,
            call.cost,
            call.defaults.ceiling,
            call.defaults.burst,
            call.retry_after_s,
            call.epoch,
            *call.tuning.as_args(),
        ]
        code, wait_ms, epoch, rate, pause = self._bucket(
            keys=[bucket_key(token_id, endpoint)], args=args
        )
        return BucketReply(int(code), int(wait_ms), int(epoch), float(rate), float(pause))

    def lease(
        self, token_id: str, op: LeaseOp, lease_id: str, ttl_s: float, default_cap: int
    ) -> LeaseReply:
        """Run ``scripts/leases.lua`` once."""
        keys = [leases_key(token_id), bucket_key(token_id, EndpointClass.SUBMIT)]
        code, wait_ms, count = self._leases(keys=keys, args=[op, lease_id, ttl_s, default_cap])
        return LeaseReply(bool(int(code)), int(wait_ms), int(count))

    def release(self, token_id: str, lease_id: str) -> bool:
        """Remove a lease with ``ZREM`` (no script: nothing else to keep consistent)."""
        return bool(self._client.zrem(leases_key(token_id), lease_id))

    def snapshot(self, token_id: str) -> Snapshot:
        """Read buckets and leases in one ``MULTI`` together with Redis ``TIME``."""
        pipe = self._client.pipeline(transaction=True)
        pipe.time()
        for endpoint in EndpointClass:
            pipe.hgetall(bucket_key(token_id, endpoint))
        pipe.zrange(leases_key(token_id), 0, -1, withscores=True)
        (seconds, micros), *hashes, leases = pipe.execute()
        buckets = {ep: _numbers(raw) for ep, raw in zip(EndpointClass, hashes, strict=True)}
        return Snapshot(now=seconds + micros / 1e6, buckets=buckets, leases=_pairs(leases))

    def update(
        self,
        token_id: str,
        endpoint: EndpointClass,
        values: Mapping[str, float],
        remove: Iterable[str] = (),
    ) -> None:
        """Set and delete bucket fields in one ``MULTI``."""
        key = bucket_key(token_id, endpoint)
        pipe = self._client.pipeline(transaction=True)
        if values:
            pipe.hset(key, mapping={k: repr(float(v)) for k, v in values.items()})
        names = list(remove)
        if names:
            pipe.hdel(key, *names)
        pipe.execute()

    def clear(self, token_id: str) -> None:
        """Delete every key of the token."""
        keys = [bucket_key(token_id, ep) for ep in EndpointClass] + [leases_key(token_id)]
        self._client.delete(*keys)
