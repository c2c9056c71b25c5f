"""Every documented payload in shared/producer_api/examples parses into our models."""

from __future__ import annotations

from typing import Any

import pytest
from pclient_support import EXAMPLES_DIR, load_example

from producer_client import (
    AudioResult,
    LyricsResult,
    TaskBatch,
    TaskOutcome,
    TaskRecord,
    UploadResult,
    VideoResult,
    WavResult,
    parse_audio_params,
)

EXAMPLE_FILES = sorted(p.name for p in EXAMPLES_DIR.glob("*.json"))
AUDIOS_FILES = [name for name in EXAMPLE_FILES if name.startswith("audios_")]
RESULT_MODELS = {
    "upload.json": UploadResult,
    "lyrics.json": LyricsResult,
    "wav.json": WavResult,
    "videos.json": VideoResult,
}


def test_examples_folder_is_found() -> None:
    assert len(EXAMPLE_FILES) >= 13, EXAMPLES_DIR
    handled = (
        set(AUDIOS_FILES)
        | set(RESULT_MODELS)
        | {
            "errors.json",
            "tasks_retrieve.json",
            "tasks_openapi_examples.json",
        }
    )
    assert set(EXAMPLE_FILES) <= handled, "a new example file needs a parse test"


@pytest.mark.parametrize("name", AUDIOS_FILES)
def test_audios_request_parses_and_round_trips(name: str) -> None:
    request = load_example(name)["request"]
    body = parse_audio_params(request).to_body()
    assert {k: body[k] for k in request} == request
    assert body["prompt"] == request.get("prompt", "")
    assert body["lyric"] == request.get("lyric", "")


@pytest.mark.parametrize("name", AUDIOS_FILES)
def test_audios_response_parses(name: str) -> None:
    result = AudioResult.model_validate(load_example(name)["response"])
    assert result.success is True
    assert result.task_id
    assert len(result.data) == 1
    item = result.data[0]
    assert item.state == "succeeded"
    assert item.progress == "100%"
    assert item.audio_url or item.stems_url
    if item.duration is not None:
        assert item.duration > 0


def test_prompt_example_item_types() -> None:
    response = load_example("audios_generate_prompt.json")["response"]
    item = AudioResult.model_validate(response).data[0]
    assert item.seed == "2450882164"
    assert item.duration == pytest.approx(181.3014058956916)
    assert item.video_url is None
    assert item.sound == "A song for Christmas"


@pytest.mark.parametrize(("name", "model"), sorted(RESULT_MODELS.items()))
def test_endpoint_payloads_parse(name: str, model: type[Any]) -> None:
    data = load_example(name)
    assert set(data["request"]) <= {"audio_url", "prompt", "audio_id"}
    for key in ("response", "openapi_example_response"):
        if key in data:
            result = model.model_validate(data[key])
            assert result.success is True


def test_endpoint_payload_fields() -> None:
    upload = UploadResult.model_validate(load_example("upload.json")["response"])
    assert upload.audio_id == "d906da31-87cb-42f5-98df-2fc4969923b1"
    assert upload.lyric
    assert upload.audio_url
    lyrics = load_example("lyrics.json")
    assert LyricsResult.model_validate(lyrics["response"]).title == "Mercy in the Trees"
    spec = LyricsResult.model_validate(lyrics["openapi_example_response"])
    assert spec.lyrics.startswith("[Verse]")
    assert spec.status == "complete"
    wav = WavResult.model_validate(load_example("wav.json")["response"])
    assert wav.file_url.endswith(".wav")
    video = VideoResult.model_validate(load_example("videos.json")["response"])
    assert video.video_url.endswith(".mp4")


def test_tasks_retrieve_example() -> None:
    data = load_example("tasks_retrieve.json")
    assert data["request"] == {"id": data["response"]["id"], "action": "retrieve"}
    record = TaskRecord.model_validate(data["response"])
    assert record.type == "audios"
    assert record.mongo_id == "69541b81ff2676299ccc3b29"
    assert record.elapsed == pytest.approx(40.005)
    assert record.request["callback_url"].startswith("https://")
    # The documented response has no `success`: finished_at + final items decide.
    assert record.outcome is TaskOutcome.SUCCEEDED
    assert record.error_message is None
    assert record.audio_result().data[0].seed == "1490770667"
    assert (
        parse_audio_params({k: v for k, v in record.request.items() if k != "callback_url"}).action
        == "generate"
    )


def test_tasks_openapi_examples() -> None:
    data = load_example("tasks_openapi_examples.json")
    batch = TaskBatch.model_validate(data["response_example"])
    assert batch.items == []
    assert batch.count == 0
    assert data["not_found_response"] == {}


def test_error_examples_are_error_envelopes() -> None:
    by_status = load_example("errors.json")["by_status"]
    for bodies in by_status.values():
        for body in bodies:
            result = AudioResult.model_validate(body)
            assert result.error is not None
            assert result.error.code
