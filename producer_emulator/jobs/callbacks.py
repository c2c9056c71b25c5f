"""Webhook delivery: POST the final JSON to ``callback_url`` (CONTRACT §6).

One delivery per task, no signature, no retries (the current docs promise
none). Fault plans can drop the delivery, send it twice, or delay it.
Deliveries run as asyncio tasks on the server loop with one shared
``httpx.AsyncClient``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from producer_emulator.faults.injector import FaultPlan
from producer_emulator.state import EmulatorState


class CallbackSender:
    """Schedules callback POSTs and counts what happened to them."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def dispatch(self, url: str, body: dict[str, Any], plan: FaultPlan) -> None:
        """Deliver ``body`` to ``url`` in the background, as ``plan`` says."""
        counters = self._state.counters
        if plan.callback_drop:
            counters.callbacks_dropped += 1
            return
        copies = 2 if plan.callback_duplicate else 1
        if copies == 2:
            counters.callbacks_duplicated += 1
        task = asyncio.get_running_loop().create_task(self._deliver(url, body, copies))
        # Keep a reference until done, or the loop may collect the task mid-flight.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, body: dict[str, Any], copies: int) -> None:
        config = self._state.config
        for _ in range(copies):
            delay = config.scaled(config.faults.callback_delay_s)
            if delay > 0:
                await asyncio.sleep(delay)
            await self._post(url, body)

    async def _post(self, url: str, body: dict[str, Any]) -> None:
        counters = self._state.counters
        try:
            reply = await self._http().post(url, json=body)
        except httpx.HTTPError:
            counters.callbacks_failed += 1
            return
        if reply.is_success:
            counters.callbacks_sent += 1
        else:
            counters.callbacks_failed += 1

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            timeout = httpx.Timeout(self._state.config.callback_timeout_s)
            self._client = httpx.AsyncClient(timeout=timeout, trust_env=False)
        return self._client

    def cancel_pending(self) -> None:
        """Cancel deliveries not yet made (a reset must not leak into the next run)."""
        for task in self._tasks:
            task.cancel()

    async def aclose(self) -> None:
        """Cancel pending deliveries and close the HTTP client (server shutdown)."""
        self.cancel_pending()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
