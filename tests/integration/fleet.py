"""A whole local fleet for tests: emulator, Redis, a Celery worker (threads) and the poller.

Imported explicitly by the tests that need it (``from tests.integration.fleet import ...``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from celery.contrib.testing.worker import start_worker

from producer_client.emulator import EmulatorConfig, EmulatorServer
from workers.app import app
from workers.completion.wiring import poller_for
from workers.runtime import Services, build_services, set_services
from workers.settings import Settings

TOKEN = "fleet-test-token"


def fast_emulator_config(**overrides: Any) -> EmulatorConfig:
    """An emulator whose songs take ~0.2-0.4 s and whose limits do not get in the way."""
    base: dict[str, Any] = dict(
        tokens=[TOKEN], generation_s=30.0, generation_jitter_s=10.0, time_scale=0.01,
        sample_rate=8000, song_low_s=20.0, song_high_s=40.0, submit_rate_per_s=None,
        poll_rate_per_s=None, max_concurrency=None, seed=7,
    )
    base.update(overrides)
    return EmulatorConfig(**base)


def fleet_settings(redis_url: str, emulator_url: str, storage_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test fleet: fast polls, generous limits, storage in ``storage_dir``."""
    values: dict[str, Any] = dict(
        api_token=TOKEN, base_url=emulator_url, redis_url=redis_url,
        storage_url=f"file://{storage_dir}", submit_rate_per_s=200.0, submit_burst=50.0,
        poll_rate_per_s=50.0, max_in_flight=500, poll_first_after_s=0.05,
        poll_max_interval_s=0.2, task_deadline_s=60.0, max_transient_retries=3,
    )
    values.update(overrides)
    return Settings(**values)


@dataclass
class Fleet:
    """Handles on a running fleet."""

    emulator: EmulatorServer
    services: Services
    redis: redis.Redis

    @property
    def counters(self) -> dict[str, Any]:
        """The emulator's counters."""
        return self.emulator.counters()


@contextmanager
def running_poller(services: Services) -> Iterator[None]:
    """Run the poller in a thread for the duration of the block."""
    stop = threading.Event()
    thread = threading.Thread(target=poller_for(services, app).run, args=(stop,),
                              kwargs={"idle_sleep_s": 0.02}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


@contextmanager
def fleet(redis_url: str, storage_dir: Path, *, emulator: EmulatorConfig | None = None,
          poller: bool = True, concurrency: int = 4, **settings: Any) -> Iterator[Fleet]:
    """Start emulator + worker (+ poller) against ``redis_url``; tear all down after."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    with EmulatorServer(emulator or fast_emulator_config()) as emu:
        svc = build_services(fleet_settings(redis_url, emu.url, storage_dir, **settings))
        set_services(svc)
        app.conf.update(broker_url=redis_url, result_backend=redis_url)
        try:
            with start_worker(app, pool="threads", concurrency=concurrency,
                              perform_ping_check=False, loglevel="WARNING"):
                if poller:
                    with running_poller(svc):
                        yield Fleet(emu, svc, client)
                else:
                    yield Fleet(emu, svc, client)
        finally:
            set_services(None)
            svc.close()
            client.close()
