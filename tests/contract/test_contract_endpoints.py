"""The quick endpoints through the client: upload, lyrics, wav, videos (CONTRACT §5)."""

from __future__ import annotations

import re
import uuid

from producer_client import (
    AsyncProducer,
    BadRequestError,
    InternalServerError,
    LyricsResult,
    Producer,
    TaskOutcome,
    UploadCoverParams,
    UploadResult,
    VideoResult,
    WavResult,
)
from producer_emulator import EmulatorServer
from tests.contract.contract_support import (
    TOKEN,
    CallbackReceiver,
    assert_length_matches,
    client,
    decode_wav,
    emu,
    fetch,
    finished,
    make_song,
    raises,
    receiver,
    server,
    statuses,
)

__all__ = ["client", "emu", "receiver", "server"]  # fixtures imported for pytest

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
API_IDS = {
    "lyrics": "2f636fdb-faa4-4308-8cef-9258dd14fd90",
    "videos": "5e06cbdd-ba7d-456d-a211-e3f242adec82",
    "upload": "91fcbb81-8bc9-4ed4-bdfa-0f296b2fec9d",
    "wav": "e7cad274-9c48-494c-b7e3-fc1556eea827",
}


def check_envelope(result: UploadResult | LyricsResult | WavResult | VideoResult) -> None:
    """``success`` and a task id, as the guides show."""
    assert result.success is True
    assert result.task_id is not None
    assert UUID.match(result.task_id)


def check_task(client: Producer, task_id: str | None, kind: str) -> None:
    """Quick endpoints are recorded as finished tasks of their own type."""
    assert task_id is not None
    record = client.tasks.retrieve(task_id)
    assert record is not None
    assert (record.type, record.api_id) == (kind, API_IDS[kind])
    assert record.outcome is TaskOutcome.SUCCEEDED


def test_upload_of_an_emulator_media_url(emu: EmulatorServer, client: Producer) -> None:
    song = make_song(client)
    assert song.audio_url is not None
    uploaded = client.upload.create(audio_url=song.audio_url)
    check_envelope(uploaded)
    assert uploaded.audio_id is not None
    assert uploaded.audio_id != song.id
    assert uploaded.lyric is not None
    assert uploaded.lyric.startswith("[Uploaded audio]")
    assert uploaded.audio_url is not None
    assert_length_matches(decode_wav(fetch(uploaded.audio_url).content), song.duration)
    check_task(client, uploaded.task_id, "upload")
    cover = client.audios.create(UploadCoverParams(audio_id=uploaded.audio_id, prompt="folk"))
    assert cover.data[0].duration == song.duration


def test_upload_of_missing_media_fails_like_the_guide(
    emu: EmulatorServer, client: Producer
) -> None:
    missing = f"{emu.url}/media/{uuid.uuid4()}.wav"
    error = raises(InternalServerError, lambda: client.upload.create(audio_url=missing))
    assert (error.code, error.message) == ("api_error", "fetch failed")
    assert statuses(emu, "/producer/upload") == [500]


def test_upload_with_callback(
    emu: EmulatorServer, client: Producer, receiver: CallbackReceiver
) -> None:
    song = make_song(client)
    assert song.audio_url is not None
    uploaded = client.upload.create(audio_url=song.audio_url, callback_url=receiver.url)
    assert uploaded.task_id is not None
    body = receiver.body_for(uploaded.task_id)
    assert UploadResult.model_validate(body) == uploaded


def test_lyrics(emu: EmulatorServer, client: Producer) -> None:
    result = client.lyrics.create(prompt="A song about winter")
    check_envelope(result)
    assert result.title == "A Song About Winter"
    assert result.lyrics.startswith("[Verse]")
    assert "winter" in result.lyrics
    check_task(client, result.task_id, "lyrics")


def test_wav(emu: EmulatorServer, client: Producer) -> None:
    song = make_song(client, title="Lossless")
    assert song.id is not None
    result = client.wav.create(audio_id=song.id)
    check_envelope(result)
    assert result.title == "Lossless"
    reply = fetch(result.file_url)
    assert reply.headers["content-type"] == "audio/wav"
    assert_length_matches(decode_wav(reply.content), song.duration)
    check_task(client, result.task_id, "wav")


def test_videos(emu: EmulatorServer, client: Producer) -> None:
    song = make_song(client)
    assert song.id is not None
    result = client.videos.create(audio_id=song.id)
    check_envelope(result)
    reply = fetch(result.video_url)
    assert reply.headers["content-type"] == "video/mp4"
    assert reply.content[4:8] == b"ftyp"
    check_task(client, result.task_id, "videos")


def test_wav_and_videos_of_an_unknown_song(emu: EmulatorServer, client: Producer) -> None:
    raises(BadRequestError, lambda: client.wav.create(audio_id="nope"))
    raises(BadRequestError, lambda: client.videos.create(audio_id="nope"))
    assert emu.counters()["submissions_total"] == 0


async def test_async_client_quick_endpoints(emu: EmulatorServer, client: Producer) -> None:
    song = make_song(client)
    assert song.id is not None
    assert song.audio_url is not None
    async with AsyncProducer(api_token=TOKEN, base_url=emu.url) as aclient:
        uploaded = await aclient.upload.create(audio_url=song.audio_url)
        lyrics = await aclient.lyrics.create(prompt="spring rain")
        wav = await aclient.wav.create(audio_id=song.id)
        video = await aclient.videos.create(audio_id=song.id)
    for result in (uploaded, lyrics, wav, video):
        check_envelope(result)
    assert uploaded.audio_id is not None
    assert wav.file_url == song.audio_url
    assert video.video_url.endswith(f"/media/{song.id}.mp4")
    assert emu.counters()["submissions_by_endpoint"] == {
        "audios": 1, "upload": 1, "lyrics": 1, "wav": 1, "videos": 1,
    }  # fmt: skip
    finished(client, lyrics.task_id or "")
