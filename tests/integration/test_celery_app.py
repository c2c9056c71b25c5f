"""The Celery app against a real Redis: a threads-pool worker, config, CLI entry points.

The one entry point is ``pipelines.app``; ``celery -A workers.app`` must refuse to start
without consuming anything (a worker lacking the batch row tasks strands rows).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import structlog
from celery import Celery
from celery.contrib.testing.worker import start_worker

from pipelines.app import TASK_MODULES, build_app
from pipelines.batches.feeder import ROW_DONE_TASK
from workers.app import (
    MISSING_REDIS_MESSAGE,
    WRONG_ENTRY_MESSAGE,
    celery_config,
    create_app,
)
from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def cli_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "PRODUCER_REDIS_URL", "PRODUCER_BROKER_URL")
    }
    return {**env, "PYTHONPATH": str(ROOT), **extra}


@pytest.fixture
def celery_app(redis_url: str) -> Iterator[Celery]:
    app = create_app(Settings(redis_url=redis_url), include=())

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
    assert conf.producer_app is True


def test_broker_may_differ_from_the_result_backend() -> None:
    config = celery_config(Settings(redis_url="redis://r:6379/0", broker_url="amqp://mq//"))
    assert (config["broker_url"], config["result_backend"]) == ("amqp://mq//", "redis://r:6379/0")


def test_the_entry_point_lists_every_task_module_and_registers_every_task() -> None:
    app = build_app(Settings(redis_url="redis://127.0.0.1:1/0"))
    assert list(app.conf.include) == list(TASK_MODULES)
    names = {name for name in app.tasks if name.startswith("producer.")}
    assert {
        "producer.generate",
        "producer.collect",
        "producer.wav",
        ROW_DONE_TASK,
        "producer.batch.row_failed",
        "producer.schedule.fire",
    } <= names
    assert app.conf.beat_scheduler == "redbeat.RedBeatScheduler"
    app.close()


def test_threads_worker_runs_a_task_and_answers_inspect_ping(
    celery_app: Celery, redis_url: str
) -> None:
    with start_worker(
        celery_app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING"
    ):
        result = celery_app.tasks["tests.add"].delay(2, 3)
        assert result.get(timeout=20) == 5
        assert result.status == "SUCCESS"
        context = celery_app.tasks["tests.context"].delay().get(timeout=20)
        assert context["task"] == "tests.context"
        assert "task_id" in context
        ping = subprocess.run(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "pipelines.app",
                "inspect",
                "ping",
                "--timeout",
                "5",
            ],
            env=cli_env(REDIS_URL=redis_url),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert ping.returncode == 0, ping.stderr
    assert "pong" in ping.stdout


def test_report_runs_from_the_command_line(redis_url: str) -> None:
    report = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "pipelines.app", "report"],
        env=cli_env(REDIS_URL=redis_url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert report.returncode == 0, report.stderr
    assert "task_acks_late: True" in report.stdout


def test_worker_without_redis_exits_with_a_clear_message() -> None:
    worker = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "pipelines.app", "worker", "--pool=solo"],
        env=cli_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode != 0
    assert MISSING_REDIS_MESSAGE in worker.stderr


def _published(client: redis.Redis) -> int:
    return int(client.llen("celery"))


def test_the_old_entry_point_refuses_and_the_row_waits_for_the_real_one(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """A row-completion message survives ``celery -A workers.app worker``; pipelines.app runs it."""
    app = build_app(Settings(redis_url=redis_url))
    try:
        sent = app.send_task(ROW_DONE_TASK, kwargs={"batch_id": "b-trap", "row": 1, "attempt": 1})
        assert _published(redis_client) == 1
        env = cli_env(REDIS_URL=redis_url, PRODUCER_API_TOKEN="test-token")
        started = time.monotonic()
        old = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "--pool=solo"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert old.returncode != 0
        assert WRONG_ENTRY_MESSAGE in old.stderr
        assert time.monotonic() - started < 30
        assert _published(redis_client) == 1  # consumed nothing: the row is not stranded
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "pipelines.app",
                "worker",
                "--pool=solo",
                "--loglevel",
                "WARNING",
                "--without-mingle",
                "--without-gossip",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert sent.get(timeout=60) is False  # an unknown batch: nothing to record
            registered = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "pipelines.app",
                    "inspect",
                    "registered",
                    "--timeout",
                    "5",
                ],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert registered.returncode == 0, registered.stderr
            for name in (n for n in app.tasks if n.startswith("producer.")):
                assert name in registered.stdout, name
        finally:
            worker.terminate()
            _, stderr = worker.communicate(timeout=30)
        assert "unregistered task" not in stderr
    finally:
        app.close()


def test_a_task_used_without_the_producer_app_refuses_to_send() -> None:
    """Without pipelines.app, Celery's fallback app would publish to amqp://localhost."""
    code = "import workers.tasks.audios as audios\naudios.generate.delay(params={'prompt': 'x'})\n"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=cli_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "RuntimeError" in done.stderr
    assert "import pipelines.app (the one Celery app) before using producer tasks" in done.stderr
