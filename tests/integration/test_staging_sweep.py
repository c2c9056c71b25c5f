"""A worker SIGKILLed in the middle of a download leaves a partial upload in staging;
the next worker start sweeps it, once it is older than any download may run, and
leaves a younger one alone (issue 9, item 6).

Real processes: a ``celery -A pipelines.app worker`` subprocess downloads from a local
server that sends part of a body and then stalls; it is SIGKILLed mid-download.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import redis

from pipelines.app import app
from workers.app import STAGING_SWEEP_MARGIN_S, time_limit_s
from workers.completion.continuations import Continuation
from workers.completion.outcome import ProviderOutcome
from workers.completion.resume import resume

ROOT = Path(__file__).resolve().parents[2]
VISIBILITY_S = 60
SENT_BYTES = 9 * 1024 * 1024  # past one multipart part (8 MiB): the upload has begun
OLD_S = time_limit_s(VISIBILITY_S) + STAGING_SWEEP_MARGIN_S + 60


@contextmanager
def stalling_server() -> Iterator[tuple[str, threading.Event]]:
    """Serve a WAV that sends :data:`SENT_BYTES` of a bigger body, then stalls."""
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "audio/wav")
            self.send_header("content-length", str(SENT_BYTES * 4))
            self.end_headers()
            self.wfile.write(b"\0" * SENT_BYTES)
            self.wfile.flush()
            stop.wait(60)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", stop
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "celery", "-A", "pipelines.app", "worker"]
    command += ["--pool", "threads", "-c", "2", "--without-mingle", "--without-gossip"]
    command += ["-n", f"sweep-{uuid.uuid4().hex[:6]}@%h", "--loglevel", "INFO"]
    with log.open("ab") as out:
        return subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )


def wait_until(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def staging_files(storage: Path) -> list[Path]:
    staging = storage / ".staging"
    return sorted(staging.iterdir()) if staging.is_dir() else []


def test_a_killed_download_is_swept_at_the_next_worker_start(
    redis_url: str, tmp_path: Path
) -> None:
    storage = tmp_path / "artifacts"
    env = {
        "REDIS_URL": redis_url,
        "PRODUCER_API_TOKEN": "sweep-token",
        "PRODUCER_BASE_URL": "http://127.0.0.1:9",
        "PRODUCER_STORAGE_URL": f"file://{storage}",
        "PRODUCER_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S),
        "PRODUCER_LOG_LEVEL": "INFO",
    }
    app.conf.update(broker_url=redis_url, result_backend=redis_url)
    with stalling_server() as (url, _):
        # The stalling server is on loopback: allow exactly it (downloads refuse internal hosts).
        env["PRODUCER_DOWNLOAD_ALLOW_HOSTS"] = url.removeprefix("http://")
        first = start_worker(env, tmp_path / "worker1.log")
        try:
            now = time.time()
            cont = Continuation(
                celery_task_id=str(uuid.uuid4()),
                api_task_id="api-sweep",
                token_id="t",
                step_key="sweep/1/generate",
                action="generate",
                submitted_at=now,
                deadline_at=now + 60,
                context={"context": {"batch": "sweep", "row": 1, "step": "generate"}},
            )
            body = {"success": True, "data": [{"id": "song", "audio_url": f"{url}/song.wav"}]}
            resume(app, cont, ProviderOutcome.from_callback(body))
            wait_until(lambda: staging_files(storage), 30, "the download never began")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
    leftovers = staging_files(storage)
    assert leftovers and all("#" in p.name for p in leftovers), leftovers
    for path in leftovers:  # a crash long ago: older than any download may run
        os.utime(path, (time.time() - OLD_S, time.time() - OLD_S))
    young = storage / ".staging" / f"{uuid.uuid4().hex}#1"
    young.write_bytes(b"a download in progress")

    redis.Redis.from_url(redis_url).delete("celery", "unacked", "unacked_index")
    second = start_worker(env, tmp_path / "worker2.log")
    try:
        wait_until(lambda: staging_files(storage) == [young], 30, "the leftover was not swept")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(15)
