"""GET /media/...: real, decodable files that match the items describing them."""

from __future__ import annotations

import io
import wave
import zipfile

import httpx
from emulator_fixtures import api, emu, generate, retrieve, server, submit_async, wait_finished

from producer_emulator import EmulatorServer

__all__ = ["api", "emu", "server"]  # fixtures imported for pytest

SAMPLE_RATE = 8000  # fast_config


def frames_of(payload: bytes) -> tuple[int, int]:
    with wave.open(io.BytesIO(payload), "rb") as reader:
        assert (reader.getnchannels(), reader.getsampwidth()) == (1, 2)
        return reader.getnframes(), reader.getframerate()


def test_song_wav_length_matches_the_item_duration(api: httpx.Client) -> None:
    item = generate(api)
    reply = httpx.get(item["audio_url"])
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "audio/wav"
    assert int(reply.headers["content-length"]) == len(reply.content)
    frames, rate = frames_of(reply.content)
    assert rate == SAMPLE_RATE
    assert frames == round(float(item["duration"]) * SAMPLE_RATE)
    head = httpx.head(item["audio_url"])
    assert int(head.headers["content-length"]) == len(reply.content)


def test_same_seed_same_bytes(api: httpx.Client) -> None:
    first, second = generate(api, seed="77"), generate(api, seed="77")
    assert httpx.get(first["audio_url"]).content == httpx.get(second["audio_url"]).content
    other = generate(api, seed="78")
    assert httpx.get(other["audio_url"]).content != httpx.get(first["audio_url"]).content


def test_extended_song_wav_has_the_new_length(api: httpx.Client) -> None:
    source = generate(api)
    reply = api.post("/producer/audios", json={"action": "extend", "audio_id": source["id"]})
    item = reply.json()["data"][0]
    frames, _ = frames_of(httpx.get(item["audio_url"]).content)
    assert frames == round(float(item["duration"]) * SAMPLE_RATE)
    assert float(item["duration"]) > float(source["duration"])


def test_cover_png_and_video_mp4(api: httpx.Client) -> None:
    item = generate(api)
    png = httpx.get(item["image_url"])
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    video_url = api.post("/producer/videos", json={"audio_id": item["id"]}).json()["data"]
    mp4 = httpx.get(video_url["video_url"])
    assert mp4.headers["content-type"] == "video/mp4"
    assert mp4.content[4:8] == b"ftyp"


def test_stems_zip_holds_two_decodable_wavs(api: httpx.Client) -> None:
    source = generate(api)
    body = api.post("/producer/audios", json={"action": "stems", "audio_id": source["id"]}).json()
    reply = httpx.get(body["data"][0]["stems_url"])
    assert reply.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(reply.content)) as archive:
        assert sorted(archive.namelist()) == ["instrumental.wav", "vocals.wav"]
        for name in archive.namelist():
            frames, _ = frames_of(archive.read(name))
            assert frames == round(float(source["duration"]) * SAMPLE_RATE)


def test_preview_while_running_and_final_file_only_when_done(
    emu: EmulatorServer, api: httpx.Client
) -> None:
    # Long enough (3 s real) that a loaded machine cannot let the song finish between
    # the preview appearing and the checks below.
    emu.configure(generation_s=1500.0)
    task_id = submit_async(api, action="generate")
    while "response" not in (record := retrieve(api, task_id)):
        pass
    item = record["response"]["data"][0]
    final_url = item["audio_url"].replace("/media/preview/", "/media/")
    assert httpx.get(final_url).status_code == 404
    preview = httpx.get(item["audio_url"])
    assert preview.status_code == 200
    assert frames_of(preview.content)[0] == 20 * SAMPLE_RATE  # preview_render_s
    assert httpx.get(item["image_url"]).status_code == 200
    wait_finished(api, task_id)
    assert httpx.get(final_url).status_code == 200


def test_unknown_media_is_404(emu: EmulatorServer) -> None:
    for path in ("/media/nope.wav", "/media/stems/nope.zip", "/media/preview/nope.wav"):
        assert httpx.get(emu.url + path).status_code == 404


def test_stems_zip_is_404_until_the_task_succeeds(emu: EmulatorServer, api: httpx.Client) -> None:
    source = generate(api)
    emu.configure(generation_s=150.0)
    task_id = submit_async(api, action="stems", audio_id=source["id"])
    assert httpx.get(f"{emu.url}/media/stems/{task_id}.zip").status_code == 404
    record = wait_finished(api, task_id)
    assert httpx.get(record["response"]["data"][0]["stems_url"]).status_code == 200


def test_max_render_s_caps_the_file(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.configure(max_render_s=2.0)
    item = generate(api)
    assert frames_of(httpx.get(item["audio_url"]).content)[0] == 2 * SAMPLE_RATE
