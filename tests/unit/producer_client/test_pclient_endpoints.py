"""Every endpoint and mode through MockTransport, for the sync and the async client."""

from __future__ import annotations

from typing import Any

import pytest
from pclient_support import TOKEN, Harness, Script, load_example, reply

from producer_client import (
    AudioResult,
    GenerateParams,
    MalformedResponseError,
    ParamsValidationError,
    StemsParams,
    Submission,
    TaskOutcome,
    WaitTimeoutError,
)

TASK_ID = "1a6ac2ad-10f2-4e2b-b500-66ec27fe82ad"
PROMPT_EXAMPLE = load_example("audios_generate_prompt.json")
TASK_EXAMPLE = load_example("tasks_retrieve.json")["response"]
PENDING = {"id": TASK_ID, "type": "audios", "created_at": 1.0, "request": {}}


def test_blocking_create_sends_no_async_and_parses(harness: Harness) -> None:
    script = Script(reply(body=PROMPT_EXAMPLE["response"]))
    result = harness.run(script, lambda c: c.audios.create(PROMPT_EXAMPLE["request"]))
    assert isinstance(result, AudioResult)
    assert result.data[0].seed == "2450882164"
    (body,) = script.bodies
    assert body == {
        **PROMPT_EXAMPLE["request"],
        "lyric": "",
        "custom": False,
        "instrumental": False,
    }
    assert "async" not in body
    assert "callback_url" not in body
    request = script.requests[0]
    assert (request.method, request.url.path) == ("POST", "/producer/audios")
    assert str(request.url).startswith("https://api.acedata.cloud/")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


def test_blocking_create_uses_a_long_read_timeout(harness: Harness) -> None:
    script = Script(reply(body=PROMPT_EXAMPLE["response"]))
    harness.run(script, lambda c: c.audios.create(GenerateParams(prompt="x")))
    assert script.requests[0].extensions["timeout"]["read"] == 1800.0
    harness.run(script, lambda c: c.audios.create(GenerateParams(prompt="x"), timeout_s=5.0))
    assert script.requests[1].extensions["timeout"]["read"] == 5.0


def test_submit_async_mode(harness: Harness) -> None:
    script = Script(reply(body={"task_id": TASK_ID}))
    sub = harness.run(script, lambda c: c.audios.submit(StemsParams(audio_id="a")))
    assert isinstance(sub, Submission)
    assert sub.task_id == TASK_ID
    assert script.bodies == [
        {"action": "stems", "prompt": "", "lyric": "", "audio_id": "a", "async": True}
    ]
    assert script.requests[0].extensions["timeout"]["read"] == 60.0


def test_submit_callback_mode(harness: Harness) -> None:
    script = Script(reply(body={"success": True, "task_id": TASK_ID, "trace_id": "tr"}))
    url = "https://hooks.example/cb/abc"
    sub = harness.run(
        script, lambda c: c.audios.submit({"action": "generate", "prompt": "p"}, callback_url=url)
    )
    assert (sub.task_id, sub.trace_id, sub.success) == (TASK_ID, "tr", True)
    (body,) = script.bodies
    assert body["callback_url"] == url
    assert "async" not in body


def test_invalid_params_never_reach_the_api(harness: Harness) -> None:
    script = Script()
    with pytest.raises(ParamsValidationError, match="stems: audio_id: field required"):
        harness.run(script, lambda c: c.audios.submit({"action": "stems"}))
    with pytest.raises(ParamsValidationError, match="callback_url"):
        harness.run(
            script, lambda c: c.audios.submit(GenerateParams(prompt="x"), callback_url="ftp://x")
        )
    with pytest.raises(ParamsValidationError, match="params"):
        harness.run(script, lambda c: c.audios.create(42))
    assert script.requests == []


def test_submission_without_task_id_is_malformed(harness: Harness) -> None:
    script = Script(reply(body={"success": True}))
    with pytest.raises(MalformedResponseError, match="Submission"):
        harness.run(script, lambda c: c.audios.submit(GenerateParams(prompt="x")))


def test_retrieve(harness: Harness) -> None:
    script = Script(reply(body=TASK_EXAMPLE))
    rec = harness.run(script, lambda c: c.tasks.retrieve(TASK_ID))
    assert rec.id == TASK_ID
    assert rec.outcome is TaskOutcome.SUCCEEDED
    assert script.bodies == [{"action": "retrieve", "id": TASK_ID}]
    assert script.paths == ["/producer/tasks"]


def test_retrieve_unknown_id_is_none(harness: Harness) -> None:
    assert harness.run(Script(reply(body={})), lambda c: c.tasks.retrieve("nope")) is None


def test_retrieve_batch_ids(harness: Harness) -> None:
    script = Script(reply(body={"items": [TASK_EXAMPLE, PENDING], "count": 2}))
    batch = harness.run(script, lambda c: c.tasks.retrieve_batch([TASK_ID, "b"]))
    assert batch.count == 2
    assert [r.outcome for r in batch.items] == [TaskOutcome.SUCCEEDED, TaskOutcome.PENDING]
    assert script.bodies == [{"action": "retrieve_batch", "ids": [TASK_ID, "b"]}]


def test_retrieve_batch_listing_with_filters(harness: Harness) -> None:
    script = Script(reply(body={"items": [], "count": 0}))
    call = lambda c: c.tasks.retrieve_batch(  # noqa: E731
        limit=5, offset=10, created_at_min=1.5, created_at_max=9.0, type="audios"
    )
    assert harness.run(script, call).items == []
    assert script.bodies == [
        {
            "action": "retrieve_batch",
            "limit": 5,
            "offset": 10,
            "created_at_min": 1.5,
            "created_at_max": 9.0,
            "type": "audios",
        }
    ]


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [(("abc",), {}), ((), {"limit": -1}), ((), {"offset": True}), (([""],), {})],
)
def test_retrieve_batch_rejects_bad_arguments(
    harness: Harness, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    script = Script()
    with pytest.raises(ParamsValidationError):
        harness.run(script, lambda c: c.tasks.retrieve_batch(*args, **kwargs))
    assert script.requests == []


def test_wait_polls_until_finished(harness: Harness) -> None:
    running = {**PENDING, "response": {"data": [{"audio_url": "preview", "state": "pending"}]}}
    script = Script(reply(body={}), reply(body=running), reply(body=TASK_EXAMPLE))
    rec = harness.run(script, lambda c: c.tasks.wait(TASK_ID, interval_s=0.0, timeout_s=5.0))
    assert rec.outcome is TaskOutcome.SUCCEEDED
    assert len(script.requests) == 3


def test_wait_returns_failed_records(harness: Harness) -> None:
    failed = {**PENDING, "finished_at": 2.0, "response": {"success": False, "error": "boom"}}
    rec = harness.run(Script(reply(body=failed)), lambda c: c.tasks.wait(TASK_ID, interval_s=0))
    assert rec.outcome is TaskOutcome.FAILED
    assert rec.error_message == "boom"


def test_wait_times_out(harness: Harness) -> None:
    script = Script(reply(body=PENDING))
    with pytest.raises(WaitTimeoutError, match=TASK_ID) as info:
        harness.run(script, lambda c: c.tasks.wait(TASK_ID, interval_s=0.01, timeout_s=0.05))
    assert info.value.last is not None
    assert info.value.last.id == TASK_ID
    assert len(script.requests) >= 2


def test_upload(harness: Harness) -> None:
    data = load_example("upload.json")
    script = Script(reply(body=data["response"]))
    result = harness.run(script, lambda c: c.upload.create(audio_url=data["request"]["audio_url"]))
    assert result.audio_id == data["response"]["data"]["audio_id"]
    assert script.bodies == [data["request"]]
    assert script.paths == ["/producer/upload"]


def test_upload_with_callback_accepts_an_acknowledgement(harness: Harness) -> None:
    script = Script(reply(body={"task_id": "t"}))
    result = harness.run(
        script, lambda c: c.upload.create(audio_url="https://a/x.mp3", callback_url="https://cb/1")
    )
    assert (result.task_id, result.audio_id) == ("t", None)
    assert script.bodies == [{"audio_url": "https://a/x.mp3", "callback_url": "https://cb/1"}]


def test_upload_without_audio_id_is_malformed(harness: Harness) -> None:
    with pytest.raises(MalformedResponseError, match="audio_id"):
        harness.run(
            Script(reply(body={"success": True, "data": {}})),
            lambda c: c.upload.create(audio_url="https://a/x.mp3"),
        )


@pytest.mark.parametrize("key", ["response", "openapi_example_response"])
def test_lyrics(harness: Harness, key: str) -> None:
    data = load_example("lyrics.json")
    script = Script(reply(body=data[key]))
    result = harness.run(script, lambda c: c.lyrics.create(prompt="A song about winter"))
    assert result.lyrics.startswith("[Verse")
    assert script.bodies == [data["request"]]
    assert script.paths == ["/producer/lyrics"]


def test_wav(harness: Harness) -> None:
    data = load_example("wav.json")
    script = Script(reply(body=data["response"]))
    result = harness.run(script, lambda c: c.wav.create(audio_id=data["request"]["audio_id"]))
    assert result.file_url == data["response"]["data"][0]["file_url"]
    assert result.title == "Woke up with the sun in my eyes"
    assert script.bodies == [data["request"]]
    assert script.paths == ["/producer/wav"]


def test_videos(harness: Harness) -> None:
    data = load_example("videos.json")
    script = Script(reply(body=data["response"]))
    result = harness.run(script, lambda c: c.videos.create(audio_id=data["request"]["audio_id"]))
    assert result.video_url.endswith(".mp4")
    assert script.bodies == [data["request"]]
    assert script.paths == ["/producer/videos"]


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.lyrics.create(prompt=" "),
        lambda c: c.wav.create(audio_id=""),
        lambda c: c.videos.create(audio_id=""),
        lambda c: c.upload.create(audio_url="not-a-url"),
        lambda c: c.tasks.retrieve(""),
    ],
)
def test_small_endpoints_validate_arguments(harness: Harness, call: Any) -> None:
    script = Script()
    with pytest.raises(ParamsValidationError):
        harness.run(script, call)
    assert script.requests == []


def test_base_url_is_configurable(harness: Harness) -> None:
    script = Script(reply(body={}))
    harness.run(script, lambda c: c.tasks.retrieve("x"), base_url="http://127.0.0.1:9/api/")
    assert str(script.requests[0].url) == "http://127.0.0.1:9/api/producer/tasks"
