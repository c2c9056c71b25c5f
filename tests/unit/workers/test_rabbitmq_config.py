"""The Celery configuration chosen for a RabbitMQ broker (``workers/rabbitmq.py``)."""

from __future__ import annotations

from workers.app import celery_config
from workers.rabbitmq import DEFAULT_QUEUE, is_amqp
from workers.settings import Settings

REDIS = "redis://r:6379/0"
AMQP = "amqp://guest:guest@mq:5672//"


def test_amqp_urls_select_rabbitmq() -> None:
    assert is_amqp(AMQP) and is_amqp("pyamqp://mq//") and is_amqp("amqps://mq//")
    assert not is_amqp(REDIS) and not is_amqp("rediss://r/0") and not is_amqp(None)


def test_rabbitmq_gets_a_quorum_queue_on_a_topic_exchange_and_publisher_confirms() -> None:
    config = celery_config(Settings(redis_url=REDIS, broker_url=AMQP))
    (queue,) = config["task_queues"]
    assert queue.name == config["task_default_queue"] == DEFAULT_QUEUE
    assert queue.queue_arguments == {"x-queue-type": "quorum"}
    assert (queue.exchange.name, queue.exchange.type) == (DEFAULT_QUEUE, "topic")
    assert config["task_default_exchange_type"] == "topic"
    assert config["task_default_queue_type"] == "quorum"
    assert config["worker_detect_quorum_queues"] is True
    # Confirms only: the Redis visibility timeout and sweeps mean nothing to RabbitMQ.
    assert config["broker_transport_options"] == {"confirm_publish": True}
    assert config["broker_transport"] is None
    assert (config["task_acks_late"], config["worker_prefetch_multiplier"]) == (True, 1)
    assert config["result_backend"] == REDIS


def test_the_queue_name_is_a_setting() -> None:
    config = celery_config(Settings(redis_url=REDIS, broker_url=AMQP, broker_queue="fleet-a"))
    assert [q.name for q in config["task_queues"]] == ["fleet-a"]
    assert config["task_default_exchange"] == "fleet-a"


def test_redis_brokers_keep_their_own_options() -> None:
    config = celery_config(Settings(redis_url=REDIS))
    assert "task_queues" not in config
    assert config["broker_transport_options"]["visibility_timeout"] == 1800
    assert config["broker_transport"] == "workers.broker:Transport"


def test_a_redis_broker_may_name_its_queue_too() -> None:
    config = celery_config(Settings(redis_url=REDIS, broker_queue="fleet-a"))
    assert config["task_default_queue"] == "fleet-a"
    assert "task_queues" not in config
