"""Celery configuration for a RabbitMQ broker (``amqp://``): quorum queues, confirms.

RabbitMQ is the broker for fleets that cannot lose a message. Celery's Redis transport
pops a message (``BRPOP``) before it records it as unacknowledged, so a worker
SIGKILLed in between loses it; RabbitMQ hands every delivery to the consumer and puts
it back when the consumer's connection closes unacknowledged, whatever killed it.
Redis stays the store of everything else (results, ledger, limiter, continuations).

Configuration chosen, and why (on top of :func:`workers.app.celery_config`):

================================================  ==========================================
one quorum queue (``x-queue-type: quorum``),      replicated and durable: a message survives
named :data:`DEFAULT_QUEUE` unless                a broker node restart; a vhost once used
``PRODUCER_BROKER_QUEUE`` says otherwise          by plain Celery already has a classic
                                                  ``celery`` queue, which RabbitMQ would
                                                  refuse to redeclare as quorum
its exchange: same name, type ``topic``           Celery's native delayed delivery (how
                                                  countdowns work on quorum queues) routes
                                                  through topic exchanges; a direct
                                                  exchange leaves ETA messages held
                                                  (unacked) by the worker instead
``task_default_queue_type = "quorum"``            a queue Celery creates on the fly is
                                                  quorum too
``confirm_publish``                               ``apply_async`` returns once the broker
                                                  has the message (publisher confirms):
                                                  a publish into a broker that goes down
                                                  raises instead of vanishing
``worker_detect_quorum_queues``                   quorum queues refuse global QoS: Celery
                                                  then sets a per-consumer prefetch (the
                                                  pool size with a multiplier of 1)
``broker_native_delayed_delivery_queue_type``     the ``celery_delayed_*`` queues that hold
= ``quorum``                                      countdown messages are quorum queues too
================================================  ==========================================

No visibility timeout applies: a delivery comes back when its consumer's connection
closes. RabbitMQ's own ``consumer_timeout`` (30 min by default) closes the channel of a
consumer that keeps a delivery longer; the task time limit (25 min by default) stays
under it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from kombu.entity import Exchange, Queue

__all__ = ["AMQP_SCHEMES", "DEFAULT_QUEUE", "is_amqp", "rabbitmq_config"]

AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})
"""Broker URL schemes that select RabbitMQ."""
DEFAULT_QUEUE = "producer"
"""The task queue (and exchange) on RabbitMQ when ``PRODUCER_BROKER_QUEUE`` is unset."""
QUORUM = {"x-queue-type": "quorum"}


def is_amqp(broker_url: str | None) -> bool:
    """Whether ``broker_url`` names a RabbitMQ (AMQP) broker."""
    return bool(broker_url) and urlsplit(str(broker_url)).scheme.lower() in AMQP_SCHEMES


def rabbitmq_config(queue_name: str | None) -> dict[str, Any]:
    """Celery settings for RabbitMQ, task queue ``queue_name`` (see the module docstring)."""
    name = queue_name or DEFAULT_QUEUE
    # kombu is untyped: its entity constructors count as untyped calls.
    exchange = Exchange(name, type="topic", durable=True)  # type: ignore[no-untyped-call]
    return {
        "task_queues": (
            Queue(  # type: ignore[no-untyped-call]
                name, exchange, routing_key=name, durable=True, queue_arguments=dict(QUORUM)
            ),
        ),
        "task_default_queue": name,
        "task_default_exchange": name,
        "task_default_exchange_type": "topic",
        "task_default_routing_key": name,
        "task_default_queue_type": "quorum",
        "worker_detect_quorum_queues": True,
        "broker_native_delayed_delivery_queue_type": "quorum",
        "broker_transport_options": {"confirm_publish": True},
    }
