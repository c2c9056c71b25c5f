"""Cover art and the still-image video, written byte by byte (no imaging libraries).

* PNG: 8-bit RGB, one zlib-compressed IDAT, filter 0 on every row.
* MP4 (ISO BMFF): ``ftyp``, ``moov`` (one ``vide`` track whose ``avc1`` sample entry carries
  the SPS/PPS in ``avcC``), then ``mdat`` holding one sample: an IDR slice (4-byte length
  prefix) made only of I_PCM macroblocks, i.e. raw 4:2:0 samples inside a conforming
  H.264 Constrained Baseline bitstream. No motion, no audio; the one sample lasts the
  whole movie.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from numpy.typing import NDArray

Pixels = NDArray[np.uint8]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PROFILE_BASELINE, _CONSTRAINED, _LEVEL_3 = 66, 0xC0, 30
_I_PCM = 25  # mb_type of an I_PCM macroblock in an I slice
_TIMESCALE = 1000  # movie and media time units per second (milliseconds)
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def cover_pixels(seed: int, size: int) -> Pixels:
    """A ``size`` x ``size`` x 3 image: a two-colour gradient under glowing rings."""
    if size < 1:
        raise ValueError(f"image size {size} < 1")
    rng = np.random.default_rng([seed % 2**64, 3])
    top, bottom, accent = rng.uniform(0.0, 255.0, (3, 3))
    cx, cy = rng.uniform(0.25, 0.75, 2)
    axis = (np.arange(size) + 0.5) / size
    y, x = axis[:, None], axis[None, :]
    radius = np.hypot(x - cx, y - cy)
    rings = 0.5 + 0.5 * np.cos(radius * rng.uniform(60.0, 160.0))
    glow = (np.exp(-3.0 * radius) * rings)[..., None]
    base = top * (1.0 - y)[..., None] + bottom * y[..., None]
    image: Pixels = np.rint(base * (1.0 - glow) + accent * glow).astype(np.uint8)
    return image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(pixels: Pixels) -> bytes:
    """``pixels`` (height x width x 3, uint8) as a PNG file."""
    height, width, _ = pixels.shape
    rows = np.zeros((height, 1 + 3 * width), np.uint8)  # column 0: filter type 0 (None)
    rows[:, 1:] = pixels.reshape(height, 3 * width)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(rows.tobytes(), 9)
    chunks = (_png_chunk(b"IHDR", header), _png_chunk(b"IDAT", idat), _png_chunk(b"IEND", b""))
    return _PNG_SIGNATURE + b"".join(chunks)


class _Bits:
    """An MSB-first bit writer with the Exp-Golomb codes of H.264 (§9.1)."""

    def __init__(self) -> None:
        self.out = bytearray()
        self._acc = self._count = 0

    def u(self, value: int, width: int) -> None:
        self._acc, self._count = (self._acc << width) | value, self._count + width
        while self._count >= 8:
            self._count -= 8
            self.out.append((self._acc >> self._count) & 0xFF)
        self._acc &= (1 << self._count) - 1

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(code, 2 * code.bit_length() - 1)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align(self) -> None:
        self.u(0, -self._count % 8)

    def trailing(self) -> bytes:
        """rbsp_trailing_bits: a stop bit then zeros; returns the finished RBSP."""
        self.u(1, 1)
        self.align()
        return bytes(self.out)


def _nal(header: int, rbsp: bytes) -> bytes:
    """A NAL unit: header byte, then the RBSP with emulation prevention bytes inserted."""
    out, zeros = bytearray([header]), 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _sps(width_mbs: int, height_mbs: int) -> bytes:
    bits = _Bits()
    for value, width in ((_PROFILE_BASELINE, 8), (_CONSTRAINED, 8), (_LEVEL_3, 8)):
        bits.u(value, width)
    for value in (0, 0, 0, 0, 1):  # sps id, log2 frame_num-4, poc type, log2 poc lsb-4, refs
        bits.ue(value)
    bits.u(0, 1)  # gaps_in_frame_num_value_allowed_flag
    bits.ue(width_mbs - 1)
    bits.ue(height_mbs - 1)
    bits.u(0b1100, 4)  # frame_mbs_only, direct_8x8_inference, no cropping, no VUI
    return _nal(0x67, bits.trailing())


def _pps() -> bytes:
    bits = _Bits()
    bits.ue(0)  # pps id
    bits.ue(0)  # sps id
    bits.u(0, 2)  # CAVLC, no bottom-field POC
    for value in (0, 0, 0):  # slice groups-1, l0 refs-1, l1 refs-1
        bits.ue(value)
    bits.u(0, 3)  # no weighted prediction
    for value in (0, 0, 0):  # init qp-26, init qs-26, chroma qp offset
        bits.se(value)
    bits.u(0, 3)  # no deblocking control, no constrained intra, no redundant pictures
    return _nal(0x68, bits.trailing())


def _ycbcr(pixels: Pixels) -> tuple[Pixels, Pixels, Pixels]:
    """BT.601 studio-range planes, chroma averaged over 2x2 (4:2:0)."""
    rgb = pixels.astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b
    cb = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b
    cr = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b
    h, w = y.shape

    def quarter(plane: NDArray[np.float64]) -> Pixels:
        averaged: Pixels = np.rint(plane.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))).astype(
            np.uint8
        )
        return averaged

    return np.rint(y).astype(np.uint8), quarter(cb), quarter(cr)


def _idr_slice(pixels: Pixels) -> bytes:
    """An IDR picture as one I slice of I_PCM macroblocks, in raster order."""
    y, cb, cr = _ycbcr(pixels)
    bits = _Bits()
    bits.ue(0)  # first_mb_in_slice
    bits.ue(7)  # slice_type: I (all slices)
    bits.ue(0)  # pps id
    bits.u(0, 4)  # frame_num
    bits.ue(0)  # idr_pic_id
    bits.u(0, 4)  # pic_order_cnt_lsb
    bits.u(0, 2)  # dec_ref_pic_marking: no_output_of_prior_pics, long_term_reference
    bits.se(0)  # slice_qp_delta
    for row in range(y.shape[0] // 16):
        for col in range(y.shape[1] // 16):
            bits.ue(_I_PCM)
            bits.align()
            bits.out += y[16 * row : 16 * row + 16, 16 * col : 16 * col + 16].tobytes()
            for plane in (cb, cr):
                bits.out += plane[8 * row : 8 * row + 8, 8 * col : 8 * col + 8].tobytes()
    return _nal(0x65, bits.trailing())


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _full(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def _sample_entry(width: int, height: int, sps: bytes, pps: bytes) -> bytes:
    avcc = struct.pack(">5B", 1, _PROFILE_BASELINE, _CONSTRAINED, _LEVEL_3, 0xFF)
    avcc += struct.pack(">BH", 0xE1, len(sps)) + sps + struct.pack(">BH", 1, len(pps)) + pps
    dpi_72 = 0x480000  # 72.0 in 16.16 fixed point
    visual = struct.pack(">6xH16xHH3IH32sHh", 1, width, height, dpi_72, dpi_72, 0, 1, b"", 24, -1)
    return _box(b"avc1", visual, _box(b"avcC", avcc))


def _stbl(entry: bytes, sample_size: int, duration: int, chunk_offset: int) -> bytes:
    return _box(
        b"stbl",
        _full(b"stsd", 0, 0, struct.pack(">I", 1), entry),
        _full(b"stts", 0, 0, struct.pack(">III", 1, 1, duration)),
        _full(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, 1, 1)),
        _full(b"stsz", 0, 0, struct.pack(">III", 0, 1, sample_size)),
        _full(b"stco", 0, 0, struct.pack(">II", 1, chunk_offset)),
    )


def _moov(width: int, height: int, duration: int, stbl: bytes) -> bytes:
    mvhd = struct.pack(">IIIIIH10x", 0, 0, _TIMESCALE, duration, 0x10000, 0x100)
    tkhd = struct.pack(">IIIII8xhhhxx", 0, 0, 1, 0, duration, 0, 0, 0)
    mdhd = struct.pack(">IIIIHH", 0, 0, _TIMESCALE, duration, 0x55C4, 0)  # language "und"
    hdlr = struct.pack(">I4s12x", 0, b"vide") + b"VideoHandler\x00"
    dinf = _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1)))
    minf = _box(b"minf", _full(b"vmhd", 0, 1, bytes(8)), dinf, stbl)
    mdia = _box(b"mdia", _full(b"mdhd", 0, 0, mdhd), _full(b"hdlr", 0, 0, hdlr), minf)
    size = struct.pack(">II", width << 16, height << 16)
    trak = _box(b"trak", _full(b"tkhd", 0, 3, tkhd, _MATRIX, size), mdia)
    return _box(b"moov", _full(b"mvhd", 0, 0, mvhd, _MATRIX, bytes(24), struct.pack(">I", 2)), trak)


def still_mp4_bytes(pixels: Pixels, duration_ms: int) -> bytes:
    """An MP4 showing ``pixels`` (sides multiples of 16) for ``duration_ms`` milliseconds."""
    height, width, _ = pixels.shape
    if width % 16 or height % 16 or duration_ms < 1:
        raise ValueError(f"need 16-multiple sides and a duration >= 1 ms: {pixels.shape}")
    sps, pps = _sps(width // 16, height // 16), _pps()
    sample = _idr_slice(pixels)
    sample = struct.pack(">I", len(sample)) + sample
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isomiso2avc1mp41")
    entry = _sample_entry(width, height, sps, pps)
    moov_size = len(_moov(width, height, duration_ms, _stbl(entry, len(sample), duration_ms, 0)))
    stbl = _stbl(entry, len(sample), duration_ms, len(ftyp) + moov_size + 8)
    moov = _moov(width, height, duration_ms, stbl)
    return ftyp + moov + _box(b"mdat", sample)
