"""Helpers for the emulator's tests: a fast config, clients, a callback receiver.

A plain module with a distinctive name (no conftest in this folder): test
modules import what they use, including the fixtures, explicitly.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from producer_emulator import EmulatorConfig, EmulatorServer

TOKEN = "test-token"
OTHER_TOKEN = "other-token"
# 40 emulated seconds of generation take 80 ms.
FAST_SCALE = 0.002


def fast_config(**changes: Any) -> EmulatorConfig:
    """Defaults tuned for tests: fast, no jitter, no poll/concurrency caps, seeded."""
    settings: dict[str, Any] = {
        "tokens": [TOKEN, OTHER_TOKEN],
        "generation_s": 40.0,
        "generation_jitter_s": 0.0,
        "time_scale": FAST_SCALE,
        "poll_rate_per_s": None,
        "max_concurrency": None,
        "sample_rate": 8000,
        "seed": 1234,
    }
    settings.update(changes)
    return EmulatorConfig(**settings)


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    """One emulator per test module (starting one costs ~0.05 s, stopping ~0.2 s)."""
    with EmulatorServer(fast_config()) as emu:
        yield emu


@pytest.fixture
def emu(server: EmulatorServer) -> EmulatorServer:
    """The module's emulator, reset to the fast config before the test."""
    server.reset()
    return server


@pytest.fixture
def api(emu: EmulatorServer) -> Iterator[httpx.Client]:
    """A client authorised with ``TOKEN``."""
    with client_for(emu, TOKEN) as client:
        yield client


def client_for(emu: EmulatorServer, token: str | None) -> httpx.Client:
    """An httpx client on the emulator, with a bearer header unless ``token`` is None."""
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    return httpx.Client(base_url=emu.url, headers=headers, timeout=30.0, trust_env=False)


def submit_async(api: httpx.Client, **body: Any) -> str:
    """POST an async audios request and return its task id."""
    reply = api.post("/producer/audios", json={**body, "async": True})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["task_id"])


def generate(api: httpx.Client, **body: Any) -> dict[str, Any]:
    """A finished song item from a sync ``generate``."""
    payload = {"action": "generate", "prompt": "a test song", **body}
    reply = api.post("/producer/audios", json=payload)
    assert reply.status_code == 200, reply.text
    item: dict[str, Any] = reply.json()["data"][0]
    return item


def retrieve(api: httpx.Client, task_id: str) -> dict[str, Any]:
    """One task record (``{}`` when unknown)."""
    reply = api.post("/producer/tasks", json={"action": "retrieve", "id": task_id})
    assert reply.status_code == 200, reply.text
    record: dict[str, Any] = reply.json()
    return record


def wait_finished(api: httpx.Client, task_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """Poll until the record has ``finished_at``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = retrieve(api, task_id)
        if "finished_at" in record:
            return record
        time.sleep(0.01)
    raise AssertionError(f"task {task_id} did not finish")


def error_of(reply: httpx.Response) -> tuple[int, str, str]:
    """``(status, code, message)`` of an error reply."""
    body = reply.json()
    return reply.status_code, body["error"]["code"], body["error"]["message"]


class CallbackReceiver:
    """A local webhook receiver (http.server thread) recording every POSTed JSON body."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length))
                with receiver._cond:
                    receiver.bodies.append(body)
                    receiver._cond.notify_all()
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/hook/secret"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> CallbackReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """Block until ``count`` bodies arrived; return them."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.bodies) >= count, timeout_s):
                raise AssertionError(f"expected {count} callbacks, got {len(self.bodies)}")
            return list(self.bodies)


class StaticFiles:
    """A local http.server thread serving fixed bytes per path (for /producer/upload)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                payload = files.get(self.path)
                self.send_response(200 if payload is not None else 404)
                self.send_header("content-length", str(len(payload or b"")))
                self.end_headers()
                self.wfile.write(payload or b"")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> StaticFiles:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
