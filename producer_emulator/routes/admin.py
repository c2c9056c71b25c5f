"""``/_emulator/...``: admin endpoints for tests and benchmarks (no auth).

* ``GET  /_emulator/counters[?fingerprints=false]``  totals (see ``EmulatorState.counters_json``)
* ``GET  /_emulator/requests?since=T``  ``[{t, path, status, token_hash}]`` of
  ``/producer/...`` requests with ``t >= T`` (epoch s), oldest first
* ``GET  /_emulator/config``  the running configuration
* ``POST /_emulator/config``  partial update (``faults`` merged key by key);
  400 with pydantic's errors when invalid, the old config stays
* ``POST /_emulator/reset``  forget everything; ``{"keep_config": true}``
  keeps the current config instead of restoring the initial one
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from producer_emulator.config import merge_config
from producer_emulator.state import EmulatorState
from producer_emulator.validation import MAX_JSON_DEPTH, load_json


class AdminRoutes:
    """Route handlers bound to one :class:`EmulatorState`."""

    def __init__(self, state: EmulatorState, on_reset: Callable[[], None]) -> None:
        self._state = state
        self._on_reset = on_reset

    async def counters(self, request: Request) -> JSONResponse:
        """All counters (``?fingerprints=false`` omits the per-fingerprint map)."""
        fingerprints = request.query_params.get("fingerprints", "true").lower() != "false"
        return JSONResponse(self._state.counters_json(fingerprints=fingerprints))

    async def requests(self, request: Request) -> JSONResponse:
        """The request log since ``since`` (default: everything kept)."""
        try:
            since = float(request.query_params.get("since", "0"))
        except ValueError:
            return JSONResponse({"error": "since must be a number"}, status_code=400)
        entries: list[dict[str, Any]] = []
        # Newest at the right: walk back until older than `since`, then flip.
        for t, path, status, token in reversed(self._state.requests):
            if t < since:
                break
            entries.append({"t": t, "path": path, "status": status, "token_hash": token})
        entries.reverse()
        return JSONResponse(entries)

    async def get_config(self, request: Request) -> JSONResponse:
        """The running configuration."""
        return JSONResponse(self._state.config.model_dump(mode="json"))

    async def set_config(self, request: Request) -> JSONResponse:
        """Apply a partial update."""
        changes = await _json_object(request)
        if changes is None:
            return JSONResponse(
                {"error": f"body must be a JSON object (at most {MAX_JSON_DEPTH} levels deep)"},
                status_code=400,
            )
        try:
            config = merge_config(self._state.config, changes)
        except ValidationError as exc:
            # Without the input: it may be NaN or infinity, which a JSON reply cannot carry.
            errors = json.loads(exc.json(include_url=False, include_input=False))
            return JSONResponse({"error": "invalid config", "details": errors}, status_code=400)
        self._state.apply_config(config)
        return JSONResponse(config.model_dump(mode="json"))

    async def reset(self, request: Request) -> JSONResponse:
        """Forget all state."""
        options = await _json_object(request) or {}
        self._state.reset(keep_config=bool(options.get("keep_config", False)))
        self._on_reset()
        return JSONResponse({"ok": True})


async def _json_object(request: Request) -> dict[str, Any] | None:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        value = load_json(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
