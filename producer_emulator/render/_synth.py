"""Seeded synthesis of the emulator's two audio layers (instrumental and vocals).

A layer is a pure function of ``(seed, sample_rate, index)`` where ``index`` is an integer
sample position in the layer's own timeline (any integer, negative included). That is what
lets a song spec keep a range of its source sample-exact: the same seed read at the same
indices gives the same floats, whichever segment asks.

Both layers are built from short precomputed material, so a render costs a few copies per
song plus synthesis of that material once per seed:

* instrumental: a 4-bar loop (pad triads of a seeded progression, a plucked bass on every
  beat, a kick on beats 1 and 3, a noise hat on the off-beats), tiled along the timeline.
* vocals: four seeded 2-bar phrases (a pentatonic random walk sung by a vibrato sine with two
  harmonics, each note enveloped, then a rest); block ``b`` of the timeline plays the phrase
  picked by a hash of ``(seed, b)``, or (some odd blocks) stays silent as a break.

Everything is in A major, so any vocal layer sits over any instrumental layer. Each layer's
peak is bounded by construction (``INSTRUMENTAL_PEAK`` + ``VOCALS_PEAK`` < 1), which is
what lets the mix be written at one fixed scale, without normalising, and never clip.
"""

from __future__ import annotations

import hashlib

import numpy as np
from numpy.typing import NDArray

Audio = NDArray[np.float32]
Floats = NDArray[np.float64]

KEY_ROOT_MIDI = 57  # A3; the tonic of every layer
PAD_GAIN, BASS_GAIN, KICK_GAIN, HAT_GAIN = 0.18, 0.16, 0.11, 0.05
INSTRUMENTAL_PEAK = PAD_GAIN + BASS_GAIN + KICK_GAIN + HAT_GAIN
VOCALS_PEAK = 0.42
PHRASES_PER_VOICE = 4
_TWO_PI = 2.0 * np.pi
_UINT64 = 2**64

# Triads as semitones from the tonic, voiced near it; the first note is the chord's root.
_I, _II, _III = (0, 4, 7), (2, 5, 9), (4, 7, 11)
_IV, _V, _VI = (-7, -3, 0), (-5, -1, 2), (-3, 0, 4)
_PROGRESSIONS = (
    (_I, _V, _VI, _IV),
    (_VI, _IV, _I, _V),
    (_I, _VI, _IV, _V),
    (_I, _IV, _V, _IV),
    (_II, _V, _I, _VI),
    (_I, _III, _IV, _V),
)
_PENTATONIC = (0, 2, 4, 7, 9)
_NOTE_EIGHTHS = (1, 1, 2, 2, 2, 3, 4)


def derive_seed(*parts: object) -> int:
    """A 32-bit seed derived from ``parts`` (ints and strings), stable across runs."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0xFFFFFFFF


def _hash64(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "big")


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed % _UINT64, stream])


def _hz(midi: float | Floats) -> Floats:
    return np.asarray(440.0 * 2.0 ** ((np.asarray(midi, np.float64) - 69.0) / 12.0))


def _sin(cycles: Floats) -> Audio:
    """sin(2 pi cycles), in float32 after exact reduction (float32 sin is ~5x faster here)."""
    return np.sin((_TWO_PI * (cycles - np.floor(cycles))).astype(np.float32))


def _ramp(t: Floats, length: float | Floats, attack: float, release: float) -> Floats:
    """Linear attack/release envelope over ``t`` in [0, length): 0 at both edges, else 1."""
    return np.clip(np.minimum(t / attack, (length - t) / release), 0.0, 1.0)


def _beat(root: int, beat: int, sr: int, noise: Floats, kick: bool) -> Floats:
    """One beat of bass pluck, optional kick and an off-beat hat."""
    t = np.arange(beat) / sr
    length = beat / sr
    bass_f = _hz(KEY_ROOT_MIDI + root - 12)
    bass = np.sin(_TWO_PI * bass_f * t) + 0.3 * np.sin(2 * _TWO_PI * bass_f * t)
    out = BASS_GAIN / 1.3 * bass * np.exp(-5.0 * t) * _ramp(t, length, 0.005, 0.01)
    if kick:
        sweep = 45.0 * t + 75.0 * (1.0 - np.exp(-30.0 * t)) / 30.0  # 120 Hz falling to 45 Hz
        envelope = np.exp(-18.0 * t) * _ramp(t, length, 0.002, 0.01)
        out += KICK_GAIN * np.sin(_TWO_PI * sweep) * envelope
    half = beat // 2
    th = t[: beat - half]
    hat = noise[: beat - half] * np.exp(-60.0 * th) * _ramp(th, th.size / sr, 0.001, 0.005)
    out[half:] += HAT_GAIN * hat
    return out


def _bar(chord: tuple[int, int, int], beat: int, sr: int, noise: Floats) -> Floats:
    """One bar: a pad triad under four beats (kick on beats 1 and 3)."""
    t = np.arange(4 * beat) / sr
    freqs = _hz(np.array(chord, np.float64) + KEY_ROOT_MIDI)
    pad = _sin(np.outer(freqs, t)).sum(axis=0) / 3.0
    out: Floats = PAD_GAIN * pad * _ramp(t, 4 * beat / sr, 0.03, 0.08)
    kicked = _beat(chord[0], beat, sr, noise, kick=True)
    plain = _beat(chord[0], beat, sr, noise, kick=False)
    out += np.concatenate([kicked, plain, kicked, plain])
    return out


def instrumental_loop(seed: int, sample_rate: int) -> Audio:
    """One period (4 bars) of the instrumental layer of ``seed``."""
    rng = _rng(seed, 1)
    beat = round(sample_rate * 60.0 / rng.uniform(84.0, 132.0))
    progression = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
    noise = rng.uniform(-1.0, 1.0, beat)
    bars = [_bar(chord, beat, sample_rate, noise) for chord in progression]
    return np.concatenate(bars).astype(np.float32)


def _melody(rng: np.random.Generator) -> tuple[list[int], list[float]]:
    """Note lengths (in eighths, 10 to 13 of the phrase's 16 in all) and MIDI pitches."""
    lengths: list[int] = []
    while sum(lengths) < 10:
        lengths.append(int(rng.choice(_NOTE_EIGHTHS)))  # ends at 10..13 of 16
    step = 5 + int(rng.integers(0, 5))  # rung of a pentatonic ladder A3 (0)..B5 (11)
    pitches: list[float] = []
    for _ in lengths:
        step = int(np.clip(step + rng.integers(-2, 3), 0, 11))
        octave, degree = divmod(step, len(_PENTATONIC))
        pitches.append(float(KEY_ROOT_MIDI + 12 * octave + _PENTATONIC[degree]))
    return lengths, pitches


def _phrase(rng: np.random.Generator, eighth: int, sr: int) -> Audio:
    """A 16-eighth phrase: enveloped vibrato notes, then silence."""
    lengths, pitches = _melody(rng)
    counts = np.array(lengths) * eighth
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    t = (np.arange(counts.sum()) - np.repeat(starts, counts)) / sr
    depth = 0.35 * np.minimum(1.0, t / 0.25)  # semitones; vibrato grows in after the onset
    freq = np.repeat(_hz(np.array(pitches)), counts) * 2.0 ** (depth * _sin(5.5 * t) / 12)
    cycles = np.cumsum(freq) / sr
    voice = (_sin(cycles) + 0.4 * _sin(2 * cycles) + 0.15 * _sin(3 * cycles)) / 1.55
    note_length = np.repeat(counts, counts) / sr
    sung = VOCALS_PEAK * voice * _ramp(t, note_length, 0.03, 0.06)
    out = np.zeros(16 * eighth, np.float32)
    out[: sung.size] = sung
    return out


def vocal_phrases(seed: int, sample_rate: int) -> tuple[Audio, ...]:
    """The phrases the vocal layer of ``seed`` is made of (all the same length)."""
    rng = _rng(seed, 2)
    eighth = round(sample_rate * 30.0 / rng.uniform(84.0, 132.0))
    return tuple(_phrase(rng, eighth, sample_rate) for _ in range(PHRASES_PER_VOICE))


def phrase_at(seed: int, block: int) -> int | None:
    """Which phrase block ``block`` of the vocal timeline sings; None for a silent break.

    Only odd blocks may be breaks (one in three), so the singing never stops for long.
    """
    pick = _hash64("phrase", seed % _UINT64, block)
    if block % 2 and pick % 3 == 0:
        return None
    return (pick >> 8) % PHRASES_PER_VOICE


class LayerBank:
    """Renders layers at one sample rate, synthesising each seed's material once per bank.

    A bank lives for one render, so its memory is bounded by the seeds one song uses.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._loops: dict[int, Audio] = {}
        self._phrases: dict[int, tuple[Audio, ...]] = {}

    def instrumental(self, seed: int, start: int, out: Audio) -> None:
        """Write the instrumental layer of ``seed`` at indices ``start ...`` into ``out``."""
        if seed not in self._loops:
            self._loops[seed] = instrumental_loop(seed, self.sample_rate)
        loop = self._loops[seed]
        pos, done = start % loop.size, 0
        while done < out.size:
            take = min(loop.size - pos, out.size - done)
            out[done : done + take] = loop[pos : pos + take]
            done, pos = done + take, 0

    def vocals(self, seed: int | None, start: int, out: Audio) -> None:
        """Write the vocal layer of ``seed`` (silence for None) at ``start ...`` into ``out``."""
        out[:] = 0.0
        if seed is None or out.size == 0:
            return
        if seed not in self._phrases:
            self._phrases[seed] = vocal_phrases(seed, self.sample_rate)
        phrases = self._phrases[seed]
        size = phrases[0].size
        stop = start + out.size
        for block in range(start // size, (stop - 1) // size + 1):
            pick = phrase_at(seed, block)
            if pick is None:
                continue
            lo, hi = max(start, block * size), min(stop, (block + 1) * size)
            out[lo - start : hi - start] = phrases[pick][lo - block * size : hi - block * size]
