"""The documented example payloads (``shared/producer_api/examples``) against the emulator.

Each example *request* goes through the client to the emulator and the reply must parse;
the documented *response* must parse into the same model and have the same keys as the
emulator's. Ids and URLs the emulator cannot know (the vendor's audio ids, its CDN) are
swapped for ones it made; nothing else in a request is changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from producer_client import (
    AudioResult,
    LyricsResult,
    Producer,
    ProducerError,
    TaskBatch,
    TaskOutcome,
    TaskRecord,
    UploadResult,
    VideoResult,
    WavResult,
)
from producer_emulator import EmulatorServer
from tests.contract.contract_support import (
    TOKEN,
    StripAuthorization,
    client,
    emu,
    finished,
    load_example,
    make_song,
    raises_any,
    server,
)

__all__ = ["client", "emu", "server"]  # fixtures imported for pytest

AUDIOS_EXAMPLES = [
    "audios_cover.json",
    "audios_extend.json",
    "audios_generate_custom.json",
    "audios_generate_prompt.json",
    "audios_stems.json",
    "audios_swap_instrumentals.json",
]


def with_real_ids(request: dict[str, Any], client: Producer) -> dict[str, Any]:
    """The example request, its vendor ``audio_id`` replaced by a song the emulator made."""
    if "audio_id" not in request:
        return dict(request)
    return {**request, "audio_id": make_song(client).id}


@pytest.mark.parametrize("name", AUDIOS_EXAMPLES)
def test_audios_example(emu: EmulatorServer, client: Producer, name: str) -> None:
    example = load_example(name)
    documented = AudioResult.model_validate(example["response"])
    result = client.audios.create(with_real_ids(example["request"], client))
    assert result.success is documented.success is True
    assert len(result.data) == len(documented.data) == 1
    got = result.data[0].model_dump(exclude_none=True).keys()
    expected = documented.data[0].model_dump(exclude_none=True).keys()
    assert got == expected
    assert set(example["response"]["data"][0]) <= set(result.model_dump()["data"][0])


def test_generate_prompt_example_echoes_the_documented_values(
    emu: EmulatorServer, client: Producer
) -> None:
    example = load_example("audios_generate_prompt.json")
    item = client.audios.create(example["request"]).data[0]
    documented = example["response"]["data"][0]
    for key in ("title", "sound", "model", "progress", "state"):
        assert getattr(item, key) == documented[key], key


def test_upload_example(emu: EmulatorServer, client: Producer) -> None:
    example = load_example("upload.json")
    for body in (example["response"], example["openapi_example_response"]):
        assert UploadResult.model_validate(body).audio_id is not None
    url = make_song(client).audio_url
    assert url is not None
    request = {**example["request"], "audio_url": url}  # the vendor CDN is not reachable
    result = client.upload.create(**request)
    assert (
        result.model_dump().keys()
        == UploadResult.model_validate(example["response"]).model_dump().keys()
    )


def test_lyrics_example(emu: EmulatorServer, client: Producer) -> None:
    example = load_example("lyrics.json")
    for body in (example["response"], example["openapi_example_response"]):
        assert LyricsResult.model_validate(body).lyrics
    result = client.lyrics.create(**example["request"])
    assert result.title is not None
    assert result.lyrics


@pytest.mark.parametrize(
    ("name", "model", "call"),
    [
        ("wav.json", WavResult, lambda c, r: c.wav.create(**r)),
        ("videos.json", VideoResult, lambda c, r: c.videos.create(**r)),
    ],
)
def test_export_examples(
    emu: EmulatorServer,
    client: Producer,
    name: str,
    model: type[WavResult | VideoResult],
    call: Callable[[Producer, dict[str, Any]], WavResult | VideoResult],
) -> None:
    example = load_example(name)
    documented = model.model_validate(example["response"])
    result = call(client, with_real_ids(example["request"], client))
    assert type(result) is model
    assert result.model_dump().keys() == documented.model_dump().keys()


def test_tasks_retrieve_example(emu: EmulatorServer, client: Producer) -> None:
    example = load_example("tasks_retrieve.json")
    documented = TaskRecord.model_validate(example["response"])
    assert documented.outcome is TaskOutcome.SUCCEEDED  # no success key in the doc
    generate = load_example("audios_generate_custom.json")["request"]
    task_id = client.audios.submit(generate).task_id
    request = {**example["request"], "id": task_id}
    assert request["action"] == "retrieve"
    record = finished(client, request["id"])
    assert set(example["response"]) <= set(record.model_dump(by_alias=True))
    assert record.request == {**generate, "prompt": "", "async": True}


def test_tasks_openapi_examples(emu: EmulatorServer, client: Producer) -> None:
    example = load_example("tasks_openapi_examples.json")
    assert TaskBatch.model_validate(example["response_example"]).count == 0
    assert client.tasks.retrieve(example["request_example"]["id"]) is None
    assert example["not_found_response"] == {}
    assert client.tasks.retrieve_batch([example["request_example"]["id"]]).model_dump() == {
        "items": [],
        "count": 0,
    }


# -- documented errors -------------------------------------------------------------------


def _provoke(
    emu: EmulatorServer, client: Producer, code: str, message: str | None, status: int
) -> None:
    """Make the emulator answer with the documented error ``code``."""
    if code == "no_token":
        with Producer(api_token=TOKEN, base_url=emu.url, transport=StripAuthorization()) as bare:
            bare.tasks.retrieve("x")
    elif code == "invalid_token":
        with Producer(api_token=TOKEN + "-wrong", base_url=emu.url) as wrong:
            wrong.tasks.retrieve("x")
    elif code == "no_api":
        client._http.post("/producer/nothing", {}, idempotent=True)
    elif code == "bad_request":
        from producer_client import GenerateParams

        unknown_model: dict[str, Any] = {"prompt": "x", "model": "FUZZ-9"}
        client.audios.submit(GenerateParams.model_construct(**unknown_model))
    elif code == "api_error" and message == "fetch failed":
        client.upload.create(audio_url=f"{emu.url}/media/00000000-0000-4000-8000-000000000000.wav")
    else:
        fault = {
            "token_mismatched": f"token_mismatched_{status}",
            "api_not_implemented": "api_not_implemented_400",
            "disabled": "disabled_400",
            "token_expired": "token_expired_401",
            "used_up": "used_up_403",
            "forbidden": "forbidden_403",
            "too_many_requests": "too_many_requests_429",
            "api_error": "api_error_500",
            "timeout": "timeout_504",
        }[code]
        emu.configure(faults={"timeout_delay_s": 0.0, "rules": [{"fault": fault}]})
        client.lyrics.create(prompt="x")


def documented_errors() -> list[tuple[int, str, str | None]]:
    """``(status, code, message)`` of every documented error body."""
    by_status = load_example("errors.json")["by_status"]
    return [
        (int(status), body["error"]["code"], body["error"]["message"])
        for status, bodies in by_status.items()
        for body in bodies
    ]


@pytest.mark.parametrize(
    ("status", "code", "message"),
    documented_errors(),  # every documented code: the emulator produces each one
    ids=lambda value: str(value),
)
def test_documented_error(emu: EmulatorServer, status: int, code: str, message: str | None) -> None:
    with Producer(api_token=TOKEN, base_url=emu.url, max_retries=0) as quiet:
        error = raises_any(ProducerError, lambda: _provoke(emu, quiet, code, message, status))
    assert (error.status_code, error.code) == (status, code)
    if message is not None:
        assert error.message == message
