"""The callback receiver: the provider's POST when a task ends, verified and applied once.

The provider signs nothing (CONTRACT §6), so the URL carries the proof: each
submission gets a random ``callback_id`` and the URL path holds
``HMAC-SHA256(secret, callback_id)``. A request is accepted only when

1. the signature matches (else **403 forged**),
2. the callback id belongs to a submission still waiting (else **409**: a
   replay, a duplicate, or a task the poller already finished — all harmless),
3. the body's ``task_id`` is the provider task that submission got (else 403).

Anyone who sees a callback URL (it is handed to the provider) can post to it, so a
callback is only a **hint**: the receiver then asks the provider itself
(``confirm``: ``tasks.retrieve`` within the poll budget) and collects from the
provider's own record, never from the body. A task the provider does not report
finished (or that cannot be asked now) gets **202** and is left to the poller.

The continuation is then claimed atomically and resumed, so a duplicate that
races the first delivery or the poller does nothing. A callback that arrives
before the submitter recorded its task id gets **202**: the poller, which is
always on, finishes that task.

The body is read only after the signature passed, and only up to
``max_body_bytes`` (**413** past it, from the declared length or while streaming:
a valid signature does not let a huge body be read whole); JSON nested deeper than
``max_depth`` is **400**.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from workers.completion.continuations import Continuation, ContinuationStore
from workers.completion.outcome import ProviderOutcome

log = structlog.get_logger(__name__)

CALLBACK_PATH = "/callbacks"

ResumeFn = Callable[[Continuation, ProviderOutcome], None]
ConfirmFn = Callable[[str], ProviderOutcome | None]
"""Ask the provider about an api task id: its finished outcome, or None (not now, not done)."""

MAX_BODY_BYTES = 1024 * 1024
"""A final result body is a few KiB; far more than that is not a callback."""
MAX_JSON_DEPTH = 32
"""The provider's bodies nest 4 or 5 levels deep."""


class BodyRefused(Exception):
    """A callback body that is not read or not parsed: the status and reason to answer."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def sign(secret: bytes, callback_id: str) -> str:
    """The URL signature of ``callback_id``: hex HMAC-SHA256, 32 characters."""
    return hmac.new(secret, callback_id.encode(), hashlib.sha256).hexdigest()[:32]


def callback_url(public_base_url: str, secret: bytes, callback_id: str) -> str:
    """The URL to hand the provider for one submission."""
    base = public_base_url.rstrip("/")
    return f"{base}{CALLBACK_PATH}/{callback_id}/{sign(secret, callback_id)}"


def create_receiver_app(
    store: ContinuationStore,
    resume: ResumeFn,
    secret: bytes,
    confirm: ConfirmFn,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
) -> Starlette:
    """The ASGI app that receives callbacks.

    ``confirm`` asks the provider about a task (the outcome collected is the one it
    returns, never the body); ``resume`` applies a claimed continuation.
    """

    async def receive(request: Request) -> JSONResponse:
        callback_id = request.path_params["callback_id"]
        if not hmac.compare_digest(sign(secret, callback_id), request.path_params["signature"]):
            log.warning("callback_rejected", reason="bad signature")
            return JSONResponse({"detail": "forged callback"}, status_code=403)
        try:
            body = parse_body(await read_capped(request, max_body_bytes), max_depth)
        except BodyRefused as refused:
            log.warning("callback_rejected", reason=refused.detail, callback_id=callback_id)
            return JSONResponse({"detail": refused.detail}, status_code=refused.status)
        # Redis and the provider are asked synchronously: off the event loop.
        return await run_in_threadpool(_apply, store, resume, confirm, callback_id, body)

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    routes = [
        Route(CALLBACK_PATH + "/{callback_id}/{signature}", receive, methods=["POST"]),
        Route("/healthz", health, methods=["GET"]),
    ]
    return Starlette(routes=routes)


async def read_capped(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyRefused(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyRefused(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_body(raw: bytes, max_depth: int) -> dict[str, Any]:
    """Parse a callback body: a JSON object nested at most ``max_depth`` levels (else 400)."""
    if _nesting_depth(raw) > max_depth:
        raise BodyRefused(400, f"body nested deeper than {max_depth} levels")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise BodyRefused(400, "body is not JSON") from None
    if not isinstance(body, dict):
        raise BodyRefused(400, "body is not a JSON object")
    return body


def _nesting_depth(raw: bytes) -> int:
    # Brackets inside strings do not nest: drop the strings first (escapes included),
    # then count. Linear, and it never recurses, unlike a parser on a hostile body.
    text = _JSON_STRING.sub(b'""', raw)
    depth = deepest = 0
    for byte in text.translate(None, _NOT_BRACKETS):
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _apply(
    store: ContinuationStore,
    resume: ResumeFn,
    confirm: ConfirmFn,
    callback_id: str,
    body: dict[str, Any],
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
    # The body is a hint; the provider's own record is what gets collected.
    outcome = _confirmed(confirm, api_task_id)
    if outcome is None:
        return JSONResponse({"detail": "not finished at the provider; will be polled"}, 202)
    cont = store.claim(api_task_id, pending.token_id)
    if cont is None:
        return JSONResponse({"detail": "already completed"}, status_code=409)
    try:
        resume(cont, outcome)
    except Exception:
        # Put the claimed continuation back (the poller finishes it) rather than lose it.
        store.save(cont, first_poll_at=time.time())
        log.exception("callback_resume_failed", api_task_id=api_task_id)
        return JSONResponse({"detail": "could not resume; will be polled"}, status_code=503)
    log.info("callback_applied", api_task_id=api_task_id, celery_task_id=cont.celery_task_id)
    return JSONResponse({"ok": True})


def _confirmed(confirm: ConfirmFn, api_task_id: str) -> ProviderOutcome | None:
    try:
        outcome = confirm(api_task_id)
    except Exception as exc:  # the provider or the limiter: the poller asks again later
        log.warning("callback_unconfirmed", api_task_id=api_task_id, error=repr(exc))
        return None
    if outcome is None:
        log.info("callback_unconfirmed", api_task_id=api_task_id, reason="not finished")
    return outcome
