"""The Celery app against a real Redis: a threads-pool worker, config, CLI entry points."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from celery import Celery
from celery.contrib.testing.worker import start_worker

from workers.app import MISSING_REDIS_MESSAGE, celery_config, create_app, task_modules
from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PRODUCER_REDIS_URL",
                                                           "PRODUCER_BROKER_URL")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


@pytest.fixture
def celery_app(redis_url: str) -> Iterator[Celery]:
    app = create_app(Settings(redis_url=redis_url))

    @app.task(name="tests.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tests.context", bind=True, shared=False)
    def context(self: Any) -> dict[str, Any]:
        return dict(structlog.contextvars.get_contextvars())

    yield app
    app.close()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_producer_handler", False)]:
        root.removeHandler(handler)
    structlog.reset_defaults()


def test_config_values_are_as_documented(celery_app: Celery) -> None:
    conf = celery_app.conf
    assert (conf.task_serializer, conf.result_serializer) == ("json", "json")
    assert list(conf.accept_content) == ["json"]
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options == {"visibility_timeout": 1800}
    assert conf.task_time_limit == 1500
    assert conf.result_expires == 86400
    assert conf.task_track_started is True
    assert conf.broker_connection_retry_on_startup is True
    assert conf.broker_url == conf.result_backend
    assert "workers.tasks" in conf.imports


def test_broker_may_differ_from_the_result_backend() -> None:
    config = celery_config(Settings(redis_url="redis://r:6379/0", broker_url="amqp://mq//"))
    assert (config["broker_url"], config["result_backend"]) == ("amqp://mq//", "redis://r:6379/0")


def test_task_modules_start_with_the_package() -> None:
    assert task_modules()[0] == "workers.tasks"


def test_threads_worker_runs_a_task_and_answers_inspect_ping(
    celery_app: Celery, redis_url: str
) -> None:
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False,
                      loglevel="WARNING"):
        result = celery_app.tasks["tests.add"].delay(2, 3)
        assert result.get(timeout=20) == 5
        assert result.status == "SUCCESS"
        context = celery_app.tasks["tests.context"].delay().get(timeout=20)
        assert context["task"] == "tests.context"
        assert "task_id" in context
        ping = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "workers.app", "inspect", "ping",
             "--timeout", "5"],
            env=cli_env(REDIS_URL=redis_url), cwd=ROOT, capture_output=True, text=True,
            timeout=60,
        )
    assert ping.returncode == 0, ping.stderr
    assert "pong" in ping.stdout


def test_report_runs_from_the_command_line(redis_url: str) -> None:
    report = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers.app", "report"],
        env=cli_env(REDIS_URL=redis_url), cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert report.returncode == 0, report.stderr
    assert "task_acks_late: True" in report.stdout


def test_worker_without_redis_exits_with_a_clear_message() -> None:
    worker = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "--pool=solo"],
        env=cli_env(), cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert worker.returncode != 0
    assert MISSING_REDIS_MESSAGE in worker.stderr
