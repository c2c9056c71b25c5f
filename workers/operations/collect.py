"""Collect a finished step: stream its files into the store and record the result.

Runs as the ``collect`` task under the paused step's own Celery task id. It is
idempotent: a ledger entry already ``done`` returns its recorded result, and the
store is create-only with sha256 checks, so a redelivered collect neither
downloads twice into different objects nor overwrites a good one.
"""

from __future__ import annotations

import time
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

from producer_client import AudioItem, AudioResult
from workers.completion.continuations import Continuation
from workers.completion.outcome import ProviderOutcome
from workers.ledger import LedgerEntry, State
from workers.operations.errors import StepFailed
from workers.operations.results import (
    Artifact,
    StepResult,
    split_context,
    storage_step,
    with_outputs,
)
from workers.runtime import Services
from workers.storage import ArtifactConflictError, artifact_key
from workers.storage.deadline import DownloadBudget, artifact_lock

_EXT_BY_TYPE = {
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/mpeg": "mp3",
    "audio/mp4": "m4a",
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "application/zip": "zip",
    "video/mp4": "mp4",
}
_KNOWN_EXTS = frozenset(_EXT_BY_TYPE.values()) | {"jpeg", "aac", "flac", "ogg"}


def collect_step(svc: Services, outcome: ProviderOutcome, cont: Continuation) -> dict[str, Any]:
    """Turn a finished provider task into a stored :class:`StepResult` (as a dict)."""
    entry = svc.ledger.get(cont.step_key)
    if entry is not None and entry.state in (State.DONE, State.FAILED):
        return _already_finished(svc, cont, entry)
    if not outcome.succeeded:
        _fail(svc, cont, *outcome.failure())
    result = outcome.audio_result()
    step = _store_items(svc, cont, result, outcome)
    recorded = svc.ledger.mark_done(cont.step_key, result=step.model_dump(mode="json"))
    _release(svc, cont)
    # The first finished write wins (a concurrent duplicate collect may have been first):
    # return what the ledger holds, so every copy of the step answers the same.
    return recorded.result if recorded.result is not None else step.model_dump(mode="json")


def _already_finished(svc: Services, cont: Continuation, entry: LedgerEntry) -> dict[str, Any]:
    """A redelivered or repeated collect: answer what the ledger recorded."""
    _release(svc, cont)
    if entry.state is State.FAILED:
        raise StepFailed(entry.error_code or "failed", entry.error_message or "step failed")
    return entry.result or {}


def _release(svc: Services, cont: Continuation) -> None:
    # The step holds nothing any more: its in-flight slot and its claimed continuation.
    svc.limiter.release(svc.token_id, cont.step_key)
    svc.continuations.finished(cont.api_task_id, cont.token_id)


def _fail(svc: Services, cont: Continuation, code: str, message: str) -> None:
    svc.ledger.mark_failed(cont.step_key, code=code, message=message)
    _release(svc, cont)
    raise StepFailed(code, message)


def _store_items(
    svc: Services, cont: Continuation, result: AudioResult, outcome: ProviderOutcome
) -> StepResult:
    where = _location(cont)
    artifacts: list[Artifact] = []
    # One deadline for all of a collect's downloads, checked in their streaming loops.
    budget = DownloadBudget.from_settings(svc.settings)
    for item in result.data:
        artifacts.extend(_store_item(svc, where, cont, item, budget))
    first = next((i for i in result.data if i.id), result.data[0] if result.data else None)
    context, prior = split_context(cont.context.get("context") or {})
    step = StepResult(
        action=cont.action,
        step_key=cont.step_key,
        api_task_id=cont.api_task_id,
        audio_id=first.id if first else None,
        title=first.title if first else None,
        duration=first.duration if first else None,
        seed=first.seed if first else None,
        model=first.model if first else None,
        items=[i.model_dump(mode="json", exclude_none=True) for i in result.data],
        artifacts=artifacts,
        params=dict(cont.context.get("params") or {}),
        context=context,
        timings=_timings(cont, outcome),
    )
    step = with_outputs(step, prior, lyric=first.lyric if first else None)
    step, meta = _put_metadata(svc, artifact_key(*where, cont.api_task_id, "json"), step)
    step.artifacts.append(_artifact("metadata", meta, svc, None, None))
    return step


def _put_metadata(svc: Services, key: str, step: StepResult) -> tuple[StepResult, Any]:
    """Write the step's metadata JSON create-only; a copy already there wins.

    A collect redelivered after writing it (the worker died before ``mark_done``)
    builds a slightly different record (``collected_at``, poller vs callback
    timings): the stored one is kept and returned, instead of failing the step
    with a conflict on an object that is in fact this step's own.
    """
    try:
        return step, svc.store.put_json(key, step.model_dump(mode="json"))
    except ArtifactConflictError:
        existing = svc.store.get_json(key)  # rewriting the same JSON is a no-op
        return StepResult.model_validate(existing), svc.store.put_json(key, existing)


def _store_item(
    svc: Services,
    where: tuple[str, str, str],
    cont: Continuation,
    item: AudioItem,
    budget: DownloadBudget,
) -> list[Artifact]:
    out: list[Artifact] = []
    sources = (("audio", item.audio_url), ("image", item.image_url), ("stems", item.stems_url))
    for kind, url in sources:
        if not url:
            continue
        name = item.id or cont.api_task_id
        key = artifact_key(*where, name, _extension(url, kind))
        # One download of an artifact at a time, fleet-wide: a redelivered collect waits.
        with artifact_lock(svc.redis, key, budget):
            stored = svc.store.store_from_url(url, key, http_client=svc.downloads, budget=budget)
        out.append(_artifact(kind, stored, svc, url, item.id))
    return out


def _artifact(
    kind: str, stored: Any, svc: Services, source: str | None, item_id: str | None
) -> Artifact:
    return Artifact(
        kind=kind,
        key=stored.key,
        url=svc.store.url_for(stored.key),
        sha256=stored.sha256,
        size=stored.size,
        content_type=stored.content_type,
        source_url=source,
        item_id=item_id,
    )


def _extension(url: str, kind: str) -> str:
    suffix = PurePosixPath(urlparse(url).path).suffix.lstrip(".").lower()
    if suffix in _KNOWN_EXTS:
        return suffix
    return {"audio": "mp3", "image": "png", "stems": "zip"}.get(kind, "bin")


def _location(cont: Continuation) -> tuple[str, str, str]:
    """``(batch, row, step)`` of the storage key: from the batch context, else ad hoc."""
    ctx = cont.context.get("context") or {}
    batch = str(ctx.get("batch") or "adhoc")
    row = str(ctx.get("row") or cont.delivery.get("root_id") or cont.celery_task_id)
    step = storage_step(str(ctx.get("step") or cont.action))
    return batch, row, step


def _timings(cont: Continuation, outcome: ProviderOutcome) -> dict[str, float]:
    return {
        "submitted_at": cont.submitted_at,
        "collected_at": time.time(),
        **outcome.record_timings(),
    }
