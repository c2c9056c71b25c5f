"""The baseline: Celery's built-in ``rate_limit``, one bucket per worker instance.

Each worker instance enforces ``rate_limit`` on its own, so a fleet of N
workers sends up to N times the nominal rate. The bench starts N worker
processes (``--pool solo``, one per "machine") on this module's app, fills a
queue with cheap submissions and reads the outcome from the emulator's log.
The app reads its settings from ``BENCH_*`` variables so the worker processes
see what the bench chose.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from celery import Celery

BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("BENCH_QUEUE", "bench-ratelimit")
RATE_LIMIT = os.environ.get("BENCH_RATE_LIMIT", "20/s")

celery_app = Celery("bench-ratelimit", broker=BROKER, set_as_current=False)
celery_app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
_http: httpx.Client | None = None


@celery_app.task(name="bench.post_lyrics", rate_limit=RATE_LIMIT, ignore_result=True)  # type: ignore[untyped-decorator]
def post_lyrics() -> int:
    """One cheap submission to the emulator, paced only by Celery's ``rate_limit``."""
    global _http
    if _http is None:
        headers = {"authorization": f"Bearer {os.environ['BENCH_TOKEN']}"}
        _http = httpx.Client(
            base_url=os.environ["BENCH_EMULATOR_URL"], headers=headers, trust_env=False, timeout=10
        )
    return _http.post("/producer/lyrics", json={"prompt": "celery"}).status_code


def start_workers(count: int, env: dict[str, str], cwd: Path) -> list[subprocess.Popen[bytes]]:
    """Start ``count`` independent worker instances (solo pool: one process each).

    ``--prefetch-multiplier 1``: with Celery's default of 4 a rate-limited solo
    worker on Redis managed only ~2 tasks/s here (held messages stall the
    fetch loop), which would flatter the baseline; with 1 it reaches its limit.
    """
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "bench.ratelimit_celery:celery_app",
        "worker",
        "--pool",
        "solo",
        "--prefetch-multiplier",
        "1",
        "--loglevel",
        "WARNING",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-Q",
        env["BENCH_QUEUE"],
    ]
    return [
        subprocess.Popen(
            [*command, "-n", f"bench{i}-{os.getpid()}@%h"],
            env={**os.environ, **env},
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(count)
    ]


def wait_ready(app: Celery, count: int, timeout_s: float = 90.0) -> None:
    """Block until ``count`` workers answer a ping."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        if len(replies) >= count:
            return
    raise RuntimeError(f"only {len(replies)} of {count} Celery workers came up")


def publish(app: Celery, count: int, queue: str) -> None:
    """Queue ``count`` submissions over one producer connection."""
    task = app.tasks["bench.post_lyrics"]
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            task.apply_async(producer=producer, queue=queue)


def stop_workers(workers: list[subprocess.Popen[bytes]], app: Celery, queue: str) -> None:
    """Stop the workers (they are only pacing HTTP calls) and drop what is left queued."""
    for worker in workers:
        worker.send_signal(signal.SIGKILL)
    for worker in workers:
        worker.wait(timeout=30)
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)
