"""The machine's real RabbitMQ for the e2e tests: reachability, a queue of one's own.

Tests on RabbitMQ share one broker (``RABBITMQ_URL``, default the machine's
``amqp://guest:guest@127.0.0.1:5672//``) with parallel runs and CI reruns: each test
gets a task queue (and exchange) named after a fresh uuid, deleted afterwards. When the
broker is unreachable the tests fail under CI (``CI=true``) and skip elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from kombu import Connection

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672//"


@dataclass(frozen=True)
class RabbitMQ:
    """A reachable broker and the queue name a test owns on it."""

    url: str
    queue: str

    def is_quorum_queue(self) -> bool:
        """Whether the queue exists as a quorum queue (RabbitMQ refuses a different type)."""
        with Connection(self.url) as conn:
            channel = conn.channel()
            try:
                channel.queue_declare(
                    self.queue,
                    durable=True,
                    auto_delete=False,
                    arguments={"x-queue-type": "quorum"},
                )
            except conn.channel_errors:
                return False
            finally:
                _close(channel)
        return True

    def delete(self) -> None:
        """Delete the test's queue and exchange (nothing else on the broker)."""
        with Connection(self.url) as conn:
            channel = conn.channel()
            try:
                channel.queue_delete(self.queue)
                channel.exchange_delete(self.queue)
            except conn.channel_errors:
                pass
            finally:
                _close(channel)


def _close(channel: object) -> None:
    with contextlib.suppress(Exception):  # a channel the broker closed already
        channel.close()  # type: ignore[attr-defined]


def _unreachable(url: str) -> str | None:
    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # any failure to connect is "unreachable", said with its cause
        return f"RabbitMQ at {url} is unreachable: {exc}"
    return None


@pytest.fixture
def rabbitmq() -> Iterator[RabbitMQ]:
    """A reachable RabbitMQ and a uniquely named queue, deleted after the test."""
    url = os.environ.get("RABBITMQ_URL", DEFAULT_URL)
    reason = _unreachable(url)
    if reason is not None:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(reason)
        pytest.skip(reason)
    broker = RabbitMQ(url, f"producer-test-{uuid.uuid4().hex[:12]}")
    try:
        yield broker
    finally:
        broker.delete()
