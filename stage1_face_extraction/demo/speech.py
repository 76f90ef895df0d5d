"""Speech-like audio for the demo corpus.

Not real speech, but with the statistics that matter to a voice-activity detector and to an
active-speaker model: a voiced harmonic source (f0 100-250 Hz with vibrato, jitter and phrase
declination) shaped by three vowel formants that change every syllable, a short noise burst at each
syllable onset (a consonant), an amplitude envelope at 3-6 syllables per second grouped into phrases
separated by 150-500 ms pauses, and a quiet noise floor.

The amplitude envelope that shapes the voice is returned too: it drives the speaker's mouth, so
audio and lips agree by construction. Everything is deterministic given the numpy Generator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

logger = logging.getLogger(__name__)

# (F1, F2, F3) in Hz of a few vowels; one is drawn per syllable.
VOWEL_FORMANTS: tuple[tuple[float, float, float], ...] = (
    (730.0, 1090.0, 2440.0),  # a
    (530.0, 1840.0, 2480.0),  # e
    (270.0, 2290.0, 3010.0),  # i
    (570.0, 840.0, 2410.0),  # o
    (300.0, 870.0, 2240.0),  # u
    (660.0, 1720.0, 2410.0),  # ae
)
FORMANT_BANDWIDTHS = (90.0, 120.0, 170.0)  # Hz
MAX_HARMONIC_HZ = 4500.0


@dataclass
class SpeechConfig:
    """Knobs of the synthesiser (defaults give MELD-like conversational pacing)."""

    syllable_rate: tuple[float, float] = (3.0, 6.0)  # syllables per second, drawn per phrase
    syllables_per_phrase: tuple[int, int] = (2, 7)  # inclusive
    pause_s: tuple[float, float] = (0.15, 0.5)  # silence between phrases
    lead_in_s: tuple[float, float] = (0.08, 0.35)  # silence before the first phrase
    tail_s: tuple[float, float] = (0.10, 0.35)  # minimum silence after the last phrase
    vibrato_hz: float = 5.5
    vibrato_depth: float = 0.02  # relative f0 deviation
    jitter: float = 0.012  # relative f0 random-walk deviation
    noise_floor: float = 0.002  # std of the background noise (full scale 1.0)
    peak: float = 0.5  # peak amplitude of the normalised voice
    onset_burst: float = 0.12  # amplitude of the consonant noise burst at syllable onsets


@dataclass
class Speech:
    """One synthesised utterance."""

    audio: np.ndarray  # (N,) float32 waveform in [-1, 1]
    envelope: np.ndarray  # (N,) float32 voice amplitude envelope in [0, 1] (0 = silence)
    segments: list[tuple[float, float]] = field(default_factory=list)  # voiced phrases (start_s, end_s)
    sample_rate: int = 44100

    @property
    def duration_s(self) -> float:
        return self.audio.shape[0] / self.sample_rate


def plan_phrases(rng: np.random.Generator, duration_s: float, cfg: SpeechConfig) -> list[list[tuple[float, float]]]:
    """Phrases of syllables, each syllable a (start_s, end_s) pair; all inside ``duration_s``.

    Always at least one phrase; consecutive phrases are separated by a pause drawn from
    ``cfg.pause_s``.
    """
    t = float(rng.uniform(*cfg.lead_in_s))
    end_limit = duration_s - float(rng.uniform(*cfg.tail_s))
    phrases: list[list[tuple[float, float]]] = []
    while t < end_limit:
        rate = float(rng.uniform(*cfg.syllable_rate))
        n_syl = int(rng.integers(cfg.syllables_per_phrase[0], cfg.syllables_per_phrase[1] + 1))
        phrase: list[tuple[float, float]] = []
        for _ in range(n_syl):
            d = (1.0 / rate) * float(rng.uniform(0.8, 1.2))
            if t + d > end_limit:
                break
            phrase.append((t, t + d))
            t += d
        if not phrase:
            break
        phrases.append(phrase)
        t += float(rng.uniform(*cfg.pause_s))
    if not phrases:  # very short clip: one syllable in the middle
        mid = duration_s / 2.0
        phrases.append([(max(0.0, mid - 0.12), min(duration_s, mid + 0.12))])
    return phrases


def _syllable_shape(n: int) -> np.ndarray:
    """(n,) float32 amplitude of one syllable: quick rise, sustained vowel, fall; 0 at both ends."""
    x = (np.arange(n, dtype=np.float32) + 0.5) / max(n, 1)
    return (np.sin(np.pi * x) ** 0.6).astype(np.float32)


def _moving_average(x: np.ndarray, k: int) -> np.ndarray:
    """(C, N) centred moving average over ``k`` samples along the last axis (edges padded)."""
    padded = np.pad(x.astype(np.float64), ((0, 0), (k // 2, k - 1 - k // 2)), mode="edge")
    csum = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(padded, axis=1)], axis=1)
    return ((csum[:, k:] - csum[:, :-k]) / k).astype(np.float32)


def synthesize(
    rng: np.random.Generator,
    duration_s: float,
    sample_rate: int,
    pitch_hz: float,
    cfg: SpeechConfig | None = None,
) -> Speech:
    """Synthesise ``duration_s`` seconds of speech-like audio at mean pitch ``pitch_hz``."""
    cfg = cfg or SpeechConfig()
    n = int(round(duration_s * sample_rate))
    t = np.arange(n, dtype=np.float64) / sample_rate  # (N,)
    phrases = plan_phrases(rng, duration_s, cfg)

    envelope = np.zeros(n, np.float32)
    declination = np.ones(n, np.float64)
    formants = np.zeros((3, n), np.float32)  # per-sample F1..F3, filled per syllable then smoothed
    burst_env = np.zeros(n, np.float32)
    vowel_cur = VOWEL_FORMANTS[int(rng.integers(len(VOWEL_FORMANTS)))]
    formants[:] = np.asarray(vowel_cur, np.float32)[:, None]
    segments: list[tuple[float, float]] = []
    for phrase in phrases:
        p0 = int(round(phrase[0][0] * sample_rate))
        p1 = min(n, int(round(phrase[-1][1] * sample_rate)))
        segments.append((p0 / sample_rate, p1 / sample_rate))
        declination[p0:p1] = np.linspace(1.08, 0.92, p1 - p0)
        for s0, s1 in phrase:
            i0, i1 = int(round(s0 * sample_rate)), min(n, int(round(s1 * sample_rate)))
            if i1 <= i0:
                continue
            amp = float(rng.uniform(0.6, 1.0))
            envelope[i0:i1] = amp * _syllable_shape(i1 - i0)
            vowel = VOWEL_FORMANTS[int(rng.integers(len(VOWEL_FORMANTS)))]
            formants[:, i0:] = np.asarray(vowel, np.float32)[:, None]
            nb = min(i1 - i0, int(0.025 * sample_rate))
            burst_env[i0 : i0 + nb] = np.linspace(1.0, 0.0, nb, dtype=np.float32) * float(rng.uniform(0.3, 1.0))
    # smooth formant transitions over ~40 ms
    formants = _moving_average(formants, max(1, int(0.04 * sample_rate)))

    # f0 contour: mean pitch * vibrato * smooth jitter * phrase declination
    vib_phase = float(rng.uniform(0, 2 * np.pi))
    vibrato = 1.0 + cfg.vibrato_depth * np.sin(2 * np.pi * cfg.vibrato_hz * t + vib_phase)
    n_knots = max(2, int(duration_s * 20) + 2)
    knots = rng.normal(0.0, cfg.jitter, n_knots)
    jitter = 1.0 + np.interp(t, np.linspace(0.0, duration_s, n_knots), knots)
    f0 = pitch_hz * vibrato * jitter * declination  # (N,)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate  # (N,)

    # additive synthesis: harmonic k gets a 1/k^0.7 source tilt times the formant resonance gain.
    # Gains vary slowly: they are evaluated every ``step`` samples and linearly interpolated.
    step = 64
    n_blocks = -(-n // step)
    coarse = np.minimum(np.arange(n_blocks + 1) * step, n - 1)  # (B+1,)
    f0_c = f0[coarse][None, :]  # (1, B+1)
    fm_c = formants[:, coarse].astype(np.float64)  # (3, B+1)
    n_harm = int(MAX_HARMONIC_HZ // (pitch_hz * 0.85))
    harm = np.arange(1, n_harm + 1, dtype=np.float64)[:, None]  # (K, 1)
    freq = harm * f0_c  # (K, B+1)
    gain = np.zeros_like(freq)
    for j, bw in enumerate(FORMANT_BANDWIDTHS):
        gain += (1.0 / (1.0 + ((freq - fm_c[j][None, :]) / bw) ** 2)) / (j + 1)
    gain = (gain + 0.02) / harm**0.7
    gain[freq > MAX_HARMONIC_HZ] = 0.0
    frac = (np.arange(step, dtype=np.float64) / step)[None, None, :]  # (1, 1, step)
    gain_full = (gain[:, :-1, None] * (1.0 - frac) + gain[:, 1:, None] * frac).reshape(n_harm, -1)[:, :n]
    z = np.exp(1j * phase)  # (N,) unit phasor of the fundamental
    zh = np.ones(n, np.complex128)
    voice = np.zeros(n, np.float64)
    for h in range(n_harm):
        zh *= z  # phasor of harmonic h + 1
        voice += gain_full[h] * zh.imag
    voice *= envelope
    peak = float(np.max(np.abs(voice))) or 1.0
    voice *= cfg.peak / peak

    # consonant bursts: high-passed noise at syllable onsets
    burst = np.diff(rng.normal(0.0, 1.0, n + 1)) * 0.5 * burst_env * cfg.onset_burst
    floor = rng.normal(0.0, cfg.noise_floor, n)
    audio = np.clip(voice + burst + floor, -1.0, 1.0).astype(np.float32)
    logger.debug("speech: %.2f s, %d phrases, f0 %.0f Hz", duration_s, len(phrases), pitch_hz)
    return Speech(audio=audio, envelope=envelope, segments=segments, sample_rate=sample_rate)


def frame_envelope(envelope: np.ndarray, sample_rate: int, n_frames: int, fps: Fraction) -> np.ndarray:
    """(n_frames,) float32 mean envelope over each video frame's interval [i/fps, (i+1)/fps)."""
    out = np.zeros(n_frames, np.float32)
    for i in range(n_frames):
        a = int(round(i / fps * sample_rate))
        b = int(round((i + 1) / fps * sample_rate))
        seg = envelope[a:b]
        out[i] = float(seg.mean()) if seg.size else 0.0
    return out


def mouth_opening(frame_env: np.ndarray) -> np.ndarray:
    """Map a per-frame envelope to a mouth opening in [0, 1] (a soft knee so quiet syllables show)."""
    peak = float(frame_env.max()) if frame_env.size else 0.0
    if peak <= 0.0:
        return np.zeros_like(frame_env)
    return np.clip(frame_env / peak, 0.0, 1.0) ** 0.75
