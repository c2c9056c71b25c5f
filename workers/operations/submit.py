"""Submit one ``/audios`` step, exactly once, and hand its wait to the provider.

The order matters (crash windows are explained in ``docs/ledger.md``):

1. the ledger is read: a step already done or failed makes no call at all;
2. an in-flight slot (lease) and a submission token are taken from the shared
   limiter — when either is missing the step is re-queued for later;
3. the ledger reserves the step; a reservation whose POST may have reached the
   provider is settled by *adopting* the provider's matching task, never by a
   blind resubmit;
4. the POST goes out in async mode (with a signed callback URL when a public
   base URL is configured); its task id is recorded, then the continuation.

The caller (the Celery task) then ends without holding anything while the song
renders: see :mod:`workers.completion`.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from producer_client import (
    APIStatusError,
    AudioParams,
    GatewayTimeoutError,
    ParamsValidationError,
    RateLimitError,
    Submission,
    request_fingerprint,
)
from workers._redis import register_scripts
from workers.completion.callbacks import callback_url
from workers.completion.continuations import Continuation
from workers.constants import KEY_PREFIX
from workers.ledger import (
    Claim,
    LedgerEntry,
    LedgerError,
    LedgerStateError,
    ProviderTask,
    State,
)
from workers.operations.errors import StepFailed, TransientError, classify
from workers.operations.params import audio_params
from workers.ratelimit import EndpointClass
from workers.runtime import Services

ADOPTION_SLACK_S = 120.0
"""How far before the interrupted POST the provider's task list is searched."""

BUSY_RECHECK_S = 5.0
"""Re-queue delay when another delivery of the same step holds its reservation."""

SUBMIT_LOCK_PREFIX = KEY_PREFIX + "submitting:"
"""Key prefix of the per-step submit lock (see :func:`submitting`)."""

SUBMIT_LOCK_MARGIN_S = 5.0
"""The submit lock outlives the request timeout by this much."""

ADOPTION_PAGE_SIZE = 100
"""Tasks per listing page (the API's cap)."""

ADOPTION_MAX_PAGES = 200
"""Listing pages read at most: 20,000 tasks created within the adoption window."""


@dataclass(frozen=True)
class StepCall:
    """One step invocation as the task received it."""

    action: str
    params: dict[str, Any]
    key: str
    context: dict[str, Any]
    celery_task_id: str
    delivery: dict[str, Any]


@dataclass(frozen=True)
class Finished:
    """The step was already done: here is its recorded result (no API call made)."""

    result: dict[str, Any]


@dataclass(frozen=True)
class Paused:
    """The provider accepted the step; a continuation will resume it."""

    api_task_id: str
    adopted: bool = False


@dataclass(frozen=True)
class Wait:
    """No capacity now; re-queue the step after ``countdown_s``."""

    countdown_s: float
    reason: str


Outcome = Finished | Paused | Wait


def submit_audio_step(svc: Services, call: StepCall) -> Outcome:
    """Run the exactly-once submission protocol for one ``/audios`` step."""
    try:
        params = audio_params(call.action, call.params)
    except ParamsValidationError as exc:
        failed = StepFailed("invalid_params", str(exc))
        record_refusal(svc, call, {"action": call.action, **call.params}, failed)
        raise failed from exc
    fingerprint = request_fingerprint(params.to_body())
    recorded = svc.ledger.get(call.key)
    if recorded is not None and recorded.state is not State.RESERVED:
        return _settled(svc, call, recorded)
    lease = svc.limiter.lease(svc.token_id, call.key, _lease_ttl_s(svc))
    if not lease.granted:
        return Wait(lease.countdown_s(), "in_flight_cap")
    decision = svc.limiter.acquire(svc.token_id, EndpointClass.SUBMIT)
    if not decision.granted:
        svc.limiter.release(svc.token_id, call.key)
        return Wait(decision.countdown_s(), "rate")
    claim, entry = svc.ledger.reserve(call.key, fingerprint=fingerprint, owner=call.celery_task_id)
    if claim is Claim.BUSY:
        svc.limiter.release(svc.token_id, call.key)
        return Wait(BUSY_RECHECK_S, "busy")
    if claim not in (Claim.NEW, Claim.RESUME_RESERVED):
        return _settled(svc, call, entry)
    with submitting(svc, call.key) as held:
        if not held:  # another delivery of this very task is posting right now
            return Wait(BUSY_RECHECK_S, "submitting")
        return _submit_reserved(svc, call, params, decision.epoch)


@contextmanager
def submitting(svc: Services, key: str) -> Iterator[bool]:
    """Hold the one right to adopt or POST for step ``key``; yields False if taken.

    The ledger's owner is the Celery task id, so two deliveries of the *same* message
    running at once (a message restored past the visibility timeout while its first
    delivery still runs, a re-publish whose original was acked late) both own the
    reservation, and without this both could POST. The lock is per delivery (a random
    token) and expires after one request timeout (plus margin), so a delivery that
    died holding it delays its redelivery by at most that.
    """
    name = SUBMIT_LOCK_PREFIX + key
    token = secrets.token_hex(8)
    ttl_ms = int((svc.settings.http_timeout_s + SUBMIT_LOCK_MARGIN_S) * 1000)
    held = bool(svc.redis.set(name, token, nx=True, px=ttl_ms))
    try:
        yield held
    finally:
        if held:
            # scripts/submit_unlock.lua: delete the lock only while this token holds it.
            register_scripts(svc.redis, "workers.operations")["submit_unlock"](
                keys=[name], args=[token]
            )


def _submit_reserved(svc: Services, call: StepCall, params: AudioParams, epoch: int) -> Outcome:
    """Adopt or POST under the submit lock, from the entry as it is now."""
    entry = svc.ledger.get(call.key)
    if entry is None:
        raise LedgerStateError(f"ledger key {call.key!r} vanished after it was reserved")
    if entry.state is not State.RESERVED:
        return _settled(svc, call, entry)  # another delivery posted while we waited
    if entry.needs_adoption:
        adopted = _adopt(svc, call, entry)
        if adopted is not None:
            return adopted
    return _post(svc, call, params, epoch)


def _settled(svc: Services, call: StepCall, entry: LedgerEntry) -> Outcome:
    """A step the ledger already knows: return, fail or resume waiting; never POST."""
    if entry.state is State.DONE:
        svc.limiter.release(svc.token_id, call.key)
        return Finished(entry.result or {})
    if entry.state is State.FAILED:
        svc.limiter.release(svc.token_id, call.key)
        raise StepFailed(entry.error_code or "failed", entry.error_message or "step failed")
    assert entry.api_task_id is not None  # SUBMITTED always carries the task id
    if not svc.continuations.pending(entry.api_task_id):
        # Redelivered after the POST but before the continuation was saved (or after
        # its collect finished and forgot it): wait for it again.
        _save_continuation(svc, call, entry.api_task_id, callback_id=None)
    return Paused(entry.api_task_id, adopted=entry.adopted)


def record_refusal(svc: Services, call: StepCall, body: dict[str, Any], failed: StepFailed) -> None:
    """Record a step refused before any request (invalid params) as ``failed``.

    Only a fresh reservation is failed: an entry that already exists belongs to an
    earlier run of the key (or to other params) and is left as it is.
    """
    with contextlib.suppress(LedgerError):
        claim, _ = svc.ledger.reserve(
            call.key, fingerprint=request_fingerprint(body), owner=call.celery_task_id
        )
        if claim is Claim.NEW:
            svc.ledger.mark_failed(call.key, code=failed.code, message=failed.message)


def recent_provider_tasks(svc: Services, since: float) -> list[ProviderTask]:
    """Every provider task of this token created at or after ``since`` (epoch s).

    The listing is newest first and capped at :data:`ADOPTION_PAGE_SIZE` per page, so
    it is paged to the end: an orphan older than the newest page (many rows submitted
    since) would otherwise be missed and paid for again. Tasks created while paging
    only push older ones to later offsets, so none is skipped.
    """
    found: dict[str, ProviderTask] = {}
    for offset in range(0, ADOPTION_MAX_PAGES * ADOPTION_PAGE_SIZE, ADOPTION_PAGE_SIZE):
        page = svc.client.tasks.retrieve_batch(
            created_at_min=since, limit=ADOPTION_PAGE_SIZE, offset=offset
        ).items
        for r in page:
            if r.request:
                found[r.id] = ProviderTask(
                    r.id, request_fingerprint(r.request), float(r.created_at or 0.0)
                )
        if len(page) < ADOPTION_PAGE_SIZE:
            break
    return list(found.values())


def _adopt(svc: Services, call: StepCall, entry: LedgerEntry) -> Outcome | None:
    """Find the task an interrupted POST created; None when resubmitting is safe."""
    since = (entry.post_started_at or entry.reserved_at) - ADOPTION_SLACK_S
    recent = recent_provider_tasks(svc, since)
    found = svc.ledger.adopt_orphan(call.key, recent, owner=call.celery_task_id)
    if found is None or found.api_task_id is None:
        return None
    _save_continuation(svc, call, found.api_task_id, callback_id=None)
    return Paused(found.api_task_id, adopted=True)


def _post(svc: Services, call: StepCall, params: AudioParams, epoch: int) -> Outcome:
    svc.ledger.begin_submit(call.key, owner=call.celery_task_id)
    callback_id, url = _callback(svc)
    try:
        submission: Submission = svc.client.audios.submit(params, callback_url=url)
    except RateLimitError as exc:
        pause = svc.limiter.report_throttled(
            svc.token_id, EndpointClass.SUBMIT, retry_after_s=exc.retry_after_s, epoch=epoch
        )
        svc.limiter.release(svc.token_id, call.key)
        return Wait(max(pause, 0.5), "provider_429")
    except APIStatusError as exc:
        if isinstance(exc, GatewayTimeoutError):
            svc.limiter.report_throttled(svc.token_id, EndpointClass.SUBMIT, epoch=epoch)
        return _fail_or_retry(svc, call, exc)
    except Exception as exc:
        return _fail_or_retry(svc, call, exc)
    svc.limiter.report_success(svc.token_id, EndpointClass.SUBMIT)
    svc.ledger.mark_submitted(call.key, api_task_id=submission.task_id, owner=call.celery_task_id)
    _save_continuation(svc, call, submission.task_id, callback_id=callback_id)
    return Paused(submission.task_id)


def _fail_or_retry(svc: Services, call: StepCall, exc: BaseException) -> Outcome:
    verdict = classify(exc)
    svc.limiter.release(svc.token_id, call.key)
    if isinstance(verdict, StepFailed):
        svc.ledger.mark_failed(call.key, code=verdict.code, message=verdict.message)
    raise verdict from exc


def _callback(svc: Services) -> tuple[str | None, str | None]:
    base = svc.settings.public_base_url
    if not base or svc.callback_secret is None:
        return None, None
    callback_id = secrets.token_urlsafe(18)
    return callback_id, callback_url(base, svc.callback_secret, callback_id)


def _lease_ttl_s(svc: Services) -> float:
    # The slot must outlive the longest legitimate wait, or a slow song would
    # free capacity it still uses; a dead worker's slot frees after this.
    return svc.settings.task_deadline_s + 300.0


def _save_continuation(
    svc: Services, call: StepCall, api_task_id: str, *, callback_id: str | None
) -> None:
    now = time.time()
    cont = Continuation(
        celery_task_id=call.celery_task_id,
        api_task_id=api_task_id,
        token_id=svc.token_id,
        step_key=call.key,
        action=call.action,
        submitted_at=now,
        deadline_at=now + svc.settings.task_deadline_s,
        callback_id=callback_id,
        context={"params": call.params, "context": call.context},
        delivery=call.delivery,
    )
    svc.continuations.save(cont, first_poll_at=now + svc.settings.poll_first_after_s)


__all__ = [
    "Finished",
    "Outcome",
    "Paused",
    "StepCall",
    "TransientError",
    "Wait",
    "recent_provider_tasks",
    "record_refusal",
    "submit_audio_step",
    "submitting",
]
