"""The emulator as a Starlette application: routes and lifespan.

``create_app(config)`` wires one :class:`EmulatorState` to three route
families: the API (``/producer/...``, through :class:`Gateway`), the CDN
(``/media/...``) and the admin side (``/_emulator/...``). Anything else
answers like the platform's gateway: 404 ``no_api``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import Route

from producer_emulator.config import EmulatorConfig
from producer_emulator.jobs.callbacks import CallbackSender
from producer_emulator.jobs.generation import Runner
from producer_emulator.routes.admin import AdminRoutes
from producer_emulator.routes.gateway import Gateway
from producer_emulator.routes.media import MediaRoutes
from producer_emulator.state import EmulatorState

_ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def create_app(config: EmulatorConfig | None = None) -> Starlette:
    """Build the emulator app; its state is reachable as ``app.state.emulator``."""
    state = EmulatorState(config or EmulatorConfig())
    callbacks = CallbackSender(state)
    gateway = Gateway(state, Runner(state, callbacks), callbacks)
    media = MediaRoutes(state)

    def on_reset() -> None:
        media.clear()
        callbacks.cancel_pending()

    admin = AdminRoutes(state, on_reset=on_reset)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        # Pending generations die with the server; nobody is left to poll them.
        state.reset(keep_config=True)
        await callbacks.aclose()

    routes = [
        Route("/_emulator/counters", admin.counters, methods=["GET"]),
        Route("/_emulator/requests", admin.requests, methods=["GET"]),
        Route("/_emulator/config", admin.get_config, methods=["GET"]),
        Route("/_emulator/config", admin.set_config, methods=["POST"]),
        Route("/_emulator/reset", admin.reset, methods=["POST"]),
        Route("/media/preview/{name}", media.preview, methods=["GET"]),
        Route("/media/stems/{name}", media.stems, methods=["GET"]),
        Route("/media/{name}", media.song_file, methods=["GET"]),
        Route("/{path:path}", gateway.handle, methods=_ANY_METHOD),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.emulator = state
    return app
