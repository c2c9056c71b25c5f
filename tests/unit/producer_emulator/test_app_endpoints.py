"""upload, lyrics, wav, videos: guide shapes, errors, callbacks."""

from __future__ import annotations

import io
import wave

import httpx
import pytest
from emulator_fixtures import (
    CallbackReceiver,
    StaticFiles,
    api,
    emu,
    error_of,
    generate,
    server,
)

from producer_emulator import EmulatorServer

__all__ = ["api", "emu", "server"]  # fixtures imported for pytest


def wav_bytes(seconds: float, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x00" * int(seconds * rate))
    return buffer.getvalue()


def test_upload_of_an_external_wav_registers_a_usable_audio(
    emu: EmulatorServer, api: httpx.Client
) -> None:
    with StaticFiles({"/ref/demo.wav": wav_bytes(30.0)}) as files:
        reply = api.post("/producer/upload", json={"audio_url": f"{files.url}/ref/demo.wav"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["success"] is True
    assert set(body["data"]) == {"audio_id", "lyric", "audio_url"}
    audio_id = body["data"]["audio_id"]
    assert body["data"]["audio_url"].endswith(f"/media/{audio_id}.wav")
    for action in ("upload_extend", "extend", "upload_cover", "cover"):
        extra = {"continue_at": 20} if action.endswith("extend") else {}
        reply = api.post("/producer/audios", json={"action": action, "audio_id": audio_id, **extra})
        assert reply.status_code == 200, (action, reply.text)
    too_far = {"action": "upload_extend", "audio_id": audio_id, "continue_at": 31}
    assert error_of(api.post("/producer/audios", json=too_far))[0] == 400  # song is 30 s
    assert emu.counters()["submissions_by_endpoint"]["upload"] == 1


def test_upload_of_an_own_media_url_reuses_the_song(api: httpx.Client) -> None:
    song = generate(api, title="Mine")
    reply = api.post("/producer/upload", json={"audio_url": song["audio_url"]})
    audio_id = reply.json()["data"]["audio_id"]
    assert audio_id != song["id"]
    cover = api.post("/producer/audios", json={"action": "cover", "audio_id": audio_id}).json()
    assert cover["data"][0]["title"] == "Mine"
    assert cover["data"][0]["duration"] == song["duration"]


@pytest.mark.parametrize("path", ["/ref/not-a-wav.mp3", "/ref/missing.wav"], ids=["not-wav", "404"])
def test_upload_that_cannot_be_fetched_is_500_fetch_failed(
    emu: EmulatorServer, api: httpx.Client, path: str
) -> None:
    with StaticFiles({"/ref/not-a-wav.mp3": b"ID3\x03\x00 mp3 data"}) as files:
        reply = api.post("/producer/upload", json={"audio_url": files.url + path})
    assert reply.status_code == 500
    body = reply.json()
    assert body["success"] is False  # raised behind the gateway
    assert body["error"] == {"code": "api_error", "message": "fetch failed"}
    assert emu.counters()["tasks_total"] == 0


def test_upload_too_large_is_fetch_failed(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.configure(upload_max_bytes=1000)
    with StaticFiles({"/big.wav": wav_bytes(1.0)}) as files:
        reply = api.post("/producer/upload", json={"audio_url": f"{files.url}/big.wav"})
    assert error_of(reply) == (500, "api_error", "fetch failed")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "audio_url is required."),
        ({"audio_url": "file:///etc/passwd"}, "audio_url is invalid."),
        ({"audio_url": 3}, "audio_url must be a string."),
    ],
)
def test_upload_validation(api: httpx.Client, body: dict[str, object], message: str) -> None:
    assert error_of(api.post("/producer/upload", json=body)) == (400, "bad_request", message)


def test_lyrics_guide_shape(api: httpx.Client) -> None:
    body = api.post("/producer/lyrics", json={"prompt": "A song about winter"}).json()
    assert body["success"] is True
    assert set(body["data"]) == {"title", "lyrics"}
    assert body["data"]["title"] == "A Song About Winter"
    assert body["data"]["lyrics"].startswith("[Verse]")
    again = api.post("/producer/lyrics", json={"prompt": "A song about winter"}).json()
    assert again["data"] == body["data"]
    assert again["task_id"] != body["task_id"]
    assert error_of(api.post("/producer/lyrics", json={})) == (
        400,
        "bad_request",
        "prompt is required.",
    )


def test_wav_returns_an_array_of_title_and_file_url(api: httpx.Client) -> None:
    song = generate(api, title="Woke up")
    body = api.post("/producer/wav", json={"audio_id": song["id"]}).json()
    assert body["success"] is True
    assert body["data"] == [{"title": "Woke up", "file_url": song["audio_url"]}]
    assert {"task_id", "trace_id"} <= set(body)


def test_videos_returns_an_object_with_video_url(api: httpx.Client) -> None:
    song = generate(api)
    body = api.post("/producer/videos", json={"audio_id": song["id"]}).json()
    assert body["data"] == {"video_url": song["audio_url"].removesuffix(".wav") + ".mp4"}


@pytest.mark.parametrize("endpoint", ["wav", "videos"])
def test_wav_and_videos_need_a_known_audio_id(api: httpx.Client, endpoint: str) -> None:
    assert error_of(api.post(f"/producer/{endpoint}", json={})) == (
        400,
        "bad_request",
        "audio_id is required.",
    )
    reply = api.post(f"/producer/{endpoint}", json={"audio_id": "nope"})
    assert error_of(reply) == (400, "bad_request", "audio_id nope is not found.")


def test_quick_endpoints_also_post_to_callback_url(emu: EmulatorServer, api: httpx.Client) -> None:
    song = generate(api)
    with CallbackReceiver() as hook:
        lyrics = api.post("/producer/lyrics", json={"prompt": "x", "callback_url": hook.url})
        wav = api.post("/producer/wav", json={"audio_id": song["id"], "callback_url": hook.url})
        bodies = hook.wait_for(2)
    assert sorted(b["task_id"] for b in bodies) == sorted(
        [lyrics.json()["task_id"], wav.json()["task_id"]]
    )
    assert all(b["success"] is True for b in bodies)
    fingerprints = emu.counters()["submissions_by_fingerprint"]
    assert sum(1 for key in fingerprints if key.startswith("lyrics:")) == 1
