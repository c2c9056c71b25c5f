"""A malicious provider for tests: the real emulator behind a proxy that rewrites media URLs.

The workers talk to :class:`RewritingProvider` as their API. Every reply is the
emulator's, except that each ``audio_url`` / ``image_url`` / ``stems_url`` in a task
record is replaced by what ``rewrite`` returns (an internal address, a redirect, a
drip-fed body ...), as a compromised provider or a man in the middle would do.

Also here: small local servers that stand for an internal service (:class:`Internal`,
which counts every request it gets) and for a hostile CDN (redirects, drip feeds).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.integration.fleet import loopback_socket, serving

MEDIA_FIELDS = ("audio_url", "image_url", "stems_url")


class RewritingProvider:
    """Forward every request to ``target`` (set once the emulator runs), rewriting media URLs."""

    def __init__(self, rewrite: Callable[[str], str]) -> None:
        self.rewrite = rewrite
        self.target = ""

    async def forward(self, request: Request) -> Response:
        async with httpx.AsyncClient(base_url=self.target, trust_env=False, timeout=30) as http:
            reply = await http.request(
                request.method,
                request.url.path,
                params=request.query_params,
                content=await request.body(),
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            )
        content = reply.content
        if reply.headers.get("content-type", "").startswith("application/json"):
            content = _rewritten(reply.json(), self.rewrite)
            return Response(
                httpx.Response(200, json=content).content,
                status_code=reply.status_code,
                media_type="application/json",
            )
        return Response(content, status_code=reply.status_code, media_type=None)


def _rewritten(value: Any, rewrite: Callable[[str], str]) -> Any:
    if isinstance(value, dict):
        return {
            k: rewrite(v) if k in MEDIA_FIELDS and isinstance(v, str) else _rewritten(v, rewrite)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_rewritten(v, rewrite) for v in value]
    return value


@contextmanager
def rewriting_provider(rewrite: Callable[[str], str]) -> Iterator[tuple[RewritingProvider, str]]:
    """Serve a :class:`RewritingProvider`; yield it and its URL (set ``.target`` before use)."""
    proxy = RewritingProvider(rewrite)
    app = Starlette(routes=[Route("/{path:path}", proxy.forward, methods=["GET", "POST"])])
    with serving(app, loopback_socket()) as url:
        yield proxy, url


class Internal:
    """A server that must never be reached (an internal service): counts requests."""

    def __init__(self) -> None:
        self.hits = 0
        self.authorizations: list[str] = []
        self._lock = threading.Lock()

    async def serve(self, request: Request) -> Response:
        with self._lock:
            self.hits += 1
            if "authorization" in request.headers:
                self.authorizations.append(request.headers["authorization"])
        return Response(b"internal secret", media_type="audio/mpeg")


@contextmanager
def internal_service() -> Iterator[tuple[Internal, str]]:
    """Serve an :class:`Internal` on loopback; yield it and its URL."""
    handler = Internal()
    app = Starlette(routes=[Route("/{path:path}", handler.serve)])
    with serving(app, loopback_socket()) as url:
        yield handler, url


@contextmanager
def hostile_cdn(redirect_to: str, *, drip_interval_s: float = 0.2) -> Iterator[str]:
    """A CDN with ``/redirect`` (302 to ``redirect_to``) and ``/drip`` (1 byte per interval)."""

    async def redirect(_: Request) -> Response:
        return RedirectResponse(redirect_to, status_code=302)

    async def drip(_: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            for _ in range(10_000):
                yield b"x"
                await asyncio.sleep(drip_interval_s)

        return StreamingResponse(body(), media_type="audio/mpeg")

    routes = [Route("/redirect/{path:path}", redirect), Route("/drip/{path:path}", drip)]
    with serving(Starlette(routes=routes), loopback_socket()) as url:
        yield url
