"""Response models: type drift tolerance and the task completion rule (CONTRACT §4.3)."""

from __future__ import annotations

from typing import Any

import pytest

from producer_client import (
    AudioItem,
    AudioResult,
    Submission,
    TaskBatch,
    TaskFailedError,
    TaskOutcome,
    TaskRecord,
    WavResult,
)

DONE_AT = 1767119785.589
SONG = {"id": "a1", "audio_url": "https://cdn/x.mp3", "state": "succeeded", "progress": "100%"}
STEMS = {"title": "t", "stems_url": "https://cdn/x.zip", "state": "succeeded", "model": ""}
PREVIEW = {"id": "a1", "audio_url": "https://cdn/preview.mp3", "state": "pending"}


def record(response: dict[str, Any] | None = None, **fields: Any) -> TaskRecord:
    body: dict[str, Any] = {"id": "t1", "type": "audios", "created_at": 1.0, **fields}
    if response is not None:
        body["response"] = response
    return TaskRecord.model_validate(body)


# (name, finished_at, response, outcome, error_message)
TRUTH_TABLE: list[tuple[str, float | None, dict[str, Any] | None, TaskOutcome, str | None]] = [
    ("queued, no response", None, None, TaskOutcome.PENDING, None),
    ("running, empty response", None, {}, TaskOutcome.PENDING, None),
    ("preview audio_url while pending", None, {"data": [PREVIEW]}, TaskOutcome.PENDING, None),
    ("items look final but not finished", None, {"data": [SONG]}, TaskOutcome.PENDING, None),
    ("error without success, not finished", None, {"error": "x"}, TaskOutcome.PENDING, None),
    ("success true", None, {"success": True, "data": [SONG]}, TaskOutcome.SUCCEEDED, None),
    ("success true, finished", DONE_AT, {"success": True, "data": []}, TaskOutcome.SUCCEEDED, None),
    ("finished, no success, final items", DONE_AT, {"data": [SONG]}, TaskOutcome.SUCCEEDED, None),
    ("finished, no success, stems item", DONE_AT, {"data": [STEMS]}, TaskOutcome.SUCCEEDED, None),
    (
        "finished, state complete",
        DONE_AT,
        {"data": [{**SONG, "state": "complete"}]},
        TaskOutcome.SUCCEEDED,
        None,
    ),
    ("finished without success or items", DONE_AT, {"data": []}, TaskOutcome.FAILED, "Task failed"),
    ("finished without response", DONE_AT, None, TaskOutcome.FAILED, "Task failed"),
    (
        "finished, preview item only",
        DONE_AT,
        {"data": [PREVIEW]},
        TaskOutcome.FAILED,
        "Task failed",
    ),
    (
        "finished, succeeded state but no url",
        DONE_AT,
        {"data": [{"state": "succeeded"}]},
        TaskOutcome.FAILED,
        "Task failed",
    ),
    (
        "finished, one item not final",
        DONE_AT,
        {"data": [SONG, PREVIEW]},
        TaskOutcome.FAILED,
        "Task failed",
    ),
    (
        "success false, error object",
        None,
        {"success": False, "error": {"code": "api_error", "message": "fetch failed"}, "data": []},
        TaskOutcome.FAILED,
        "fetch failed",
    ),
    (
        "success false, error string",
        DONE_AT,
        {"success": False, "error": "moderated"},
        TaskOutcome.FAILED,
        "moderated",
    ),
    (
        "success false, error null",
        DONE_AT,
        {"success": False, "error": None},
        TaskOutcome.FAILED,
        "Task failed",
    ),
    (
        "success false, code only",
        DONE_AT,
        {"success": False, "error": {"code": "forbidden"}},
        TaskOutcome.FAILED,
        "forbidden",
    ),
    (
        "success false, partial playable data",
        DONE_AT,
        {"success": False, "error": {"message": "one of two failed"}, "data": [SONG]},
        TaskOutcome.FAILED,
        "one of two failed",
    ),
]


@pytest.mark.parametrize(
    ("finished_at", "response", "outcome", "message"),
    [row[1:] for row in TRUTH_TABLE],
    ids=[row[0] for row in TRUTH_TABLE],
)
def test_outcome_truth_table(
    finished_at: float | None,
    response: dict[str, Any] | None,
    outcome: TaskOutcome,
    message: str | None,
) -> None:
    rec = record(response, finished_at=finished_at)
    assert rec.outcome is outcome
    assert rec.error_message == message


def test_partial_failure_still_exposes_items() -> None:
    rec = record({"success": False, "error": "partial", "data": [SONG]}, finished_at=DONE_AT)
    with pytest.raises(TaskFailedError, match="partial") as info:
        rec.raise_for_failure()
    assert info.value.record.audio_result().data[0].audio_url == SONG["audio_url"]


def test_raise_for_failure_passes_other_outcomes() -> None:
    rec = record({"success": True})
    assert rec.raise_for_failure() is rec
    pending = record(None)
    assert pending.raise_for_failure() is pending


def test_outcome_values_are_lowercase_words() -> None:
    assert [o.value for o in TaskOutcome] == ["pending", "succeeded", "failed"]
    assert record({"success": True}).model_dump(mode="json")["id"] == "t1"


def test_item_type_drift() -> None:
    item = AudioItem.model_validate(
        {"seed": 2450882164, "progress": 55, "duration": 181.3, "state": "running", "new": 1}
    )
    assert item.seed == "2450882164"
    assert item.progress == "55%"
    assert item.duration == pytest.approx(181.3)
    assert item.model_extra == {"new": 1}
    empty = AudioItem.model_validate({"duration": "", "seed": None, "progress": "100%"})
    assert empty.duration is None
    assert empty.progress == "100%"
    assert AudioItem.model_validate({"duration": "181.30"}).duration == pytest.approx(181.3)


@pytest.mark.parametrize(
    ("error", "message"),
    [({"code": "c", "message": "m"}, "m"), ("bare", "bare"), (None, None), ("", None)],
)
def test_result_error_shapes(error: Any, message: str | None) -> None:
    result = AudioResult.model_validate({"success": False, "error": error})
    assert (result.error.message if result.error else None) == message


def test_result_data_shapes() -> None:
    assert AudioResult.model_validate({"data": None}).data == []
    assert AudioResult.model_validate({"data": SONG}).data[0].id == "a1"


def test_submission_shapes() -> None:
    assert Submission.model_validate({"task_id": "t"}).success is None
    sub = Submission.model_validate({"success": True, "task_id": "t", "trace_id": "r"})
    assert (sub.task_id, sub.trace_id) == ("t", "r")


def test_wav_tolerates_object_data() -> None:
    wav = WavResult.model_validate({"success": True, "data": {"file_url": "u", "title": "t"}})
    assert (wav.file_url, wav.title) == ("u", "t")


def test_record_tolerates_doc_drift() -> None:
    rec = TaskRecord.model_validate(
        {
            "id": "t",
            "duration": 40.06,
            "finished_at": "1767119785.5",
            "future_key": [1],
            "request": None,
        }
    )
    assert rec.request == {}
    assert rec.elapsed == pytest.approx(40.06)
    assert rec.finished_at == pytest.approx(1767119785.5)
    assert (rec.model_extra or {})["future_key"] == [1]


def test_batch_count_defaults_to_items() -> None:
    batch = TaskBatch.model_validate({"items": [{"id": "a"}, {"id": "b"}]})
    assert batch.count == 2
    assert TaskBatch.model_validate({"items": None, "count": 7}).count == 7
