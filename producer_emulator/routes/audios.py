"""``POST /producer/audios``: check, create the task, run it in one of three modes.

* sync (neither ``callback_url`` nor ``async``): the reply is held until the
  song is done, then the full result (a failed task answers 500 with the
  failure body);
* ``callback_url``: ``{task_id, trace_id}`` at once, the result POSTed later;
* ``async: true``: ``{task_id, trace_id}`` at once, poll ``/producer/tasks``.

The immediate reply adds ``success: true`` when ``async_reply_success`` is on
(CONTRACT §9 Q6). Each call yields one item (CONTRACT §9 Q9).
"""

from __future__ import annotations

import time
from typing import Any

from producer_client import request_fingerprint
from producer_emulator.config import EmulatorConfig
from producer_emulator.errors import ApiError, bad_request, new_id
from producer_emulator.jobs.generation import Job
from producer_emulator.limits import retry_after_seconds
from producer_emulator.records import iso_now, preview_item, song_item, stems_item
from producer_emulator.render.media import SongSpec, duration_for_seed
from producer_emulator.render.texts import song_lyric, song_title
from producer_emulator.routes.calls import Call, Reply
from producer_emulator.state import AudioEntry, EmulatorState, TaskRecord
from producer_emulator.validation import AudiosParams, check_against_source, parse_audios


async def handle_audios(call: Call) -> Reply:
    """Validate, admit under the in-flight cap, create and run one generation."""
    state = call.state
    config = state.config
    params = parse_audios(
        call.body, default_model=config.default_model, strict=config.strict_required
    )
    source = find_source(state, params.audio_id)
    if source is not None:
        check_against_source(params, source.spec.duration_s)
    _admit(state, call.token)
    record = state.new_task(
        task_id=new_id(), kind="audios", token=call.token, trace_id=call.trace_id, body=call.body
    )
    state.count_submission("audios", request_fingerprint(call.body))
    job = _job(call, params, source, record)
    hold = not params.is_async and params.callback_url is None and not call.reply_is_faulted
    waiter = call.runner.launch(record, job, hold=hold)
    if waiter is None:
        return 200, immediate_reply(record, config)
    await waiter
    return _sync_reply(record)


def find_source(state: EmulatorState, audio_id: str | None) -> AudioEntry | None:
    """The stored song ``audio_id`` names; 400 when unknown or not finished yet."""
    if audio_id is None:
        return None
    entry = state.audios.get(audio_id)
    if entry is None:
        raise bad_request(f"audio_id {audio_id} is not found.")
    if not entry.ready:
        raise bad_request(f"audio_id {audio_id} is not ready yet.")
    return entry


def immediate_reply(record: TaskRecord, config: EmulatorConfig) -> dict[str, Any]:
    """The reply of async and callback submissions."""
    reply: dict[str, Any] = {"success": True} if config.async_reply_success else {}
    reply["task_id"] = record.id
    reply["trace_id"] = record.trace_id
    return reply


def _admit(state: EmulatorState, token: str) -> None:
    cap = state.config.max_concurrency
    if cap is None or state.in_flight.count(token) < cap:
        return
    state.counters.rejected_429["concurrency"] += 1
    wait_s = state.in_flight.seconds_until_free(token, time.monotonic())
    raise ApiError("too_many_requests", retry_after_s=retry_after_seconds(wait_s))


def _job(call: Call, params: AudiosParams, source: AudioEntry | None, record: TaskRecord) -> Job:
    state = call.state
    if params.action == "stems" and source is not None:
        state.stems_sources[record.id] = source.audio_id
        item = stems_item(title=source.title, base_url=call.base_url, task_id=record.id)
        return Job(item=item, plan=call.plan, callback_url=params.callback_url)
    seed = state.song_seed(params.seed)
    entry = AudioEntry(
        audio_id=new_id(),
        spec=build_spec(params, source, seed, state.config),
        seed=seed,
        title=song_title(params, source),
        lyric=song_lyric(params, source, seed),
        ready=False,
    )
    state.audios[entry.audio_id] = entry
    sound = "" if params.custom else params.prompt
    item = song_item(
        entry, base_url=call.base_url, model=params.model, sound=sound, created_at=iso_now()
    )
    record.preview_item = preview_item(item, base_url=call.base_url)
    return Job(
        item=item,
        plan=call.plan,
        callback_url=params.callback_url,
        new_audio_ids=(entry.audio_id,),
    )


def build_spec(
    params: AudiosParams, source: AudioEntry | None, seed: int, config: EmulatorConfig
) -> SongSpec:
    """The new song's media recipe, derived from the source song for edit actions."""
    action = params.action.removeprefix("upload_")
    if source is None:
        length = duration_for_seed(seed, low_s=config.song_low_s, high_s=config.song_high_s)
        return SongSpec.new(seed=seed, duration_s=length, instrumental=params.instrumental)
    spec = source.spec
    if action == "cover":
        return spec.cover(seed=seed, instrumental=params.instrumental)
    if action == "extend":
        return _extend(spec, params, seed, config)
    if action == "replace_section":
        start, end = params.replace_start or 0.0, params.replace_end or spec.duration_s
        return spec.replace_section(start_s=start, end_s=end, seed=seed)
    if action == "swap_vocals":
        return spec.swap_vocals(seed=seed)
    if action == "swap_instrumentals":
        return spec.swap_instrumentals(seed=seed)
    return spec.variation(seed=seed)


def _extend(spec: SongSpec, params: AudiosParams, seed: int, config: EmulatorConfig) -> SongSpec:
    # No continue_at: continue from the end. The added part is about half a song.
    at = spec.duration_s if params.continue_at is None else params.continue_at
    added = duration_for_seed(seed, low_s=config.song_low_s / 2, high_s=config.song_high_s / 2)
    return spec.extend(continue_at_s=at, seed=seed, added_s=added)


def _sync_reply(record: TaskRecord) -> Reply:
    body = record.response or {}
    return (200 if body.get("success") is True else 500), body
