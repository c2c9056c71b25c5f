"""The Celery app factory of the workers (not an entry point: run ``celery -A pipelines.app``).

:func:`create_app` builds a Celery app for a :class:`~workers.settings.Settings`; it never
connects or raises. The one app every worker, beat, producer and command uses is built
from it in :mod:`pipelines.app` (``celery -A pipelines.app worker|beat|inspect|events``),
which lists every task module. This module holds no app: ``celery -A workers.app ...``
stops at once with :data:`WRONG_ENTRY_MESSAGE` (a worker without the batch row tasks
would discard their messages and strand the rows). URLs: the broker is
``PRODUCER_BROKER_URL`` or else ``REDIS_URL``; the result backend is ``REDIS_URL``. With
no ``REDIS_URL`` at all, a worker exits at once (code 2) with :data:`MISSING_REDIS_MESSAGE`;
with no ``PRODUCER_API_TOKEN``, with :data:`MISSING_API_MESSAGE` (its steps and the
row errback would all fail and strand rows as ``running``). The in-process worker of
``producer-batch run``/``demo`` is built without ``celery worker`` and carries the
emulator's token.

Configuration chosen, and why:

=================================================  =========================================
``task_serializer`` / ``accept_content``           JSON only: no pickle from a shared broker
``task_acks_late`` + ``task_reject_on_worker_lost``  a task lost with its worker runs again;
                                                   the ledger makes the rerun safe
``worker_prefetch_multiplier = 1``                 no worker hoards messages it cannot start
``visibility_timeout`` = 1800 s (settings)          longer than any task body: no task waits
                                                   on the provider; the longest body is a
                                                   ``collect`` streaming up to 1 GiB (~9 min
                                                   at 2 MB/s). A dead machine's messages
                                                   come back within 30 min. Countdowns and
                                                   ETAs must stay far below it (Redis
                                                   redelivers them after it).
``task_time_limit`` = max(visibility - 300 s,      so no body can outlive the visibility
visibility x 0.8)                                  timeout and be delivered twice in parallel
                                                   (the 80 % share keeps it positive when a
                                                   test sets a visibility of a few seconds)
short visibility (< 1000 s): restore sweeps        kombu looks for unacked messages of dead
every visibility / 5 s                             workers only every 10 x 10 s by default;
                                                   with a short visibility (chaos tests) the
                                                   sweep and its mutex must be quicker, or a
                                                   SIGKILLed worker's messages wait minutes
``result_expires`` = 86400 s (settings)            results are read within minutes (chains,
                                                   ``.get()``); a day covers a long batch
``task_track_started``                             STARTED is visible to ``status`` commands
``broker_connection_retry_on_startup``             a worker waits for Redis instead of dying
``broker_transport`` = :mod:`workers.broker`         kombu's Redis transport, patched so a
(Redis brokers only)                               worker rides out a Redis restart (an
                                                   upstream fault, see that module)
``worker_cancel_long_running_tasks_on_connection_loss``  a task whose ack was lost with the
                                                   connection is redelivered anyway; cancel it
``producer_app = True``                            marks an app built here: a task sent from
                                                   any other app (Celery's fallback default
                                                   app publishes to amqp://localhost) is
                                                   refused by :class:`ProducerTask`
RabbitMQ (``amqp://`` broker URL)                  quorum queue, publisher confirms, native
                                                   delayed delivery; no Redis transport or
                                                   visibility options (:mod:`workers.rabbitmq`)
``producer_api_configured``                        whether the settings hold an API token (the
                                                   token itself stays out of the config); a
                                                   worker without one refuses to start
=================================================  =========================================

Task modules: the caller lists them (``include``); the workers' tasks register with
``celery.shared_task`` and attach to whichever app is built. Logging: the
``setup_logging`` signal calls :func:`workers.logging.configure_logging` (Celery then
leaves logging alone) and each task's id and name are bound to its log lines; these
handlers are connected by :func:`create_app`, once per process.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, NoReturn

import structlog
from celery import Celery, Task, signals

from workers.broker import transport_for
from workers.logging import (
    bind_task_context,
    clear_task_context,
    configure_logging,
    register_secret,
)
from workers.rabbitmq import is_amqp, rabbitmq_config
from workers.settings import Settings
from workers.storage.staging import StagingSweeper

__all__ = [
    "APP_MARKER",
    "MISSING_API_MESSAGE",
    "MISSING_REDIS_MESSAGE",
    "WRONG_ENTRY_MESSAGE",
    "ProducerTask",
    "celery_config",
    "create_app",
    "install_signal_handlers",
    "time_limit_s",
    "transport_options",
]

APP_MARKER = "producer_app"
"""Configuration key set to True on every app :func:`create_app` builds."""
WRONG_ENTRY_MESSAGE = (
    "workers.app is not a Celery entry point: it lacks the batch row and schedule tasks, "
    "so a worker started from it would discard their messages and strand batch rows. "
    "Start the one Producer app instead: `celery -A pipelines.app worker` (also beat, "
    "inspect, events)."
)
MISSING_REDIS_MESSAGE = (
    "No Redis configured for the Producer workers: set REDIS_URL (e.g. "
    "REDIS_URL=redis://127.0.0.1:6379/0) and start the worker again, or use "
    "`producer-batch run`, which starts an embedded Redis for you."
)
MISSING_API_MESSAGE = (
    "No API token configured for the Producer workers: set PRODUCER_API_TOKEN and start "
    "the worker again (every step would fail and its row would never end), or use "
    "`producer-batch run`, which starts a local emulator with its own token."
)
API_CONFIGURED_KEY = "producer_api_configured"
# Margin between the hard task time limit and the broker's visibility timeout.
_TIME_LIMIT_MARGIN_S = 300
# With a short visibility timeout the margin would leave nothing: use this share of it.
_SHORT_TIME_LIMIT_SHARE = 0.8
# kombu's default restore sweep runs every unacked_restore_interval (10 s) x
# unacked_restore_throttle (10): fine for 1800 s, far too slow below ~1000 s.
_DEFAULT_RESTORE_PERIOD_S = 100
_RESTORE_SWEEPS_PER_VISIBILITY = 5
_logging_options: dict[str, Any] = {"json": None, "level": "INFO"}


def celery_config(settings: Settings) -> dict[str, Any]:
    """Return the Celery configuration for ``settings`` (see the module docstring)."""
    broker_url = settings.broker_url or settings.redis_url
    config = {
        "broker_url": broker_url,
        "broker_transport": transport_for(broker_url),
        "result_backend": settings.redis_url,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": transport_options(settings.visibility_timeout_s),
        "task_time_limit": time_limit_s(settings.visibility_timeout_s),
        "result_expires": settings.result_expires_s,
        "task_track_started": True,
        "broker_connection_retry_on_startup": True,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_hijack_root_logger": False,
        APP_MARKER: True,
        API_CONFIGURED_KEY: settings.api_token is not None,
    }
    if is_amqp(broker_url):
        # The Redis transport options (visibility timeout, restore sweeps) do not apply.
        config.update(rabbitmq_config(settings.broker_queue))
    elif settings.broker_queue:
        config["task_default_queue"] = settings.broker_queue
    return config


def time_limit_s(visibility_timeout_s: int) -> float:
    """Hard time limit of a task body: always positive and below the visibility timeout."""
    return max(
        visibility_timeout_s - _TIME_LIMIT_MARGIN_S, visibility_timeout_s * _SHORT_TIME_LIMIT_SHARE
    )


def transport_options(visibility_timeout_s: int) -> dict[str, Any]:
    """Redis transport options: the visibility timeout, and quick sweeps when it is short."""
    options: dict[str, Any] = {"visibility_timeout": visibility_timeout_s}
    if visibility_timeout_s < _DEFAULT_RESTORE_PERIOD_S * 10:
        options.update(
            unacked_restore_interval=max(1, visibility_timeout_s // _RESTORE_SWEEPS_PER_VISIBILITY),
            unacked_restore_throttle=1,
            # A worker killed while it holds the sweep mutex blocks every sweep until
            # the mutex expires (300 s by default).
            unacked_mutex_expire=min(300, max(5, visibility_timeout_s)),
        )
    return options


def create_app(
    settings: Settings,
    *,
    include: Sequence[str],
    extra_conf: Mapping[str, Any] = MappingProxyType({}),
) -> Celery:
    """Build a Celery app for ``settings`` running the task modules ``include``.

    ``extra_conf`` is applied last (the entry point adds the beat configuration). The
    modules are imported by a worker at start, not here; the signal handlers the app
    relies on (logging, the Redis check, task log context) are connected once.
    """
    celery_app = Celery("producer", set_as_current=False)
    celery_app.conf.update(celery_config(settings))
    celery_app.conf.update(include=list(include), **extra_conf)
    _logging_options.update(json=settings.log_json, level=settings.log_level)
    register_secret(settings.api_token)
    register_secret(settings.callback_secret)
    install_signal_handlers()
    return celery_app


class ProducerTask(Task):  # type: ignore[misc]  # Celery is untyped: Task is Any
    """Base of every Producer task: refuses to publish through an app not built here.

    Tasks register with ``celery.shared_task``; used before :mod:`pipelines.app` is
    imported they would resolve to Celery's fallback default app, which publishes to
    ``amqp://localhost``. That is an error, said plainly, not a message sent elsewhere.
    """

    def apply_async(self, *args: Any, **kwargs: Any) -> Any:
        """Send the task, once its app is known to be the Producer app."""
        if not self.app.conf.get(APP_MARKER):
            raise RuntimeError(
                f"task {self.name} is not bound to the Producer Celery app: import "
                "pipelines.app (the one Celery app) before using producer tasks"
            )
        countdown = kwargs.get("countdown")
        if countdown and countdown > 0 and is_amqp(self.app.conf.broker_url):
            # Native delayed delivery (quorum queues) counts whole seconds and refuses a
            # countdown under one (kombu raises "countdown must be a positive number" for
            # int(0.4) == 0): round up, never earlier than asked.
            kwargs["countdown"] = math.ceil(countdown)
        return super().apply_async(*args, **kwargs)


def _setup_logging(**_: Any) -> None:
    # Connecting any receiver here stops Celery from installing its own handlers.
    configure_logging(json=_logging_options["json"], level=_logging_options["level"])


def _require_config(conf: Any = None, **_: Any) -> None:
    # Sent by `celery worker` only (not by the in-process WorkController of `run`).
    # SystemExit passes through Celery's signal dispatch (it catches Exception only),
    # so the worker stops before it tries the default amqp://localhost broker.
    if conf is None:
        return
    missing = None
    if not (conf.broker_url and conf.result_backend):
        missing = MISSING_REDIS_MESSAGE
    elif conf.get(APP_MARKER) and not conf.get(API_CONFIGURED_KEY, True):
        missing = MISSING_API_MESSAGE
    if missing is not None:
        print(missing, file=sys.stderr)
        raise SystemExit(2)


def _bind_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    # Pool threads run many tasks in turn: start each from a clean context.
    clear_task_context()
    bind_task_context(task_id=task_id, task=getattr(task, "name", None))


def _unbind_task(**_: Any) -> None:
    clear_task_context()


STAGING_SWEEP_EVERY_S = 3600.0
STAGING_SWEEP_MARGIN_S = 60.0
_sweepers: list[StagingSweeper] = []


def _start_staging_sweeper(**_: Any) -> None:
    # Killed downloads leave partial uploads in staging: sweep them at start and hourly,
    # only past the task time limit, which no download in progress can reach. worker_init
    # is sent by every WorkController (`celery worker`, the `run` stack, test workers).
    from workers.runtime import get_services  # the services are built by the worker

    try:
        svc = get_services()
    except Exception as exc:  # a worker without its configuration says so elsewhere
        structlog.get_logger(__name__).warning("staging_sweep_skipped", error=str(exc))
        return
    age_s = time_limit_s(svc.settings.visibility_timeout_s) + STAGING_SWEEP_MARGIN_S
    _sweepers.append(
        StagingSweeper(svc.store, older_than_s=age_s, every_s=STAGING_SWEEP_EVERY_S).start()
    )


def _stop_staging_sweeper(**_: Any) -> None:
    while _sweepers:
        _sweepers.pop().stop()


def install_signal_handlers() -> None:
    """Connect the workers' Celery signal handlers (idempotent: one uid per handler)."""
    for signal, handler in (
        (signals.setup_logging, _setup_logging),
        (signals.celeryd_init, _require_config),
        (signals.task_prerun, _bind_task),
        (signals.task_postrun, _unbind_task),
        (signals.worker_init, _start_staging_sweeper),
        (signals.worker_shutdown, _stop_staging_sweeper),
    ):
        signal.connect(handler, weak=False, dispatch_uid=f"producer.{handler.__name__}")


def __getattr__(name: str) -> NoReturn:
    # `celery -A workers.app` reads `app`, then `celery`, then scans this module's
    # globals for a Celery instance (celery.app.utils.find_app): none lives here, and
    # the first two stop the command before it can consume anything.
    if name in ("app", "celery"):
        raise SystemExit(WRONG_ENTRY_MESSAGE)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
