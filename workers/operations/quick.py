"""Quick endpoints: upload, lyrics, wav and videos answer in the POST itself.

They go through the same ledger and limiter as generations (each call is paid),
but need no continuation: the step records its result and stores its file (the
WAV export, the MP4, the lyrics text) before it returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from producer_client import (
    LyricsResult,
    ParamsValidationError,
    VideoResult,
    WavResult,
    request_fingerprint,
)
from workers.ledger import Claim, State
from workers.operations.actions import quick_action
from workers.operations.errors import StepFailed, classify
from workers.operations.results import (
    Artifact,
    StepResult,
    split_context,
    storage_step,
    with_outputs,
)
from workers.operations.submit import (
    ADOPTION_SLACK_S,
    BUSY_RECHECK_S,
    Finished,
    StepCall,
    Wait,
    recent_provider_tasks,
    record_refusal,
    submitting,
)
from workers.ratelimit import EndpointClass
from workers.runtime import Services
from workers.storage import artifact_key
from workers.storage.deadline import DownloadBudget, artifact_lock


def quick_body(action: str, params: dict[str, Any]) -> dict[str, Any]:
    """The request body of a quick action; raises ``StepFailed`` naming a missing field."""
    field = _input_field(action)
    value = params.get(field)
    if not isinstance(value, str) or not value.strip():
        raise StepFailed("invalid_params", f"{action}: {field}: a non-empty string is required")
    unknown = sorted(set(params) - {field})
    if unknown:
        raise StepFailed("invalid_params", f"{action}: {unknown[0]}: unknown field")
    return {field: value}


def run_quick_step(svc: Services, call: StepCall) -> Finished | Wait:
    """Call a quick endpoint exactly once and store what it returned."""
    try:
        body = quick_body(call.action, call.params)
    except StepFailed as failed:
        record_refusal(svc, call, {"action": call.action, **call.params}, failed)
        raise
    recorded = svc.ledger.get(call.key)
    if recorded is not None and recorded.state in (State.DONE, State.FAILED):
        return _recorded(
            recorded.state, recorded.result, recorded.error_code, recorded.error_message
        )
    decision = svc.limiter.acquire(svc.token_id, EndpointClass.SUBMIT)
    if not decision.granted:
        return Wait(decision.countdown_s(), "rate")
    claim, entry = svc.ledger.reserve(
        call.key, fingerprint=request_fingerprint(body), owner=call.celery_task_id
    )
    if claim is Claim.BUSY:
        return Wait(BUSY_RECHECK_S, "busy")
    if claim in (Claim.DONE, Claim.FAILED):
        return _recorded(entry.state, entry.result, entry.error_code, entry.error_message)
    with submitting(svc, call.key) as held:
        if not held:  # another delivery of this very task is calling right now
            return Wait(BUSY_RECHECK_S, "submitting")
        reply = _reply_once(svc, call, body)
    if isinstance(reply, Finished):
        return reply
    return Finished(_finish(svc, call, reply))


def _reply_once(svc: Services, call: StepCall, body: dict[str, Any]) -> BaseModel | Finished:
    """Under the submit lock: the recorded outcome, the adopted reply, or a new call's."""
    entry = svc.ledger.get(call.key)
    if entry is not None and entry.state in (State.DONE, State.FAILED):
        return _recorded(entry.state, entry.result, entry.error_code, entry.error_message)
    resumable = entry is not None and (entry.needs_adoption or entry.api_task_id)
    reply = _adopted_reply(svc, call, entry) if resumable else None
    return reply if reply is not None else _post(svc, call, body)


def _recorded(
    state: State, result: dict[str, Any] | None, code: str | None, message: str | None
) -> Finished:
    if state is State.FAILED:
        raise StepFailed(code or "failed", message or "step failed")
    return Finished(result or {})


def _adopted_reply(svc: Services, call: StepCall, entry: Any) -> BaseModel | None:
    api_task_id = entry.api_task_id
    if api_task_id is None:
        since = (entry.post_started_at or entry.reserved_at) - ADOPTION_SLACK_S
        recent = recent_provider_tasks(svc, since)
        found = svc.ledger.adopt_orphan(call.key, recent, owner=call.celery_task_id)
        api_task_id = found.api_task_id if found else None
    record = svc.client.tasks.retrieve(api_task_id) if api_task_id else None
    if record is None or not record.response:
        return None
    model = quick_action(call.action).reply_model
    assert model is not None  # every quick action of the catalogue names its reply model
    return model.model_validate(record.response)


def _input_field(action: str) -> str:
    field = quick_action(action).input_field
    assert field is not None  # every quick action of the catalogue names its input
    return field


def _post(svc: Services, call: StepCall, body: dict[str, Any]) -> BaseModel:
    svc.ledger.begin_submit(call.key, owner=call.celery_task_id)
    send: dict[str, Callable[..., BaseModel]] = {
        "upload": svc.client.upload.create,
        "lyrics": svc.client.lyrics.create,
        "wav": svc.client.wav.create,
        "videos": svc.client.videos.create,
    }
    try:
        reply = send[call.action](**body)
    except (ParamsValidationError, Exception) as exc:
        verdict = classify(exc)
        if isinstance(verdict, StepFailed):
            svc.ledger.mark_failed(call.key, code=verdict.code, message=verdict.message)
        raise verdict from exc
    svc.limiter.report_success(svc.token_id, EndpointClass.SUBMIT)
    task_id = getattr(reply, "task_id", None)
    if task_id:
        svc.ledger.mark_submitted(call.key, api_task_id=task_id, owner=call.celery_task_id)
    return reply


def _finish(svc: Services, call: StepCall, reply: BaseModel) -> dict[str, Any]:
    where = _location(call)
    artifacts = _store(svc, call, reply, where)
    data = reply.model_dump(mode="json", exclude_none=True)
    context, prior = split_context(call.context)
    step = StepResult(
        action=call.action,
        step_key=call.key,
        api_task_id=getattr(reply, "task_id", None),
        audio_id=getattr(reply, "audio_id", None) or call.params.get("audio_id"),
        title=getattr(reply, "title", None),
        artifacts=artifacts,
        params=call.params,
        context=context,
        timings={"finished_at": time.time()},
        extra=data,
    )
    # A lyrics step's text (or an upload's transcription) feeds `{steps.NAME.lyric}`.
    step = with_outputs(step, prior, lyric=data.get("lyrics") or data.get("lyric"))
    result = step.model_dump(mode="json")
    svc.ledger.mark_done(call.key, result=result)
    return result


def _store(
    svc: Services, call: StepCall, reply: BaseModel, where: tuple[str, str, str]
) -> list[Artifact]:
    name = getattr(reply, "task_id", None) or call.celery_task_id
    if isinstance(reply, LyricsResult):
        stored = svc.store.put_json(artifact_key(*where, name, "json"), reply.model_dump())
        kind, source = "lyrics", None
    elif isinstance(reply, WavResult | VideoResult):
        source = reply.file_url if isinstance(reply, WavResult) else reply.video_url
        ext, kind = ("wav", "wav") if isinstance(reply, WavResult) else ("mp4", "video")
        key = artifact_key(*where, str(call.params.get("audio_id") or name), ext)
        budget = DownloadBudget.from_settings(svc.settings)
        with artifact_lock(svc.redis, key, budget):
            stored = svc.store.store_from_url(source, key, http_client=svc.downloads, budget=budget)
    else:
        return []
    return [
        Artifact(
            kind=kind,
            key=stored.key,
            url=svc.store.url_for(stored.key),
            sha256=stored.sha256,
            size=stored.size,
            content_type=stored.content_type,
            source_url=source,
        )
    ]


def _location(call: StepCall) -> tuple[str, str, str]:
    ctx = call.context
    batch = str(ctx.get("batch") or "adhoc")
    row = str(ctx.get("row") or call.delivery.get("root_id") or call.celery_task_id)
    return batch, row, storage_step(str(ctx.get("step") or call.action))
