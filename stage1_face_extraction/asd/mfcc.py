"""MFCC exactly as the learned active-speaker models were trained on (numpy, no extra package).

TalkNet and Light-ASD compute their audio input with ``python_speech_features.mfcc(audio, 16000,
numcep=13, winlen=0.025, winstep=0.010)`` on 16-bit integer samples read from a 16 kHz WAV. That
function's defaults make the features:

1. pre-emphasis ``y[0] = x[0]``, ``y[n] = x[n] - 0.97 x[n-1]``;
2. frames of 400 samples (25 ms) every 160 samples (10 ms -> 100 frames/s), the last one
   zero-padded; ``1 + ceil((n - 400) / 160)`` frames (one frame when n <= 400); NO window
   (rectangular);
3. power spectrum ``|rfft(frame, 512)|^2 / 512`` (257 bins) and the frame energy = its sum;
4. 26 triangular mel filters between 0 Hz and 8 kHz (mel = 2595 log10(1 + f / 700)), filter edges
   at FFT bins ``floor(513 * hz(mel_k) / 16000)`` for 28 equally spaced mel points;
5. natural log (exact zeros replaced by float64 eps first), DCT-II with orthonormal scaling, the
   first 13 coefficients, cepstral lifter ``1 + 11 sin(pi n / 22)``;
6. coefficient 0 replaced by the log frame energy.

The scale of the input matters (log energies): the models saw int16 values, so
:func:`mfcc_13` multiplies float audio in [-1, 1] by 32768 (``int16_scale``).
Row ``j`` of the result describes the audio from ``j * 0.01`` s to ``j * 0.01 + 0.025`` s;
4 rows per 25 fps video frame.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.fft import dct

SAMPLE_RATE = 16000
ROWS_PER_SECOND = 100  # winstep 10 ms
ROWS_PER_VIDEO_FRAME = 4  # at 25 fps


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=4)
def mel_filterbank(n_filters: int = 26, n_fft: int = 512, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Triangular filters (n_filters, n_fft // 2 + 1) on FFT-bin edges (see module docstring)."""
    mels = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2.0), n_filters + 2)
    edges = np.floor((n_fft + 1) * _mel_to_hz(mels) / sr)
    bins = np.arange(n_fft // 2 + 1, dtype=np.float64)[None, :]  # (1, F)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (n_filters, 1) each
    rise = np.where((bins >= lo) & (bins < mid), (bins - lo) / np.maximum(mid - lo, 1e-12), 0.0)
    fall = np.where((bins >= mid) & (bins < hi), (hi - bins) / np.maximum(hi - mid, 1e-12), 0.0)
    fb = rise + fall
    fb.setflags(write=False)
    return fb


def n_mfcc_rows(n_samples: int, frame_len: int = 400, hop: int = 160) -> int:
    """Number of MFCC rows for ``n_samples`` (python_speech_features' framing)."""
    if n_samples <= frame_len:
        return 1
    return 1 + int(np.ceil((n_samples - frame_len) / hop))


def mfcc_13(
    audio: np.ndarray,
    sr: int = SAMPLE_RATE,
    int16_scale: bool = True,
    n_ceps: int = 13,
    n_filters: int = 26,
    n_fft: int = 512,
    win_s: float = 0.025,
    hop_s: float = 0.010,
    preemph: float = 0.97,
    lifter: int = 22,
) -> np.ndarray:
    """MFCC of a mono waveform: (n,) float -> (rows, n_ceps) float32 (see the module docstring).

    ``audio`` must already be at ``sr`` (16 kHz for the published models). With ``int16_scale``
    float audio in [-1, 1] is scaled by 32768 first, as the models saw int16 samples.
    """
    x = np.asarray(audio, np.float64).reshape(-1)
    if int16_scale:
        x = x * 32768.0
    if x.size == 0:
        x = np.zeros(1)
    frame_len = int(np.floor(win_s * sr + 0.5))
    hop = int(np.floor(hop_s * sr + 0.5))
    y = np.empty_like(x)
    y[0] = x[0]
    y[1:] = x[1:] - preemph * x[:-1]
    rows = n_mfcc_rows(len(y), frame_len, hop)
    y = np.pad(y, (0, (rows - 1) * hop + frame_len - len(y)))
    frames = np.lib.stride_tricks.sliding_window_view(y, frame_len)[::hop][:rows]  # (rows, frame_len)
    power = np.square(np.abs(np.fft.rfft(frames, n_fft))) / n_fft  # (rows, n_fft // 2 + 1)
    eps = np.finfo(np.float64).eps
    energy = power.sum(axis=1)
    energy = np.where(energy == 0.0, eps, energy)
    feat = power @ mel_filterbank(n_filters, n_fft, sr).T  # (rows, n_filters)
    feat = np.where(feat == 0.0, eps, feat)
    ceps = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :n_ceps]
    if lifter > 0:
        ceps = ceps * (1.0 + (lifter / 2.0) * np.sin(np.pi * np.arange(n_ceps) / lifter))
    ceps[:, 0] = np.log(energy)
    return ceps.astype(np.float32)
