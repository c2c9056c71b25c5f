"""``ProviderOutcome``: built by the poller and the callback receiver, read by collect,
carried through Celery as JSON with the field names of the dicts it replaced."""

from __future__ import annotations

import pytest
from kombu.utils.json import dumps, loads
from pydantic import ValidationError

from workers.completion.outcome import ProviderOutcome

SONG = {
    "id": "a1",
    "state": "succeeded",
    "audio_url": "https://cdn.example/a1.mp3",
    "duration": 61.5,
    "title": "Rain",
}
RECORD = {
    "id": "api-1",
    "created_at": 100,
    "started_at": 101.5,
    "finished_at": 160.0,
    "elapsed": 60,
    "response": {"success": True, "task_id": "api-1", "data": [SONG]},
}
FAILED_RECORD = {
    "id": "api-2",
    "finished_at": 9.0,
    "response": {"success": False, "error": {"code": "nsfw", "message": "no"}},
}


def _through_celery(outcome: ProviderOutcome) -> ProviderOutcome:
    # Celery's JSON serializer is kombu's: what collect receives is this.
    return ProviderOutcome.from_json(loads(dumps(outcome.to_json())))


@pytest.mark.parametrize(
    "outcome",
    [
        ProviderOutcome.from_record("succeeded", RECORD),
        ProviderOutcome.from_record("failed", FAILED_RECORD),
        ProviderOutcome.from_callback({"success": True, "task_id": "api-1", "data": [SONG]}),
        ProviderOutcome.from_callback({"success": False, "error": "quota"}),
        ProviderOutcome.expired("api-3", 3600.0),
    ],
    ids=["record-ok", "record-failed", "callback-ok", "callback-failed", "expired"],
)
def test_round_trip_through_celery_json_is_lossless(outcome: ProviderOutcome) -> None:
    assert _through_celery(outcome) == outcome


def test_json_keeps_the_old_field_names() -> None:
    assert ProviderOutcome.from_record("succeeded", RECORD).to_json() == {
        "status": "succeeded",
        "record": RECORD,
        "source": "poller",
    }
    assert ProviderOutcome.from_callback({"success": True}).to_json() == {
        "status": "succeeded",
        "response": {"success": True},
        "source": "callback",
    }
    assert ProviderOutcome.expired("api-3", 12.5).to_json() == {
        "status": "expired",
        "source": "poller",
        "error": {
            "code": "deadline_exceeded",
            "message": "provider task api-3 not finished after 12.5s",
        },
    }


def test_a_callback_succeeds_only_on_success_true() -> None:
    assert ProviderOutcome.from_callback({"success": True}).succeeded
    assert not ProviderOutcome.from_callback({"success": "yes"}).succeeded
    assert ProviderOutcome.from_callback({}).status == "failed"


def test_songs_and_timings_from_a_record_or_a_callback() -> None:
    polled = ProviderOutcome.from_record("succeeded", RECORD)
    called = ProviderOutcome.from_callback(RECORD["response"])
    for outcome in (polled, called):
        songs = outcome.audio_result().data
        assert [(s.id, s.duration) for s in songs] == [("a1", 61.5)]
    assert polled.record_timings() == {
        "created_at": 100.0,
        "started_at": 101.5,
        "finished_at": 160.0,
        "elapsed": 60.0,
    }
    assert called.record_timings() == {}


def test_failure_names_code_and_message_from_every_source() -> None:
    assert ProviderOutcome.from_record("failed", FAILED_RECORD).failure() == ("nsfw", "no")
    assert ProviderOutcome.from_callback({"success": False, "error": "quota"}).failure() == (
        "provider_task_failed",
        "quota",
    )
    assert ProviderOutcome.from_callback({"success": False}).failure() == (
        "provider_task_failed",
        "the provider reported the task failed",
    )
    assert ProviderOutcome.expired("api-3", 5.0).failure() == (
        "deadline_exceeded",
        "provider task api-3 not finished after 5.0s",
    )


def test_unknown_status_or_source_is_refused() -> None:
    with pytest.raises(ValidationError):
        ProviderOutcome.from_json({"status": "pending", "source": "poller"})
    with pytest.raises(ValidationError):
        ProviderOutcome.from_json({"status": "failed", "source": "carrier-pigeon"})
