"""The Redis broker transport the workers use: kombu's, surviving a Redis restart.

Upstream fault (celery 5.7, kombu 5.7): a worker holding unacknowledged messages dies
with ``Unrecoverable error: AttributeError("'NoneType' object has no attribute
'hostname'")`` when Redis restarts while its consumer is blocked in BRPOP. The call
chain, all upstream:

1. ``celery.worker.consumer.Consumer.on_connection_error_after_connected`` calls
   ``Connection.collect()``, then ``Connection.close()``.
2. ``collect()`` closes the default channel: ``kombu.transport.redis.Channel.close``
   first reads the pending BRPOP reply (``_brpop_read``), which raises
   ``ConnectionError`` with Redis down, *before* the channel is marked closed
   (``collect`` ignores it). It then sets ``transport.client = None``
   (``Connection._do_close_transport``).
3. ``close()`` closes the same channel again. This time it gets as far as
   ``virtual.Channel.close`` → ``QoS.restore_unacked_once`` → ``restore_unacked`` →
   ``Channel.conn_or_acquire`` → ``_create_client`` → ``_get_pool`` →
   ``_connparams``, which reads ``self.connection.client.hostname``: ``client`` is
   None, the ``AttributeError`` is not a connection error, ``ignore_errors`` lets it
   through, and the worker stops for good.

It needs a busy worker (no unacked message: nothing to restore) caught in BRPOP, which
is why a toy reproduction with sleeping tasks often survives.

The fix here: :class:`Channel` remembers the connection parameters it last built and
uses them once the transport has let go of its client. Restoring (and the late acks of
tasks still running on the old channel) then talks to Redis again: it succeeds if Redis
is back, or fails with ``redis.ConnectionError``, a connection error Celery ignores
(the messages stay in kombu's ``unacked`` hash, which any worker's visibility sweep
restores). A channel that never built parameters raises that same connection error.
The consumer then reconnects as Celery intends.

:func:`transport_for` names :class:`Transport` for ``redis://`` and ``rediss://``
broker URLs (Celery's ``broker_transport``); other brokers keep their own transport.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["REDIS_SCHEMES", "Channel", "Transport", "transport_for"]

REDIS_SCHEMES = frozenset({"redis", "rediss"})
"""Broker URL schemes served by :class:`Transport`."""

TRANSPORT_PATH = f"{__name__}:Transport"
"""What Celery's ``broker_transport`` is set to for a Redis broker."""


class Channel(kombu_redis.Channel):
    """kombu's Redis channel, still able to build a client after its transport closed."""

    _saved_connparams: dict[bool, dict[str, Any]] | None = None

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        transport = getattr(self, "connection", None)
        if transport is not None and getattr(transport, "client", None) is not None:
            # kombu is untyped here; the reply is its dict of client parameters.
            params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]
            if self._saved_connparams is None:
                self._saved_connparams = {}
            self._saved_connparams[asynchronous] = dict(params)
            return params
        saved = (self._saved_connparams or {}).get(asynchronous)
        if saved is None:
            # A connection error, which Celery and kombu expect while closing.
            raise RedisConnectionError("the broker connection is closed")
        return dict(saved)


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


def transport_for(broker_url: str | None) -> str | None:
    """The ``broker_transport`` for ``broker_url``: :class:`Transport` for Redis, else None."""
    if not broker_url:
        return None
    scheme = urlsplit(broker_url).scheme.lower()
    return TRANSPORT_PATH if scheme in REDIS_SCHEMES else None
