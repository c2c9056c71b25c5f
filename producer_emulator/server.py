"""Running the emulator: a uvicorn thread for tests, a blocking ``serve`` for the CLI.

``EmulatorServer`` binds its own socket (port 0 by default, so parallel
tests never collide), runs uvicorn on a daemon thread with its own event
loop, and talks to the admin endpoints over HTTP like any other client, so
no test ever touches the server's state from the wrong thread.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from producer_emulator.app import create_app
from producer_emulator.config import EmulatorConfig

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 5.0
_POLL_S = 0.002


class EmulatorServer:
    """The emulator on ``127.0.0.1:<free port>`` in a background thread.

    >>> with EmulatorServer(EmulatorConfig(tokens=["t"], time_scale=0.01)) as emu:
    ...     emu.url  # doctest: +SKIP
    'http://127.0.0.1:54321'
    """

    def __init__(
        self, config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or EmulatorConfig()
        self._host = host
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._admin: httpx.Client | None = None
        self.url = ""

    def start(self) -> EmulatorServer:
        """Bind, start the thread and return once the server accepts connections."""
        # proto must say TCP: asyncio only sets TCP_NODELAY on sockets that do, and
        # without it every keep-alive reply stalls ~40 ms on delayed ACKs.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        port = sock.getsockname()[1]
        self.url = f"http://{self._host}:{port}"
        config = uvicorn.Config(
            create_app(self.config),
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name="producer-emulator",
            daemon=True,
        )
        self._thread.start()
        self._wait_started()
        self._admin = httpx.Client(base_url=self.url, timeout=10.0, trust_env=False)
        return self

    def _wait_started(self) -> None:
        assert self._server is not None
        assert self._thread is not None
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the emulator did not start")
            time.sleep(_POLL_S)

    def stop(self) -> None:
        """Stop the server and join its thread (idempotent)."""
        if self._admin is not None:
            # Answers held sync requests (500) so shutdown needs no grace period.
            with contextlib.suppress(httpx.HTTPError):
                self._admin.post("/_emulator/reset", json={"keep_config": True})
            self._admin.close()
            self._admin = None
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(_STOP_TIMEOUT_S)
        if self._thread.is_alive():  # a held sync request outlived the grace period
            self._server.force_exit = True
            self._thread.join(_STOP_TIMEOUT_S)
        self._server = None
        self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def counters(self, *, fingerprints: bool = True) -> dict[str, Any]:
        """``GET /_emulator/counters`` (``fingerprints=False``: without the per-fingerprint map)."""
        params = {} if fingerprints else {"fingerprints": "false"}
        return self._call("GET", "/_emulator/counters", params=params)  # type: ignore[no-any-return]

    def requests(self, since: float = 0.0) -> list[dict[str, Any]]:
        """``GET /_emulator/requests?since=...``: the request log from ``since`` (epoch s)."""
        return self._call("GET", "/_emulator/requests", params={"since": since})  # type: ignore[no-any-return]

    def configure(self, **changes: Any) -> dict[str, Any]:
        """``POST /_emulator/config``: change limits, faults, time scale ... at runtime."""
        return self._call("POST", "/_emulator/config", json=changes)  # type: ignore[no-any-return]

    def reset(self, *, keep_config: bool = False) -> None:
        """``POST /_emulator/reset``: forget tasks, songs, counters, buckets, config changes."""
        self._call("POST", "/_emulator/reset", json={"keep_config": keep_config})

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._admin is None:
            raise RuntimeError("the emulator is not running")
        reply = self._admin.request(method, path, **kwargs)
        if reply.status_code >= 400:
            raise ValueError(f"{method} {path} -> {reply.status_code}: {reply.text}")
        return reply.json()


def serve(host: str = "127.0.0.1", port: int = 8787, config: EmulatorConfig | None = None) -> None:
    """Serve the emulator in the foreground until Ctrl-C (uvicorn handles the signal)."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host=host,
            port=port,
            log_level="info",
            timeout_graceful_shutdown=2,
        )
    )
    server.run()
