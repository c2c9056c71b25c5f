"""``producer-batch poller`` and ``producer-batch receiver``: the completion services.

Workers themselves are started with Celery's own command,
``celery -A pipelines.app worker``; these two finish what the workers paused.
Both read the same environment as the workers (``REDIS_URL``,
``PRODUCER_API_TOKEN``, ``PRODUCER_CALLBACK_SECRET`` ...).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import typer

from pipelines.cli._common import fail, settings
from workers.logging import configure_logging
from workers.runtime import Services, build_services


def register(app: typer.Typer) -> None:
    """Add ``poller`` and ``receiver`` to ``app``."""
    app.command("poller")(poller)
    app.command("receiver")(receiver)


def _services() -> Services:
    # An incomplete configuration (ConfigurationError) exits 2 through handle_errors.
    config = settings()
    configure_logging(json=config.log_json, level=config.log_level)
    return build_services(config)


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, for service loops that stop between rounds."""
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return stop


def poller() -> None:
    """Poll the provider for every in-flight task and resume finished steps (always run one)."""
    from pipelines.app import app
    from workers.completion.wiring import poller_for

    svc = _services()
    stop = stop_on_signals()
    try:
        poller_for(svc, app).run(stop)
    finally:
        svc.close()


def receiver(
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(8788, help="Port to bind."),
) -> None:
    """Serve the callback receiver (set PRODUCER_PUBLIC_BASE_URL to its public URL)."""
    import uvicorn

    from pipelines.app import app
    from workers.completion.wiring import receiver_for

    svc = _services()
    try:
        asgi = receiver_for(svc, app)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    try:
        uvicorn.run(asgi, host=host, port=port, log_level="warning")
    finally:
        svc.close()
