"""Media are real files: WAVs decode to the advertised length, PNG/zip/MP4 are well formed.

Extend keeps its source sample-exact up to ``continue_at`` (the emulator's media model);
the stems of a song are WAVs as long as the song.
"""

from __future__ import annotations

import io
import zipfile

from producer_client import ExtendParams, Producer, ReplaceSectionParams, StemsParams
from producer_emulator import EmulatorServer
from tests.contract.contract_support import (
    assert_length_matches,
    client,
    decode_wav,
    emu,
    fetch,
    make_song,
    server,
)

__all__ = ["client", "emu", "server"]  # fixtures imported for pytest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_song_wav_lasts_its_duration(emu: EmulatorServer, client: Producer) -> None:
    song = make_song(client)
    assert song.audio_url is not None
    reply = fetch(song.audio_url)
    assert reply.headers["content-type"] == "audio/wav"
    wav = decode_wav(reply.content)
    assert wav.rate == 8000
    assert_length_matches(wav, song.duration)
    assert wav.pcm.count(0) < len(wav.pcm)  # not silence


def test_cover_is_a_png(emu: EmulatorServer, client: Producer) -> None:
    song = make_song(client)
    assert song.image_url is not None
    reply = fetch(song.image_url)
    assert reply.headers["content-type"] == "image/png"
    assert reply.content.startswith(PNG_SIGNATURE)


def test_stems_zip_holds_wavs_as_long_as_the_song(emu: EmulatorServer, client: Producer) -> None:
    song = make_song(client)
    assert song.id is not None
    stems = client.audios.create(StemsParams(audio_id=song.id)).data[0]
    assert stems.stems_url is not None
    reply = fetch(stems.stems_url)
    assert reply.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(reply.content)) as archive:
        names = sorted(archive.namelist())
        layers = [decode_wav(archive.read(name)) for name in names]
    assert names == ["instrumental.wav", "vocals.wav"]
    for layer in layers:
        assert_length_matches(layer, song.duration)


def test_extend_starts_with_the_source_samples(emu: EmulatorServer, client: Producer) -> None:
    song = make_song(client)
    assert song.id is not None
    assert song.audio_url is not None
    extended = client.audios.create(ExtendParams(audio_id=song.id, continue_at=7.5)).data[0]
    assert extended.audio_url is not None
    source = decode_wav(fetch(song.audio_url).content)
    longer = decode_wav(fetch(extended.audio_url).content)
    assert_length_matches(longer, extended.duration)
    assert longer.head(7.5) == source.head(7.5)
    assert longer.head(8.5) != source.head(8.5)


def test_replace_section_keeps_the_outside(emu: EmulatorServer, client: Producer) -> None:
    song = make_song(client)
    assert song.id is not None
    assert song.audio_url is not None
    params = ReplaceSectionParams(audio_id=song.id, replace_section_start=3, replace_section_end=6)
    replaced = client.audios.create(params).data[0]
    assert replaced.audio_url is not None
    source = decode_wav(fetch(song.audio_url).content)
    edited = decode_wav(fetch(replaced.audio_url).content)
    assert edited.frames == source.frames
    assert edited.head(3) == source.head(3)
    tail = 2 * 6 * source.rate
    assert edited.pcm[tail:] == source.pcm[tail:]
    assert edited.pcm != source.pcm


def test_video_is_served_as_mp4(emu: EmulatorServer, client: Producer) -> None:
    song = make_song(client)
    assert song.id is not None
    video = client.videos.create(audio_id=song.id)
    reply = fetch(video.video_url)
    assert reply.headers["content-type"] == "video/mp4"
    assert reply.content[4:8] == b"ftyp"
    assert b"moov" in reply.content
    assert b"mdat" in reply.content
