"""The path every ``/producer/...`` request takes, in the platform's order.

1. resolve the API (unknown path or method -> 404 ``no_api``);
2. bearer auth (no header -> 400 ``no_token``, unknown -> 401 ``invalid_token``);
3. token bucket of the endpoint class (``poll`` for /tasks, else ``submit``) -> 429;
4. JSON body (not strict JSON, nested over 64 levels, or not an object -> 400 ``bad_request``);
5. fault plan; faults that strike before any work reply now;
6. the endpoint handler (validation, in-flight cap, the work);
7. faults that strike after the work (504, malformed body), slow replies.

Every reply is appended to the request log with the caller's token hash, and
errors are counted, unless the emulator was reset while the request was in
progress (a held sync request answered 500 by the reset belongs to the old run).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from producer_emulator.errors import ApiError, bad_request, new_id
from producer_emulator.faults.injector import FaultPlan
from producer_emulator.jobs.callbacks import CallbackSender
from producer_emulator.jobs.generation import Runner
from producer_emulator.limits import retry_after_seconds
from producer_emulator.routes.audios import handle_audios
from producer_emulator.routes.calls import Call, Reply
from producer_emulator.routes.quick import handle_lyrics, handle_upload, handle_videos, handle_wav
from producer_emulator.routes.tasks import handle_tasks
from producer_emulator.state import EmulatorState
from producer_emulator.validation import JsonTooDeepError, load_json

Handler = Callable[[Call], Awaitable[Reply]]
HANDLERS: dict[str, Handler] = {
    "/producer/audios": handle_audios,
    "/producer/tasks": handle_tasks,
    "/producer/upload": handle_upload,
    "/producer/lyrics": handle_lyrics,
    "/producer/wav": handle_wav,
    "/producer/videos": handle_videos,
}
_RULE_ONLY_ERRORS = {
    "api_error_500": "api_error",
    "too_many_requests_429": "too_many_requests",
    "forbidden_403": "forbidden",
    "used_up_403": "used_up",
    "token_mismatched_400": "token_mismatched",
    "api_not_implemented_400": "api_not_implemented",
    "disabled_400": "disabled",
    "token_expired_401": "token_expired",
}
_log = logging.getLogger(__name__)


class Gateway:
    """The ASGI endpoint for ``/producer/...`` (and the 404 for everything unknown)."""

    def __init__(self, state: EmulatorState, runner: Runner, callbacks: CallbackSender) -> None:
        self._state = state
        self._runner = runner
        self._callbacks = callbacks

    async def handle(self, request: Request) -> Response:
        """Handle one request end to end; never raises."""
        trace_id = new_id()
        epoch = self._state.epoch
        token: str | None = None
        error: ApiError | None = None
        try:
            token = self._authenticate(request)
            response = await self._process(request, token, trace_id)
        except ApiError as exc:
            error = exc
        except Exception:  # a bug must still look like the platform's 500
            _log.exception("emulator handler failed")
            error = ApiError("api_error")
        if error is not None:
            response = self._error(error, trace_id)
        # A request held across a reset (answered 500 by it) belongs to the old run.
        if self._state.epoch == epoch:
            if error is not None:
                self._state.counters.errors_by_code[error.code] += 1
            self._state.log_request(request.url.path, response.status_code, token)
        return response

    def _authenticate(self, request: Request) -> str:
        if request.method != "POST" or request.url.path not in HANDLERS:
            raise ApiError("no_api")
        header = request.headers.get("authorization", "")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError("no_token")
        if token not in self._state.config.tokens:
            raise ApiError("invalid_token")
        return token

    async def _process(self, request: Request, token: str, trace_id: str) -> Response:
        path = request.url.path
        endpoint = path.removeprefix("/producer/")
        self._take_rate_token(token, "poll" if endpoint == "tasks" else "submit")
        body = _parse_json(await request.body())
        plan = self._state.faults.plan(
            self._state.config.faults, path=path, endpoint=endpoint, body=body
        )
        await self._fault_before_work(plan)
        call = Call(
            state=self._state,
            runner=self._runner,
            callbacks=self._callbacks,
            endpoint=endpoint,
            token=token,
            trace_id=trace_id,
            body=body,
            base_url=str(request.base_url).rstrip("/"),
            plan=plan,
        )
        status, reply = await HANDLERS[path](call)
        return await self._fault_after_work(plan, status, reply)

    def _take_rate_token(self, token: str, kind: str) -> None:
        config = self._state.config
        rate, burst = (
            (config.poll_rate_per_s, config.poll_burst)
            if kind == "poll"
            else (config.submit_rate_per_s, config.submit_burst)
        )
        if rate is None:
            return
        wait_s = self._state.limiter.take((token, kind), rate, burst, time.monotonic())
        if wait_s is not None:
            self._state.counters.rejected_429[kind] += 1
            raise ApiError("too_many_requests", retry_after_s=retry_after_seconds(wait_s))

    async def _fault_before_work(self, plan: FaultPlan) -> None:
        faults = self._state.config.faults
        if plan.http == "timeout_504" and not faults.timeout_creates_task:
            await asyncio.sleep(self._state.config.scaled(faults.timeout_delay_s))
            raise ApiError("timeout")
        if plan.http == "token_mismatched_401":
            raise ApiError("token_mismatched", "token and api does not match.", status=401)
        if plan.http in _RULE_ONLY_ERRORS:
            raise ApiError(_RULE_ONLY_ERRORS[plan.http], retry_after_s=1)

    async def _fault_after_work(
        self, plan: FaultPlan, status: int, reply: dict[str, Any]
    ) -> Response:
        config = self._state.config
        if plan.slow:
            await asyncio.sleep(config.scaled(config.faults.slow_response_s))
        if plan.http == "timeout_504":
            await asyncio.sleep(config.scaled(config.faults.timeout_delay_s))
            raise ApiError("timeout")
        if plan.http == "malformed_body":
            text = json.dumps(reply)
            self._state.counters.errors_by_code["malformed_body"] += 1
            return Response(text[: max(1, len(text) // 2)], media_type="application/json")
        return JSONResponse(reply, status_code=status)

    def _error(self, exc: ApiError, trace_id: str) -> Response:
        response = JSONResponse(exc.body(trace_id), status_code=exc.status)
        send_hint = self._state.config.send_retry_after and exc.code == "too_many_requests"
        if send_hint and exc.retry_after_s is not None:
            response.headers["retry-after"] = str(exc.retry_after_s)
        return response


def _parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = load_json(raw)
    except JsonTooDeepError as exc:
        raise bad_request("The request body is nested too deeply.") from exc
    except ValueError as exc:
        raise bad_request("The request body is not valid JSON.") from exc
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body
