"""The callback receiver: the provider's POST when a task ends, verified and applied once.

The provider signs nothing (CONTRACT §6), so the URL carries the proof: each
submission gets a random ``callback_id`` and the URL path holds
``HMAC-SHA256(secret, callback_id)``. A request is accepted only when

1. the signature matches (else **403 forged**),
2. the callback id belongs to a submission still waiting (else **409**: a
   replay, a duplicate, or a task the poller already finished — all harmless),
3. the body's ``task_id`` is the provider task that submission got (else 403).

The continuation is then claimed atomically and resumed, so a duplicate that
races the first delivery or the poller does nothing. A callback that arrives
before the submitter recorded its task id gets **202**: the poller, which is
always on, finishes that task.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from workers.completion.continuations import Continuation, ContinuationStore
from workers.completion.outcome import ProviderOutcome

log = structlog.get_logger(__name__)

CALLBACK_PATH = "/callbacks"

ResumeFn = Callable[[Continuation, ProviderOutcome], None]


def sign(secret: bytes, callback_id: str) -> str:
    """The URL signature of ``callback_id``: hex HMAC-SHA256, 32 characters."""
    return hmac.new(secret, callback_id.encode(), hashlib.sha256).hexdigest()[:32]


def callback_url(public_base_url: str, secret: bytes, callback_id: str) -> str:
    """The URL to hand the provider for one submission."""
    base = public_base_url.rstrip("/")
    return f"{base}{CALLBACK_PATH}/{callback_id}/{sign(secret, callback_id)}"


def create_receiver_app(store: ContinuationStore, resume: ResumeFn, secret: bytes) -> Starlette:
    """The ASGI app that receives callbacks; ``resume`` applies a claimed continuation."""

    async def receive(request: Request) -> JSONResponse:
        callback_id = request.path_params["callback_id"]
        if not hmac.compare_digest(sign(secret, callback_id), request.path_params["signature"]):
            log.warning("callback_rejected", reason="bad signature")
            return JSONResponse({"detail": "forged callback"}, status_code=403)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"detail": "body is not JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"detail": "body is not a JSON object"}, status_code=400)
        return _apply(store, resume, callback_id, body)

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    routes = [
        Route(CALLBACK_PATH + "/{callback_id}/{signature}", receive, methods=["POST"]),
        Route("/healthz", health, methods=["GET"]),
    ]
    return Starlette(routes=routes)


def _apply(
    store: ContinuationStore, resume: ResumeFn, callback_id: str, body: dict[str, Any]
) -> JSONResponse:
    api_task_id = store.api_task_for_callback(callback_id)
    pending = store.get(api_task_id) if api_task_id else None
    if api_task_id is None or pending is None:
        status = 409 if api_task_id else 202
        log.info("callback_ignored", callback_id=callback_id, status=status)
        return JSONResponse({"detail": "not pending"}, status_code=status)
    if body.get("task_id") != api_task_id:
        log.warning("callback_rejected", reason="task id mismatch", api_task_id=api_task_id)
        return JSONResponse({"detail": "task id does not match"}, status_code=403)
    cont = store.claim(api_task_id, pending.token_id)
    if cont is None:
        return JSONResponse({"detail": "already completed"}, status_code=409)
    try:
        resume(cont, ProviderOutcome.from_callback(body))
    except Exception:
        # Put the claimed continuation back (the poller finishes it) rather than lose it.
        store.save(cont, first_poll_at=time.time())
        log.exception("callback_resume_failed", api_task_id=api_task_id)
        return JSONResponse({"detail": "could not resume; will be polled"}, status_code=503)
    log.info("callback_applied", api_task_id=api_task_id, celery_task_id=cont.celery_task_id)
    return JSONResponse({"ok": True})
