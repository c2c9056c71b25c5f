"""The emulator's media: real, decodable, deterministic, and edits that keep what they keep."""

from __future__ import annotations

import io
import json
import struct
import wave
import zipfile
import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producer_emulator.render import _synth
from producer_emulator.render.media import (
    CROSSFADE_S,
    RenderOptions,
    Segment,
    SongSpec,
    duration_for_seed,
    render_cover_png,
    render_stems_zip,
    render_video_mp4,
    render_wav,
    wav_size_bytes,
)

SR = 8000
LOW = RenderOptions(sample_rate=SR)
Samples = np.ndarray[Any, np.dtype[np.int16]]


def decode(data: bytes, sample_rate: int = SR) -> Samples:
    """The samples of a WAV, after checking it is 16-bit mono at ``sample_rate``."""
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        assert wav.getframerate() == sample_rate
        frames = wav.readframes(wav.getnframes())
    samples = np.frombuffer(frames, np.int16)
    assert samples.size == len(frames) // 2
    return samples


def song(spec: SongSpec, options: RenderOptions = LOW, layer: Any = "mix") -> Samples:
    return decode(render_wav(spec, options, layer=layer), options.sample_rate)


def stems(spec: SongSpec, options: RenderOptions = LOW) -> dict[str, Samples]:
    with zipfile.ZipFile(io.BytesIO(render_stems_zip(spec, options))) as archive:
        return {
            name: decode(archive.read(name), options.sample_rate) for name in archive.namelist()
        }


def frames(seconds: float, sample_rate: int = SR) -> int:
    return round(seconds * sample_rate)


@pytest.fixture(scope="module")
def source() -> SongSpec:
    return SongSpec.new(seed=7, duration_s=20.0, instrumental=False)


# --- length, size, determinism -------------------------------------------------------------


@pytest.mark.parametrize("sample_rate", [8000, 16000, 44100])
@pytest.mark.parametrize("duration_s", [0.001, 3.3331, 12.5])
def test_length_matches_duration(sample_rate: int, duration_s: float) -> None:
    spec = SongSpec.new(seed=1, duration_s=duration_s, instrumental=False)
    samples = song(spec, RenderOptions(sample_rate=sample_rate))
    assert samples.size == round(spec.duration_s * sample_rate) == frames(duration_s, sample_rate)


def test_duration_for_seed_is_deterministic_and_ms_rounded() -> None:
    values = [duration_for_seed(seed) for seed in range(200)]
    assert values == [duration_for_seed(seed) for seed in range(200)]
    assert all(120.0 <= v <= 240.0 and round(v, 3) == v for v in values)
    assert len(set(values)) > 190
    assert 5.0 <= duration_for_seed(3, low_s=5.0, high_s=6.0) <= 6.0
    with pytest.raises(ValueError):
        duration_for_seed(3, low_s=6.0, high_s=5.0)


@pytest.mark.parametrize("cap", [None, 0.0, 1.25, 100.0])
def test_wav_size_bytes_is_the_rendered_size(source: SongSpec, cap: float | None) -> None:
    options = RenderOptions(sample_rate=SR, max_render_s=cap)
    edited = source.extend(continue_at_s=5.5, seed=2, added_s=3.0)
    for spec in (source, edited):
        assert wav_size_bytes(spec, options) == len(render_wav(spec, options))


def test_max_render_s_caps_the_length(source: SongSpec) -> None:
    capped = song(source, RenderOptions(sample_rate=SR, max_render_s=2.5))
    assert capped.size == frames(2.5)
    assert np.array_equal(capped, song(source)[: capped.size])


def test_same_seed_same_bytes_different_seed_different_bytes() -> None:
    def media(seed: int) -> tuple[bytes, ...]:
        spec = SongSpec.new(seed=seed, duration_s=4.0, instrumental=False)
        video = render_video_mp4(seed, duration_s=4.0)
        return render_wav(spec, LOW), render_stems_zip(spec, LOW), render_cover_png(seed), video

    first, again, other = media(11), media(11), media(12)
    assert first == again
    assert all(a != b for a, b in zip(first, other, strict=True))


def test_the_mix_never_clips_and_is_not_silent() -> None:
    assert _synth.INSTRUMENTAL_PEAK + _synth.VOCALS_PEAK < 0.95  # bounds by construction
    for seed in range(6):
        samples = song(SongSpec.new(seed=seed, duration_s=30.0, instrumental=False))
        peak = int(np.abs(samples.astype(np.int32)).max())
        assert 3000 < peak < int(0.95 * 32767)


# --- actions -------------------------------------------------------------------------------


def test_extend_keeps_the_source_up_to_continue_at(source: SongSpec) -> None:
    extended = source.extend(continue_at_s=12.345, seed=3, added_s=7.5)
    original, new = song(source), song(extended)
    cut = frames(12.345)
    assert extended.duration_s == pytest.approx(12.345 + 7.5)
    assert new.size == frames(12.345 + 7.5)
    assert np.array_equal(new[:cut], original[:cut])
    assert np.mean(new[cut : frames(19.0)] != original[cut : frames(19.0)]) > 0.9


def test_extend_clamps_continue_at_to_the_song(source: SongSpec) -> None:
    past_end = source.extend(continue_at_s=99.0, seed=3, added_s=2.0)
    assert past_end.duration_s == pytest.approx(22.0)
    assert np.array_equal(song(past_end)[: frames(20.0)], song(source))
    from_start = source.extend(continue_at_s=-1.0, seed=3, added_s=2.0)
    assert from_start.duration_s == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("edit", "joins"),
    [
        (lambda spec: spec.extend(continue_at_s=10.0, seed=3, added_s=5.0), [(10.0, 1)]),
        (lambda spec: spec.replace_section(start_s=4.0, end_s=9.0, seed=3), [(4.0, 1), (9.0, -1)]),
    ],
)
def test_new_material_fades_from_the_kept_layers(
    source: SongSpec, edit: Any, joins: list[tuple[float, int]]
) -> None:
    """No click: next to a join, new material starts as the kept layers' own continuation."""
    edited, original = song(edit(source)).astype(np.int32), song(source)
    gap = np.abs(edited - original[: edited.size])
    fade, near = frames(CROSSFADE_S), frames(0.003)
    for join, direction in joins:
        edge = frames(join) if direction > 0 else frames(join) - near
        beyond = edge + direction * fade
        assert gap[edge : edge + near].mean() < 0.2 * gap[beyond : beyond + near].mean()


def test_replace_section_changes_only_the_section(source: SongSpec) -> None:
    replaced = source.replace_section(start_s=4.25, end_s=9.5, seed=5)
    original, new = song(source), song(replaced)
    lo, hi = frames(4.25), frames(9.5)
    assert replaced.duration_s == source.duration_s
    assert new.size == original.size
    assert np.array_equal(new[:lo], original[:lo])
    assert np.array_equal(new[hi:], original[hi:])
    assert np.mean(new[lo:hi] != original[lo:hi]) > 0.9


def test_replace_section_rejects_an_empty_section(source: SongSpec) -> None:
    with pytest.raises(ValueError):
        source.replace_section(start_s=5.0, end_s=5.0, seed=1)
    with pytest.raises(ValueError):
        source.replace_section(start_s=30.0, end_s=40.0, seed=1)


def test_swap_vocals_keeps_the_instrumental(source: SongSpec) -> None:
    swapped = source.extend(continue_at_s=8.0, seed=4, added_s=4.0)
    before, after = stems(swapped), stems(swapped.swap_vocals(seed=9))
    assert np.array_equal(after["instrumental.wav"], before["instrumental.wav"])
    assert np.mean(after["vocals.wav"] != before["vocals.wav"]) > 0.5
    assert np.array_equal(
        song(swapped.swap_vocals(seed=9), layer="instrumental"),
        song(swapped, layer="instrumental"),
    )


def test_swap_instrumentals_keeps_the_vocals(source: SongSpec) -> None:
    before, after = stems(source), stems(source.swap_instrumentals(seed=9))
    assert np.array_equal(after["vocals.wav"], before["vocals.wav"])
    assert np.mean(after["instrumental.wav"] != before["instrumental.wav"]) > 0.9


def test_swap_vocals_gives_an_instrumental_song_vocals() -> None:
    plain = SongSpec.new(seed=2, duration_s=8.0, instrumental=True)
    sung = plain.swap_vocals(seed=1)
    assert plain.instrumental
    assert not sung.instrumental
    assert np.any(stems(sung)["vocals.wav"] != 0)


def test_variation_and_cover_keep_the_structure(source: SongSpec) -> None:
    edited = source.replace_section(start_s=2.0, end_s=3.0, seed=1)
    for other in (edited.variation(seed=5), edited.cover(seed=5, instrumental=False)):
        assert [s.duration_s for s in other.segments] == [s.duration_s for s in edited.segments]
        assert [s.offset_s for s in other.segments] == [s.offset_s for s in edited.segments]
        assert np.mean(song(other) != song(edited)) > 0.9
    assert edited.cover(seed=5, instrumental=True).instrumental
    assert not stems(edited.cover(seed=5, instrumental=True))["vocals.wav"].any()


# --- stems ---------------------------------------------------------------------------------


def test_stems_add_up_to_the_mix(source: SongSpec) -> None:
    spec = source.replace_section(start_s=3.0, end_s=6.0, seed=2)
    parts = stems(spec)
    assert sorted(parts) == ["instrumental.wav", "vocals.wav"]
    total = parts["vocals.wav"].astype(np.int32) + parts["instrumental.wav"]
    assert np.abs(total - song(spec)).max() <= 2


def test_instrumental_song_has_silent_vocals_stem() -> None:
    spec = SongSpec.new(seed=3, duration_s=5.0, instrumental=True)
    parts = stems(spec)
    assert parts["vocals.wav"].size == frames(5.0)
    assert not parts["vocals.wav"].any()
    assert np.array_equal(parts["instrumental.wav"], song(spec))


# --- spec storage --------------------------------------------------------------------------


def test_json_round_trip(source: SongSpec) -> None:
    spec = (
        source.extend(continue_at_s=11.0, seed=1, added_s=6.0)
        .replace_section(start_s=9.0, end_s=13.0, seed=2)
        .swap_vocals(seed=3)
    )
    stored = json.loads(json.dumps(spec.to_json()))
    assert SongSpec.from_json(stored) == spec
    assert render_wav(SongSpec.from_json(stored), LOW) == render_wav(spec, LOW)


NEGATIVE = {"duration_s": -1.0, "instrumental_seed": 1, "vocals_seed": None}


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"version": 2, "segments": []},
        {"version": 1, "segments": []},
        {"version": 1, "segments": [{"duration_s": 1.0}]},
        {"version": 1, "segments": [NEGATIVE]},
        {"version": 1, "segments": [{**NEGATIVE, "duration_s": 1.0, "crossfades": [{"x": 1}]}]},
    ],
)
def test_from_json_rejects_what_is_not_a_spec(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SongSpec.from_json(data)


def test_segment_times_are_microseconds() -> None:
    assert Segment(1.23456789, 1, None).duration_s == 1.234568
    with pytest.raises(ValueError):
        Segment(0.0000001, 1, None)


# --- random edits --------------------------------------------------------------------------


@st.composite
def edits(draw: st.DrawFn, duration_ms: int) -> tuple[str, float, float]:
    """One extend (continue_at may pass the end) or replace_section, at millisecond times."""
    if draw(st.booleans()):
        continue_at = draw(st.integers(0, duration_ms + 1000))
        return "extend", continue_at / 1000, draw(st.integers(1, 3000)) / 1000
    start = draw(st.integers(0, duration_ms - 1))
    return "replace", start / 1000, draw(st.integers(start + 1, duration_ms)) / 1000


@settings(max_examples=25, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_random_edit_chains_keep_what_they_keep(data: st.DataObject, seed: int) -> None:
    length = data.draw(st.integers(1, 4000)) / 1000
    spec = SongSpec.new(seed=seed, duration_s=length, instrumental=data.draw(st.booleans()))
    before = song(spec)
    for step in range(data.draw(st.integers(1, 4))):
        previous = spec.duration_s
        kind, a, b = data.draw(edits(round(previous * 1000)))
        if kind == "extend":
            spec = spec.extend(continue_at_s=a, seed=seed + step, added_s=b)
            kept = [(0, frames(min(a, previous)))]
            assert spec.duration_s == pytest.approx(min(a, previous) + b)
        else:
            spec = spec.replace_section(start_s=a, end_s=b, seed=seed + step)
            kept = [(0, frames(a)), (frames(b), before.size)]
        after = song(spec)
        assert after.size == frames(spec.duration_s)
        for lo, hi in kept:
            assert np.array_equal(after[lo:hi], before[lo:hi])
        assert SongSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
        before = after


# --- pictures ------------------------------------------------------------------------------


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


@pytest.mark.parametrize("size", [1, 64, 256])
def test_cover_is_a_valid_png(size: int) -> None:
    chunks = png_chunks(render_cover_png(42, size=size))
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    assert struct.unpack(">IIBBBBB", chunks[0][1]) == (size, size, 8, 2, 0, 0, 0)
    rows = np.frombuffer(zlib.decompress(chunks[1][1]), np.uint8).reshape(size, 1 + 3 * size)
    assert not rows[:, 0].any()  # filter type 0 on every row
    assert rows[:, 1:].std() > 0 or size == 1


def mp4_boxes(data: bytes, pos: int = 0, end: int | None = None) -> dict[str, bytes]:
    """Boxes by path ("moov/trak/tkhd"), descending into the containers this file uses."""
    containers = {b"moov", b"trak", b"mdia", b"minf", b"dinf", b"stbl"}
    found: dict[str, bytes] = {}
    end = len(data) if end is None else end
    while pos < end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        assert 8 <= size <= end - pos
        found[kind.decode()] = data[pos + 8 : pos + size]
        if kind in containers:
            inner = mp4_boxes(data, pos + 8, pos + size)
            found.update({f"{kind.decode()}/{k}": v for k, v in inner.items()})
        pos += size
    return found


class BitReader:
    def __init__(self, data: bytes) -> None:
        self.bits, self.pos = "".join(f"{byte:08b}" for byte in data), 0

    def u(self, width: int) -> int:
        self.pos += width
        return int(self.bits[self.pos - width : self.pos] or "0", 2)

    def ue(self) -> int:
        zeros = self.bits.index("1", self.pos) - self.pos
        self.pos += zeros
        return self.u(zeros + 1) - 1


def test_video_is_an_mp4_with_one_h264_intra_frame() -> None:
    data = render_video_mp4(5, duration_s=181.3)
    boxes = mp4_boxes(data)
    assert data[4:8] == b"ftyp"
    assert boxes["ftyp"][:4] == b"isom"
    assert struct.unpack(">I", boxes["moov/mvhd"][16:20])[0] == 181300  # ms
    assert boxes["moov/trak/mdia/hdlr"][8:12] == b"vide"
    stbl = "moov/trak/mdia/minf/stbl"
    assert struct.unpack(">III", boxes[f"{stbl}/stts"][4:16]) == (1, 1, 181300)
    size = struct.unpack(">I", boxes[f"{stbl}/stsz"][12:16])[0]
    offset = struct.unpack(">I", boxes[f"{stbl}/stco"][8:12])[0]
    sample = data[offset : offset + size]
    assert sample == boxes["mdat"]
    assert struct.unpack(">I", sample[:4])[0] == size - 4
    assert sample[4] == 0x65  # IDR slice NAL
    assert b"avcC\x01\x42\xc0\x1e" in boxes[f"{stbl}/stsd"]  # Constrained Baseline, level 3
    assert b"\x67\x42\xc0\x1e" in boxes[f"{stbl}/stsd"]  # the SPS inside it
    rbsp = sample[5:].replace(b"\x00\x00\x03", b"\x00\x00")
    bits = BitReader(rbsp)
    # first_mb, slice_type I, pps id, frame_num, idr_pic_id, poc lsb, ref marking, qp delta
    header = [bits.ue(), bits.ue(), bits.ue(), bits.u(4), bits.ue(), bits.u(4), bits.u(2)]
    assert [*header, bits.ue()] == [0, 7, 0, 0, 0, 0, 0, 0]
    for _ in range(64):  # 128x128 = 8x8 macroblocks, each I_PCM with 384 raw samples
        assert bits.ue() == 25
        bits.pos += -bits.pos % 8
        luma = rbsp[bits.pos // 8 : bits.pos // 8 + 256]
        assert 16 <= min(luma) <= max(luma) <= 235
        bits.pos += 384 * 8
    assert bits.bits[bits.pos :] == "10000000"  # rbsp_trailing_bits
