"""Callbacks are hints: a forged body is never collected, a huge or deep one never parsed.

Over real HTTP: the receiver in uvicorn, a real Celery worker, the real emulator. The
emulator drops its own callbacks here, so the only callback is the forged one; the
poller is off, so only the receiver can finish the step.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from producer_client import TaskOutcome
from producer_emulator import FaultConfig
from tests.integration.fleet import (
    Fleet,
    check_artifacts,
    fast_emulator_config,
    fleet,
    loopback_socket,
    serving,
)
from workers.completion.callbacks import MAX_BODY_BYTES, callback_url
from workers.storage.urlguard import allow_entry_for
from workers.tasks.audios import generate

# Songs of ~1 s, and no callback from the emulator itself.
EMULATOR = {"generation_s": 100.0, "generation_jitter_s": 0.0}


class Bait:
    """A server holding what a forger wants stored; counts every request it gets."""

    def __init__(self) -> None:
        self.hits = 0
        self._lock = threading.Lock()

    async def serve(self, _: Request) -> Response:
        with self._lock:
            self.hits += 1
        return Response(b"forged audio bytes", media_type="audio/mpeg")


@pytest.fixture
def bait() -> Iterator[tuple[Bait, str]]:
    handler = Bait()
    app = Starlette(routes=[Route("/{path:path}", handler.serve)])
    with serving(app, loopback_socket()) as url:
        yield handler, url


def _signed(f: Fleet, callback_id: str) -> str:
    assert f.receiver_url is not None and f.services.callback_secret is not None
    return callback_url(f.receiver_url, f.services.callback_secret, callback_id)


def _wait_for_continuation(f: Fleet) -> Any:
    store, token = f.services.continuations, f.services.token_id
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ids = store.due(token, now=float("inf"), limit=1)
        cont = store.get(ids[0]) if ids else None
        if cont is not None:
            return cont
        time.sleep(0.02)
    raise AssertionError("no continuation was saved")


def _wait_until_finished(f: Fleet, api_task_id: str) -> Any:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        record = f.services.client.tasks.retrieve(api_task_id)
        if record is not None and record.outcome is not TaskOutcome.PENDING:
            return record
        time.sleep(0.05)
    raise AssertionError("the emulator did not finish the song")


def test_forged_callback_body_stores_the_providers_real_song(
    redis_url: str, tmp_path: Path, bait: tuple[Bait, str]
) -> None:
    handler, bait_url = bait
    emulator = fast_emulator_config(**EMULATOR, faults=FaultConfig(callback_drop=1.0))
    # The bait is allowed by the download guard on purpose: only the receiver may stop it.
    with fleet(
        redis_url,
        tmp_path,
        callbacks=True,
        poller=False,
        emulator=emulator,
        download_allow_hosts=[allow_entry_for(bait_url)],
    ) as f:
        pending = generate.delay(params={"prompt": "the real one", "seed": "3"})
        cont = _wait_for_continuation(f)
        forged = {
            "success": True,
            "task_id": cont.api_task_id,
            "data": [
                {
                    "id": "forged-id",
                    "title": "FORGED",
                    "state": "succeeded",
                    "audio_url": f"{bait_url}/song.mp3",
                    "image_url": f"{bait_url}/cover.png",
                }
            ],
        }
        url = _signed(f, cont.callback_id)
        with httpx.Client(timeout=10, trust_env=False) as http:
            early = http.post(url, json=forged).status_code
            record = _wait_until_finished(f, cont.api_task_id)
            late = http.post(url, json=forged).status_code
        result = pending.get(timeout=30)
    real = record.audio_result().data[0]
    assert (early, late) == (202, 200)
    assert result["title"] == real.title != "FORGED"
    assert result["audio_id"] == real.id
    sources = {a["source_url"] for a in result["artifacts"] if a["source_url"]}
    assert sources and all(s.startswith(f.emulator.url) for s in sources)
    assert handler.hits == 0
    check_artifacts(tmp_path, result)


def _raw_post(receiver_url: str, path: str, head: dict[str, str], body: bytes) -> bytes:
    """POST over a raw socket, send ``body`` and no more; return the reply's first bytes."""
    host, port = receiver_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        lines = [f"POST {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in head.items())]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return sock.recv(200)  # times out (fails) if the receiver waits for the rest


def test_oversized_callback_body_is_refused_without_reading_it(
    redis_url: str, tmp_path: Path
) -> None:
    with fleet(redis_url, tmp_path, callbacks=True, poller=False) as f:
        assert f.receiver_url is not None
        path = httpx.URL(_signed(f, "any-id")).path
        declared = _raw_post(f.receiver_url, path, {"Content-Length": str(200 * 1024 * 1024)}, b"{")
        # No length: chunked, 1.5 MiB sent of a body that never ends.
        size = MAX_BODY_BYTES + MAX_BODY_BYTES // 2
        chunk = f"{size:x}\r\n".encode() + b" " * size + b"\r\n"
        streamed = _raw_post(f.receiver_url, path, {"Transfer-Encoding": "chunked"}, chunk)
    assert declared.startswith(b"HTTP/1.1 413")
    assert streamed.startswith(b"HTTP/1.1 413")


def test_deeply_nested_callback_body_is_400(redis_url: str, tmp_path: Path) -> None:
    with fleet(redis_url, tmp_path, callbacks=True, poller=False) as f:
        url = _signed(f, "any-id")
        with httpx.Client(timeout=10, trust_env=False) as http:
            deep = http.post(url, content=b"[" * 100_000 + b"]" * 100_000)
    assert deep.status_code == 400
    assert "nested" in deep.json()["detail"]
