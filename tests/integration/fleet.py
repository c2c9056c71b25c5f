"""A whole local fleet for tests: emulator, Redis, a Celery worker (threads) and the poller.

Optionally the callback receiver too (``fleet(..., callbacks=True)``): it runs in uvicorn
on a thread, and the workers hand the emulator signed callback URLs pointing at it.

Imported explicitly by the tests that need it (``from tests.integration.fleet import ...``).
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import uvicorn
from celery.contrib.testing.worker import start_worker
from starlette.types import ASGIApp

from pipelines.app import app
from producer_emulator import EmulatorConfig, EmulatorServer
from workers.completion.wiring import poller_for, receiver_for
from workers.runtime import Services, build_services, set_services
from workers.settings import Settings
from workers.storage.urlguard import allow_entry_for

TOKEN = "fleet-test-token"
CALLBACK_SECRET = "fleet-callback-secret"
_SERVER_START_TIMEOUT_S = 10.0


def fast_emulator_config(**overrides: Any) -> EmulatorConfig:
    """An emulator whose songs take ~0.2-0.4 s and whose limits do not get in the way."""
    base: dict[str, Any] = {
        "tokens": [TOKEN],
        "generation_s": 30.0,
        "generation_jitter_s": 10.0,
        "time_scale": 0.01,
        "sample_rate": 8000,
        "song_low_s": 20.0,
        "song_high_s": 40.0,
        "submit_rate_per_s": None,
        "poll_rate_per_s": None,
        "max_concurrency": None,
        "seed": 7,
    }
    base.update(overrides)
    return EmulatorConfig(**base)


def fleet_settings(
    redis_url: str, emulator_url: str, storage_dir: Path, **overrides: Any
) -> Settings:
    """Settings for a test fleet: fast polls, generous limits, storage in ``storage_dir``."""
    values: dict[str, Any] = {
        "api_token": TOKEN,
        "base_url": emulator_url,
        "redis_url": redis_url,
        "storage_url": f"file://{storage_dir}",
        "submit_rate_per_s": 200.0,
        "submit_burst": 50.0,
        "poll_rate_per_s": 50.0,
        "max_in_flight": 500,
        "poll_first_after_s": 0.05,
        "poll_max_interval_s": 0.2,
        "task_deadline_s": 60.0,
        "max_transient_retries": 3,
    }
    values.update(overrides)
    # The emulator serves its songs from loopback: allow it (host:port) and no more,
    # besides what a test allows on purpose.
    values["download_allow_hosts"] = [
        allow_entry_for(emulator_url),
        *overrides.get("download_allow_hosts", ()),
    ]
    return Settings(**values)


@dataclass
class Fleet:
    """Handles on a running fleet."""

    emulator: EmulatorServer
    services: Services
    redis: redis.Redis
    storage_dir: Path
    receiver_url: str | None = None

    @property
    def counters(self) -> dict[str, Any]:
        """The emulator's counters."""
        return self.emulator.counters()


@contextmanager
def running_poller(services: Services) -> Iterator[None]:
    """Run the poller in a thread for the duration of the block."""
    stop = threading.Event()
    thread = threading.Thread(
        target=poller_for(services, app).run,
        args=(stop,),
        kwargs={"idle_sleep_s": 0.02},
        daemon=True,
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def loopback_socket() -> socket.socket:
    """A TCP socket bound to ``127.0.0.1:<free port>``, for a uvicorn server.

    ``IPPROTO_TCP`` is given explicitly: asyncio sets ``TCP_NODELAY`` only on sockets
    whose proto says TCP, and without it keep-alive replies stall ~40 ms on delayed
    ACKs (see ``producer_emulator/server.py``).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serving(asgi: ASGIApp, sock: socket.socket) -> Iterator[str]:
    """Serve ``asgi`` on the bound ``sock`` in a uvicorn thread; yield its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(asgi, log_level="warning", access_log=False, timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="callback-receiver", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + _SERVER_START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the callback receiver did not start")
        time.sleep(0.005)
    host, port = sock.getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


@contextmanager
def fleet(
    redis_url: str,
    storage_dir: Path,
    *,
    emulator: EmulatorConfig | None = None,
    poller: bool = True,
    concurrency: int = 4,
    callbacks: bool = False,
    **settings: Any,
) -> Iterator[Fleet]:
    """Start emulator + worker (+ poller, + callback receiver) against ``redis_url``.

    ``callbacks=True`` binds the receiver's socket first, so its URL can go into the
    settings (``public_base_url``, ``callback_secret``) the worker submits with.
    Everything is torn down after the block.
    """
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    sock = loopback_socket() if callbacks else None
    if sock is not None:
        host, port = sock.getsockname()[:2]
        settings = {
            "public_base_url": f"http://{host}:{port}",
            "callback_secret": CALLBACK_SECRET,
            **settings,
        }
    with EmulatorServer(emulator or fast_emulator_config()) as emu:
        svc = build_services(fleet_settings(redis_url, emu.url, storage_dir, **settings))
        set_services(svc)
        app.conf.update(broker_url=redis_url, result_backend=redis_url)
        try:
            with start_worker(
                app,
                pool="threads",
                concurrency=concurrency,
                perform_ping_check=False,
                loglevel="WARNING",
            ):
                handles = Fleet(emu, svc, client, storage_dir)
                with _receiver(svc, sock) as handles.receiver_url:
                    if poller:
                        with running_poller(svc):
                            yield handles
                    else:
                        yield handles
        finally:
            set_services(None)
            svc.close()
            client.close()


@contextmanager
def cli_fleet(redis_url: str, storage_dir: Path, **overrides: Any) -> Iterator[Fleet]:
    """A :func:`fleet`, a feeder thread, and the CLI's environment pointing at them.

    For tests that drive ``producer-batch`` commands (typer's runner, in this process)
    against real workers: REDIS_URL and the storage URL are set for the CLI's own
    settings, the token too, and the feeder admits rows as the service would.
    """
    import pipelines.batches.tasks
    from pipelines.batches.state import BatchState
    from pipelines.cli import _mount
    from workers.settings import get_settings

    with pytest.MonkeyPatch.context() as mp, fleet(redis_url, storage_dir, **overrides) as f:
        mp.setenv("REDIS_URL", redis_url)
        mp.setenv("PRODUCER_STORAGE_URL", f"file://{storage_dir}")
        mp.setenv("PRODUCER_API_TOKEN", TOKEN)
        get_settings.cache_clear()
        _mount()
        feeder = pipelines.batches.tasks.feeder_for(f.services, app)
        stop = threading.Event()
        thread = threading.Thread(
            target=feeder.run, args=(stop,), kwargs={"idle_sleep_s": 0.05}, daemon=True
        )
        thread.start()
        try:
            yield f
        finally:
            stop.set()
            thread.join(timeout=5)
            BatchState(f.redis).set_window(None)
            get_settings.cache_clear()


@contextmanager
def _receiver(svc: Services, sock: socket.socket | None) -> Iterator[str | None]:
    if sock is None:
        yield None
        return
    with serving(receiver_for(svc, app), sock) as url:
        yield url


def check_artifacts(storage_dir: Path, result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Assert every artifact of a step result is stored with its recorded sha256 and size.

    Returns the artifacts by kind. The metadata JSON must be the step result itself
    (without the metadata artifact, which is appended after it was written).
    """
    by_kind: dict[str, dict[str, Any]] = {}
    for artifact in result["artifacts"]:
        data = (storage_dir / artifact["key"]).read_bytes()
        assert len(data) == artifact["size"] > 0, artifact["key"]
        assert hashlib.sha256(data).hexdigest() == artifact["sha256"], artifact["key"]
        assert artifact["key"].startswith(".") is False
        by_kind[artifact["kind"]] = artifact
    meta = by_kind.get("metadata")
    if meta is not None:
        recorded = json.loads((storage_dir / meta["key"]).read_bytes())
        expected = {**result, "artifacts": [a for a in result["artifacts"] if a is not meta]}
        assert recorded == expected
    return by_kind
