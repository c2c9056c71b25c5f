"""Helpers for the client's unit tests: scripted MockTransports, both client flavours.

A plain module with a distinctive name (not conftest) so test files can import it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from producer_client import AsyncProducer, Producer

TOKEN = "sk-test-0123456789abcdef-SECRET"
# The repo is checked out with shared/ beside it: <root>/../shared/producer_api.
EXAMPLES_DIR = Path(__file__).resolve().parents[3] / ".." / "shared" / "producer_api" / "examples"

Reply = httpx.Response | type[httpx.TransportError] | Callable[[httpx.Request], httpx.Response]


def reply(status: int = 200, body: Any = None, **kwargs: Any) -> httpx.Response:
    """A JSON reply (``body`` None means an empty object)."""
    return httpx.Response(status, json={} if body is None else body, **kwargs)


class Script:
    """A MockTransport handler: replays ``replies`` in order (the last one repeats)."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies) or [reply()]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(item, type) and issubclass(item, httpx.TransportError):
            raise item("scripted transport failure", request=request)
        if isinstance(item, httpx.Response):
            # A fresh copy: httpx binds a response's stream to the client that read it.
            return httpx.Response(item.status_code, headers=item.headers, content=item.content)
        return item(request)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies sent, in order."""
        return [json.loads(r.content) for r in self.requests]

    @property
    def paths(self) -> list[str]:
        """The URL paths requested, in order."""
        return [r.url.path for r in self.requests]


class Harness:
    """Runs one call against a sync or an async client over a scripted transport."""

    def __init__(self, flavour: str) -> None:
        self.flavour = flavour

    def run(self, script: Script, call: Callable[[Any], Any], **client_kw: Any) -> Any:
        """``call(client)``; for the async flavour its coroutine is awaited."""
        transport = httpx.MockTransport(script)
        if self.flavour == "sync":
            with Producer(api_token=TOKEN, transport=transport, **client_kw) as client:
                return call(client)
        return asyncio.run(self._run_async(transport, call, client_kw))

    @staticmethod
    async def _run_async(
        transport: httpx.MockTransport, call: Callable[[Any], Any], client_kw: dict[str, Any]
    ) -> Any:
        async with AsyncProducer(api_token=TOKEN, transport=transport, **client_kw) as client:
            return await call(client)


def load_example(name: str) -> dict[str, Any]:
    """One documented payload file from shared/producer_api/examples."""
    data: dict[str, Any] = json.loads((EXAMPLES_DIR / name).read_text(encoding="utf-8"))
    return data
