"""Collect a finished step: stream its files into the store and record the result.

Runs as the ``collect`` task under the paused step's own Celery task id. It is
idempotent: a ledger entry already ``done`` returns its recorded result, and the
store is create-only with sha256 checks, so a redelivered collect neither
downloads twice into different objects nor overwrites a good one. A failure ends
the step completely (:func:`fail_collect`): nothing stays held, claimed or stored.
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

from pydantic import ValidationError

from producer_client import AudioItem, AudioResult
from workers.completion.continuations import Continuation
from workers.completion.outcome import ProviderOutcome
from workers.ledger import LedgerEntry, LedgerStateError, State
from workers.operations.errors import BadProviderReply, StepFailed, classify
from workers.operations.results import (
    Artifact,
    StepResult,
    split_context,
    storage_step,
    with_outputs,
)
from workers.runtime import Services
from workers.storage import ArtifactConflictError, ArtifactError, artifact_key
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
# What a provider item id may be to name a stored file (one safe path component).
_SAFE_ID = re.compile(r"[\w][\w.=+@,-]{0,150}")
_KNOWN_EXTS = frozenset(_EXT_BY_TYPE.values()) | {"jpeg", "aac", "flac", "ogg"}


def collect_step(svc: Services, outcome: ProviderOutcome, cont: Continuation) -> dict[str, Any]:
    """Turn a finished provider task into a stored :class:`StepResult` (as a dict).

    A permanent failure ends the step completely (:func:`fail_collect`); a transient
    one is raised for a retry, and the task calls :func:`fail_collect` when it gives up.
    """
    entry = svc.ledger.get(cont.step_key)
    if entry is not None and entry.state in (State.DONE, State.FAILED):
        return _already_finished(svc, cont, entry)
    if not outcome.succeeded:
        # An expired wait may still finish at the provider: the paid task can be re-collected.
        code, message = outcome.failure()
        failed = StepFailed(code, message)
        return fail_collect(svc, cont, outcome, failed, recollect=outcome.status == "expired")
    try:
        result = _audio_result(outcome)
        step = _store_items(svc, cont, result, outcome)
    except Exception as exc:
        verdict = classify(exc)
        if isinstance(verdict, StepFailed):
            return fail_collect(svc, cont, outcome, verdict)
        raise
    recorded = svc.ledger.mark_done(cont.step_key, result=step.model_dump(mode="json"))
    _release(svc, cont)
    # The first finished write wins (a concurrent duplicate collect may have been first):
    # return what the ledger holds, so every copy of the step answers the same.
    return recorded.result if recorded.result is not None else step.model_dump(mode="json")


def fail_collect(
    svc: Services,
    cont: Continuation,
    outcome: ProviderOutcome,
    failed: StepFailed,
    *,
    recollect: bool = True,
) -> dict[str, Any]:
    """End a collect that failed for good: nothing of the step may stay held or half-kept.

    The ledger records ``failed`` with the code and message (``recollect``: the provider
    finished the paid task, so ``retry-failed`` collects it again instead of paying
    again), the objects this step stored are deleted (no manifest points at them, and a
    re-collect writes the same keys again), the in-flight slot is released and the
    claimed continuation finished, so the poller never re-runs it. Raises ``failed``;
    returns the recorded result only when a duplicate collect finished first.
    """
    try:
        recorded = svc.ledger.mark_failed(
            cont.step_key, code=failed.code, message=failed.message, recollect=recollect
        )
    except LedgerStateError:
        recorded = None  # no entry (expired, or an ad hoc record): still free everything
    if recorded is not None and recorded.state is State.DONE:
        _release(svc, cont)
        return recorded.result or {}
    _release(svc, cont)
    _discard(svc, cont, outcome)
    raise failed


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


def _discard(svc: Services, cont: Continuation, outcome: ProviderOutcome) -> None:
    """Delete every object this step may have stored, by its deterministic keys.

    The keys come from the provider's record, so objects an earlier (retried) attempt
    stored are found too. Deleting is best effort: a leftover is only storage, the
    step's failure is what must be recorded.
    """
    if not outcome.succeeded:
        return  # nothing was downloaded
    try:
        result = _audio_result(outcome)
        where = _location(cont)
        keys = [
            key
            for index, item in enumerate(result.data)
            for _, _, key in _sources(where, cont, index, item)
        ]
        keys.append(_metadata_key(where, cont))
    except (StepFailed, ValueError):
        return  # ids or location unusable as keys: nothing can have been stored under them
    for key in keys:
        with contextlib.suppress(ArtifactError, ValueError):
            svc.store.delete(key)


def _audio_result(outcome: ProviderOutcome) -> AudioResult:
    """The provider's songs; a reply we cannot use (unsafe or repeated ids) fails the step."""
    try:
        result = outcome.audio_result()
    except ValidationError as exc:
        raise BadProviderReply(f"the provider's result is not the documented shape: {exc}") from exc
    ids = [item.id for item in result.data if item.id]
    for item_id in ids:
        if not _SAFE_ID.fullmatch(item_id) or ".." in item_id:
            raise BadProviderReply(f"provider item id {item_id[:80]!r} cannot name a stored file")
    if len(set(ids)) != len(ids):
        raise BadProviderReply("the provider's result repeats an item id")
    return result


def _store_items(
    svc: Services, cont: Continuation, result: AudioResult, outcome: ProviderOutcome
) -> StepResult:
    where = _location(cont)
    artifacts: list[Artifact] = []
    # One deadline for all of a collect's downloads, checked in their streaming loops.
    budget = DownloadBudget.from_settings(svc.settings)
    for index, item in enumerate(result.data):
        for kind, url, key in _sources(where, cont, index, item):
            # One download of an artifact at a time, fleet-wide: a redelivered collect waits.
            with artifact_lock(svc.redis, key, budget):
                stored = svc.store.store_from_url(
                    url, key, http_client=svc.downloads, budget=budget
                )
            artifacts.append(_artifact(kind, stored, svc, url, item.id))
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
    step, meta = _put_metadata(svc, _metadata_key(where, cont), step)
    step.artifacts.append(_artifact("metadata", meta, svc, None, None))
    return step


def _sources(
    where: tuple[str, str, str], cont: Continuation, index: int, item: AudioItem
) -> list[tuple[str, str, str]]:
    """``(kind, url, key)`` of each file of ``item``.

    The key names the kind (``<id>.<kind>.<ext>``): an audio URL ending in ``.png``
    must not take the cover's key. An item without an id is named by the task and
    its position, so two such items never share a key either.
    """
    name = item.id or f"{cont.api_task_id}-{index}"
    found = (("audio", item.audio_url), ("image", item.image_url), ("stems", item.stems_url))
    return [
        (kind, url, artifact_key(*where, f"{name}.{kind}", _extension(url, kind)))
        for kind, url in found
        if url
    ]


def _metadata_key(where: tuple[str, str, str], cont: Continuation) -> str:
    return artifact_key(*where, cont.api_task_id, "json")


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
