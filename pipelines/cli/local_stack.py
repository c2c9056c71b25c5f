"""Everything a one-machine run needs, started in-process and stopped on exit.

:func:`local_stack` starts, unless already configured:

* an embedded Redis when ``REDIS_URL`` is unset (``workers.embedded_redis``);
* the API emulator when ``PRODUCER_API_TOKEN`` is unset (songs take seconds,
  not minutes: ``time_scale``);
* a Celery worker (threads pool) in a background thread, on its own app built by
  :func:`pipelines.app.build_app` for these settings (the embedded Redis URL);
* the poller in a background thread.

Nothing it starts outlives it: the servers run as threads or as a child
process started with ``PR_SET_PDEATHSIG``, and every piece is stopped in
reverse order on exit, Ctrl-C included.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from celery import Celery, _state
from celery.worker import WorkController

from pipelines.app import build_app
from producer_emulator import EmulatorConfig, EmulatorServer
from workers.completion.wiring import poller_for
from workers.embedded_redis import EmbeddedRedis
from workers.runtime import Services, build_services, set_services
from workers.settings import Settings
from workers.storage.urlguard import allow_entry_for

EMULATOR_TOKEN = "local-emulator-token"  # noqa: S105 - the emulator's own, not a secret


@dataclass
class LocalStack:
    """Handles on what :func:`local_stack` started."""

    settings: Settings
    services: Services
    app: Celery
    emulator: EmulatorServer | None
    redis: EmbeddedRedis | None

    def describe(self) -> dict[str, str]:
        """What runs where, for the startup banner (no secrets)."""
        return {
            "redis": "embedded" if self.redis else "REDIS_URL",
            "api": f"emulator at {self.emulator.url}" if self.emulator else self.settings.base_url,
            "storage": self.settings.storage_url,
        }


def emulator_config(*, time_scale: float, sample_rate: int = 16000) -> EmulatorConfig:
    """The emulator a local run uses: fast songs, real media, generous limits."""
    return EmulatorConfig(
        tokens=[EMULATOR_TOKEN],
        time_scale=time_scale,
        sample_rate=sample_rate,
        submit_rate_per_s=None,
        poll_rate_per_s=None,
        max_concurrency=None,
    )


@contextmanager
def local_stack(
    settings: Settings, *, time_scale: float = 0.05, concurrency: int = 4
) -> Iterator[LocalStack]:
    """Start what ``settings`` lacks, a worker and the poller; stop all on exit."""
    with ExitStack() as stack:
        embedded = None
        if not settings.redis_url:
            embedded = stack.enter_context(EmbeddedRedis())
            settings = settings.model_copy(update={"redis_url": embedded.url})
        emulator = None
        if settings.api_token is None:
            emulator = stack.enter_context(EmulatorServer(emulator_config(time_scale=time_scale)))
            settings = _with_emulator(settings, emulator.url)
        services = build_services(settings)
        stack.callback(services.close)
        set_services(services)
        stack.callback(set_services, None)
        # Broker and results both on this run's Redis (the embedded one, if started).
        celery_app = build_app(settings.model_copy(update={"broker_url": settings.redis_url}))
        stack.callback(celery_app.close)
        stack.enter_context(_worker_thread(celery_app, concurrency))
        stack.enter_context(_poller_thread(services, celery_app))
        yield LocalStack(settings, services, celery_app, emulator, embedded)


def _with_emulator(settings: Settings, url: str) -> Settings:
    # The emulator finishes songs in seconds, so poll it often; its own limits are off.
    update: dict[str, Any] = {
        "api_token": EMULATOR_TOKEN,
        "base_url": url,
        "poll_first_after_s": 0.5,
        "poll_max_interval_s": 1.0,
        "poll_rate_per_s": 20.0,
        "submit_rate_per_s": 20.0,
        "submit_burst": 20.0,
        "max_in_flight": 100,
        # Its songs are served from loopback: allow this emulator (host:port) and no more.
        "download_allow_hosts": [*settings.download_allow_hosts, allow_entry_for(url)],
    }
    return Settings.model_validate({**settings.model_dump(), **update})


@contextmanager
def _worker_thread(app: Celery, concurrency: int) -> Iterator[WorkController]:
    # What `celery worker` does before it builds its controller: register every
    # task and make this app the one tasks and results resolve to in all threads.
    # Celery keeps no public getter of the default app: restore it on exit, so code
    # run after the stack (tests, a caller) does not send through this closed app.
    previous = (_state.default_app, getattr(_state._tls, "current_app", None))
    app.finalize()
    app.set_current()
    app.set_default()
    worker = app.WorkController(
        concurrency=concurrency,
        pool="threads",
        loglevel="WARNING",
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
    )
    thread = threading.Thread(target=worker.start, name="celery-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop(in_sighandler=False, exitcode=0)
        thread.join(timeout=10)
        _state.set_default_app(previous[0])
        _state._set_current_app(previous[1])


@contextmanager
def _poller_thread(services: Services, app: Celery) -> Iterator[None]:
    stop = threading.Event()
    poller = poller_for(services, app)
    thread = threading.Thread(
        target=poller.run, args=(stop,), kwargs={"idle_sleep_s": 0.1}, name="poller", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
