"""``av_sync``: a training-free active-speaker scorer (mouth motion vs. speech, per frame).

Inputs are the mouth patches of every track of one clip (``FaceInputSpec(kind="mouth",
size=(32, 48), gray=True)``), their frame times, the clip audio and the frame rate.

Formula (all windows are centred on the frame and truncated at the track ends)
-----------------------------------------------------------------------------
Mouth motion of track i, frame t, ``motion: flow`` (the default; ``P_t`` = mouth patch)::

    (u, v) = Farneback dense optical flow from P_{t-1} to P_t                # per pixel
    m_i(t) = mean |v - median(v)| over the patch                            # the lips opening and
    m_i(0) = m_i(1)                                                          # closing; the median is
                                                                             # the head's/camera's move

``motion: patch`` (the measure before real-footage calibration; ``P_t`` Gaussian-blurred and
standardised to zero mean / unit std so lighting flicker cancels)::

    (dx, dy) = phase_correlation(P_{t-1}, P_t), clipped to +-max_shift_px   # rigid shift:
    m_i(t)   = mean |P_t(x + dx, y + dy) - P_{t-1}(x)| over the inner patch  # camera pan, head
    m_i(0)   = m_i(1)                                                         # move, box jitter

Speech signals at any time ``tau`` (``e`` from the waveform, ``v`` from silero-vad)::

    e(tau) = sqrt(RMS of audio in [tau - 1/(2 fps), tau + 1/(2 fps)]) / max over the clip
    s(tau) = |e(tau) - e(tau - 1/fps)| + audio_level_weight * e(tau)   # the envelope's change
    v(tau) = silero speech probability (32 ms chunks), max-filtered over +-vad_smooth_s

Calibration on real faces (benchmarks/README.md "Stage 1 on real footage"; 204 tracks of scenes composed from
the real talking heads, seed 12, never the synthetic demo): the whole-track correlation with ``e``
separates the heard speaker from a muted talking listener with ROC AUC 0.93 for the flow measure,
0.86 for the patch difference (with ``|delta e|`` instead of ``e``: 0.81; mouth darkness, patch PCA
or a lower-face difference: 0.49-0.78). On synthetic mouths driven by an envelope, motion peaks
where the envelope changes (``|delta e|``); real lips follow its level more, hence
``audio_level_weight`` 1. Real correlations are low (heard speaker: median about 0.35, a muted
talker's best lag about 0.1), hence ``corr_high`` 0.35, and short windows are noise: the default
window (6 s) spans a whole MELD shot, so ``c`` is one correlation per track, shrunk toward 0 by
``corr_shrink`` standard errors in Fisher z (``atanh(c) - corr_shrink / sqrt(n - 3)``, n frames in
the window) so that a short track's chance correlation does not pass for sync.

Clip audio/video offset ``lag`` (one per clip, frames, |lag| <= max_lag_s * fps): the lag ``l``
maximising ``sum_i T_i * mean(q_i) * max(0, pearson(m_i, s(tau_i + l / fps)))`` over whole
tracks (still faces, whose motion is noise, get no vote), with a tie-break toward 0.

Per track and frame, with W = window_s::

    c_i(t) = pearson over W of m_i and s(tau_i + lag / fps)                  # sync
    c_i(t) = tanh(atanh(c_i(t)) - corr_shrink / sqrt(n_i(t) - 3))           # n: frames in W
    c'_i(t) = clip((c_i(t) - corr_low) / (corr_high - corr_low), 0, 1)
    q_i(t) = sd_i(t) / (sd_i(t) + motion_floor), sd = std of m_i over W     # is it moving?
    z_i(t) = c'_i(t) * q_i(t)                                               # absolute evidence
    rel_i(t) = z_i(t) / max_j z_j(t), j over tracks present at the same frame (1 when alone)
    score_i(t) = v(tau_i(t) + lag / fps) * z_i(t) * (1 - relative_weight + relative_weight * rel_i(t))

``q`` uses the temporal *variation* of the motion, not its level: sensor noise, compression and
landmark jitter give a steady non-zero ``m`` (about 0.1-0.15 in the tests), articulation makes it
swing (std about 0.15 for the synthetic speaker, 0.02-0.04 for a still face; on the real
``carphone`` clip 0.02 over the first second, mouth still, then 0.1-0.3 once he talks). All
factors lie in [0, 1], so does the score. No voice -> v ~ 0 -> score ~ 0; among several faces the
one whose mouth moves with the audio keeps its full evidence, the others lose up to
``relative_weight`` of theirs.

``scorer.voice_at(audio, sr, times)`` gives ``v`` at any frame times (for ``select``'s voiced
mask), from the same cached VAD run.

No audio (``audio is None`` or empty): ``z_i(t) = q_i(t)`` (mouth activity alone), ``v = 1``,
same relative term. ``scorer.last_info["audio_used"]`` is then False and
``last_info["status_hint"] == "no_audio"``; the pipeline (which knows the audio was missing)
records status ``no_audio``.

Voice activity
--------------
silero-vad's ONNX model is loaded from the installed ``silero_vad`` wheel (``silero_vad/data``)
and run with onnxruntime: no network, no hub. The package is located with
``importlib.util.find_spec`` and NOT imported, because importing ``silero_vad`` calls
``torch.set_num_threads(1)`` for the whole process. ``vad_backend="jit"`` uses the packaged
TorchScript file instead. Probabilities are cached per clip (LRU keyed by a hash of the audio), so
scoring the shots of one clip separately runs the VAD once.

Observed on synthetic speech: silero rejects a steady harmonic buzz (150 Hz harmonics under a
syllable envelope) after ~0.7 s; formant-synthesised syllables (pulse source at a per-syllable
pitch through 3 vowel resonances, onset noise bursts, pauses) pass for some utterances and not
others (mean p in syllables 0.1-0.67 over 10 random utterances, mostly < 0.05 in pauses and
silence). Real speech is what it is trained for. ``vad="energy"`` (a soft threshold on the 32 ms
RMS, ``energy_threshold_db`` below the clip's 95th percentile) is the explicit alternative for
such signals; a missing wheel raises an error naming the file rather than switching silently.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from math import gcd
from typing import Any

import cv2
import numpy as np

from ..common.local_weights import LocalWeights, Place, WeightCheck
from .base import ActiveSpeakerScorer, FaceInputSpec, register_scorer

logger = logging.getLogger(__name__)

SILERO_SR = 16000
SILERO_CHUNK = 512  # samples per VAD step at 16 kHz (32 ms)
SILERO_CONTEXT = 64


@dataclass
class AVSyncConfig:
    patch_size: tuple[int, int] = (32, 48)  # (h, w) of the mouth patch
    motion: str = "flow"  # flow (vertical optical flow of the lips) | patch (shift-compensated patch difference)
    mouth_scale: float = 1.6  # mouth patch width / mouth-corner distance
    # Defaults calibrated on real faces (benchmarks/README.md "Stage 1 on real footage": scenes composed from the
    # real talking heads, seed 12, 108 clips), never on the synthetic demo.
    window_s: float = 6.0  # sliding correlation window (longer than an utterance's shot: one value per track)
    max_lag_s: float = 0.1  # audio/video offset search range (+-)
    corr_low: float = 0.0  # correlation mapped to 0 ...
    corr_high: float = 0.35  # ... and to 1
    corr_shrink: float = 1.0  # standard errors taken off the correlation (Fisher z) before the mapping
    motion_floor: float = 0.1  # variation of the mouth motion (flow: px / frame) that gives q = 0.5
    max_shift_px: float = 3.0  # largest rigid shift compensated between consecutive patches
    audio_level_weight: float = 1.0  # weight of the envelope level next to its change
    relative_weight: float = 0.5  # how much a face loses to a better-synced face in the same frame
    vad: str = "silero"  # silero | energy | none
    vad_backend: str = "onnx"  # onnx | jit (silero only)
    vad_smooth_s: float = 0.1  # max-filter half width on the VAD probability
    energy_threshold_db: float = -30.0  # energy VAD: RMS over this (dB re clip 95th pct) is voice

    def __post_init__(self) -> None:
        self.patch_size = (int(self.patch_size[0]), int(self.patch_size[1]))
        if self.motion not in ("flow", "patch"):
            raise ValueError(f"av_sync.motion must be flow or patch, got {self.motion!r}")
        if self.vad not in ("silero", "energy", "none"):
            raise ValueError(f"av_sync.vad must be silero, energy or none, got {self.vad!r}")
        if self.vad_backend not in ("onnx", "jit"):
            raise ValueError(f"av_sync.vad_backend must be onnx or jit, got {self.vad_backend!r}")
        if not self.corr_high > self.corr_low:
            raise ValueError("av_sync.corr_high must exceed corr_low")
        if not 0.0 <= self.relative_weight <= 1.0:
            raise ValueError("av_sync.relative_weight must be in [0, 1]")


# ----------------------------------------------------------------------------------------------
# voice activity


def silero_model_path(name: str = "silero_vad.onnx") -> str:
    """Path of a model file inside the installed silero-vad wheel (the package is not imported)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("silero-vad is not installed (pip install silero-vad)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"silero-vad model file missing: {path}")
    return path


class SileroVAD:
    """silero-vad v5/v6 streaming model over a whole clip -> speech probability per 32 ms chunk."""

    def __init__(self, backend: str = "onnx") -> None:
        self.backend = backend
        if backend == "onnx":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.inter_op_num_threads = 1
            opts.intra_op_num_threads = 1
            self._session = ort.InferenceSession(
                silero_model_path("silero_vad.onnx"), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        else:
            import torch

            with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export
                warnings.simplefilter("ignore", FutureWarning)
                self._jit = torch.jit.load(silero_model_path("silero_vad.jit"), map_location="cpu")
            self._jit.eval()
        self._lock = threading.Lock()

    def __call__(self, audio16k: np.ndarray) -> np.ndarray:
        """audio16k: (n,) float32 at 16 kHz -> (ceil(n / 512),) float32 probabilities."""
        x = np.asarray(audio16k, np.float32).reshape(-1)
        n_chunks = max(1, -(-len(x) // SILERO_CHUNK))
        x = np.pad(x, (0, n_chunks * SILERO_CHUNK - len(x)))
        with self._lock:
            if self.backend == "onnx":
                return self._run_onnx(x, n_chunks)
            return self._run_jit(x)

    def _run_onnx(self, x: np.ndarray, n_chunks: int) -> np.ndarray:
        state = np.zeros((2, 1, 128), np.float32)
        context = np.zeros((1, SILERO_CONTEXT), np.float32)
        sr = np.array(SILERO_SR, np.int64)
        out = np.zeros(n_chunks, np.float32)
        for k in range(n_chunks):
            inp = np.concatenate([context, x[None, k * SILERO_CHUNK : (k + 1) * SILERO_CHUNK]], axis=1)
            prob, state = self._session.run(None, {"input": inp, "state": state, "sr": sr})
            context = inp[:, -SILERO_CONTEXT:]
            out[k] = prob.reshape(-1)[0]
        return out

    def _run_jit(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            self._jit.reset_states()
            probs = self._jit.audio_forward(torch.from_numpy(x)[None], SILERO_SR)
        return probs.reshape(-1).numpy().astype(np.float32)


_VAD_MODELS: dict[str, SileroVAD] = {}
_VAD_CACHE: OrderedDict[tuple, np.ndarray] = OrderedDict()
_VAD_CACHE_SIZE = 8
_VAD_LOCK = threading.Lock()


def _get_silero(backend: str) -> SileroVAD:
    with _VAD_LOCK:
        if backend not in _VAD_MODELS:
            _VAD_MODELS[backend] = SileroVAD(backend)
            logger.debug("loaded silero-vad (%s)", backend)
        return _VAD_MODELS[backend]


def resample_audio(audio: np.ndarray, sr: int, target: int = SILERO_SR) -> np.ndarray:
    """Polyphase resampling (n,) -> (n * target / sr,) float32."""
    if sr == target:
        return np.asarray(audio, np.float32)
    from scipy.signal import resample_poly

    g = gcd(int(sr), int(target))
    return resample_poly(np.asarray(audio, np.float64), target // g, int(sr) // g).astype(np.float32)


def silero_probs(audio: np.ndarray, sr: int, backend: str = "onnx") -> tuple[np.ndarray, float]:
    """Speech probability per 32 ms step (cached per clip) -> (probs (K,), step seconds)."""
    x = resample_audio(audio, sr)
    key = (backend, len(x), hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest())
    with _VAD_LOCK:
        hit = _VAD_CACHE.get(key)
        if hit is not None:
            _VAD_CACHE.move_to_end(key)
            return hit, SILERO_CHUNK / SILERO_SR
    probs = _get_silero(backend)(x)
    with _VAD_LOCK:
        _VAD_CACHE[key] = probs
        while len(_VAD_CACHE) > _VAD_CACHE_SIZE:
            _VAD_CACHE.popitem(last=False)
    return probs, SILERO_CHUNK / SILERO_SR


def energy_probs(
    audio: np.ndarray, sr: int, threshold_db: float = -30.0, step_s: float = 0.032
) -> tuple[np.ndarray, float]:
    """Energy VAD: soft voice probability per step from RMS relative to the clip's loud level."""
    hop = max(1, int(round(step_s * sr)))
    n = max(1, -(-len(audio) // hop))
    x = np.pad(np.asarray(audio, np.float64), (0, n * hop - len(audio)))
    rms = np.sqrt((x.reshape(n, hop) ** 2).mean(1) + 1e-12)
    ref = max(float(np.percentile(rms, 95)), 1e-4)  # never call -80 dBFS noise "loud"
    db = 20.0 * np.log10(rms / ref)
    probs = 1.0 / (1.0 + np.exp(-(db - threshold_db) / 3.0))
    probs[rms < 3e-4] = 0.0
    return probs.astype(np.float32), hop / sr


# ----------------------------------------------------------------------------------------------
# signals


class WindowRMS:
    """RMS of a waveform in [t - width/2, t + width/2] for any times t (zeros outside the audio)."""

    def __init__(self, audio: np.ndarray, sr: int) -> None:
        x = np.asarray(audio, np.float64).reshape(-1)
        self.sr = int(sr)
        self.n = len(x)
        self._csum = np.concatenate([[0.0], np.cumsum(x * x)])

    def __call__(self, times: np.ndarray, width_s: float) -> np.ndarray:
        t = np.asarray(times, np.float64)
        lo = np.clip(np.round((t - width_s / 2) * self.sr).astype(np.int64), 0, self.n)
        hi = np.clip(np.round((t + width_s / 2) * self.sr).astype(np.int64), 0, self.n)
        count = max(1, int(round(width_s * self.sr)))
        return np.sqrt(np.maximum(self._csum[hi] - self._csum[lo], 0.0) / count)


def _gray_patches(patches: np.ndarray) -> np.ndarray:
    """(T, h, w) or (T, h, w, 3) patches -> (T, h, w) float32 grey."""
    p = np.asarray(patches, np.float32)
    return p.mean(-1) if p.ndim == 4 else p


def mouth_motion(patches: np.ndarray, max_shift_px: float = 3.0) -> np.ndarray:
    """Rigid-shift-compensated mean absolute change of standardised patches, (T, h, w) -> (T,)."""
    t_len = len(patches)
    if t_len < 2:
        return np.zeros(t_len, np.float32)
    p = _gray_patches(patches)
    h, w = p.shape[1:3]
    from scipy.ndimage import gaussian_filter

    g = gaussian_filter(p, sigma=(0.0, 1.0, 1.0), mode="nearest", truncate=3.0)
    mean = g.mean(axis=(1, 2), keepdims=True)
    std = g.std(axis=(1, 2), keepdims=True)
    norm = np.ascontiguousarray((g - mean) / (std + 1e-2), dtype=np.float32)
    window = cv2.createHanningWindow((w, h), cv2.CV_32F)
    b = int(np.ceil(max_shift_px)) + 1
    inner = (slice(b, h - b), slice(b, w - b)) if min(h, w) > 2 * b + 2 else (slice(None), slice(None))
    out = np.zeros(t_len, np.float32)
    for k in range(1, t_len):
        prev, cur = norm[k - 1], norm[k]
        # cv2.phaseCorrelate multiplies its inputs by the window IN PLACE (OpenCV 4.x): copies
        (dx, dy), _ = cv2.phaseCorrelate(prev.copy(), cur.copy(), window)
        dx = min(max(dx, -max_shift_px), max_shift_px)
        dy = min(max(dy, -max_shift_px), max_shift_px)
        back = cv2.warpAffine(
            cur,
            np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], np.float32),
            (w, h),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        out[k] = float(np.abs(back[inner] - prev[inner]).mean())
    out[0] = out[1]
    return out


def _window_sums(x: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums of x over truncated windows [t - half, t + half] along the last axis, and counts."""
    t_len = x.shape[-1]
    csum = np.concatenate([np.zeros(x.shape[:-1] + (1,)), np.cumsum(x, axis=-1)], axis=-1)
    idx = np.arange(t_len)
    lo = np.clip(idx - half, 0, t_len)
    hi = np.clip(idx + half + 1, 0, t_len)
    return csum[..., hi] - csum[..., lo], (hi - lo).astype(np.float64)


def mouth_flow(patches: np.ndarray) -> np.ndarray:
    """Vertical lip movement per frame: mean |v_y - median v_y| of dense optical flow between
    consecutive patches, (T, h, w) in [0, 1] -> (T,). Removing the median takes out the head's and
    the camera's own vertical movement; what remains is the lips opening and closing."""
    t_len = len(patches)
    if t_len < 2:
        return np.zeros(t_len, np.float32)
    p = _gray_patches(patches)
    g = np.clip(p * 255.0 + 0.5, 0, 255).astype(np.uint8)
    out = np.zeros(t_len, np.float32)
    for k in range(1, t_len):
        # pyramid scale 0.5, 2 levels, 9 px window, 3 iterations, poly_n 5 / sigma 1.1
        # (OpenCV's defaults for small images)
        f = cv2.calcOpticalFlowFarneback(g[k - 1], g[k], None, 0.5, 2, 9, 3, 5, 1.1, 0)
        vy = f[..., 1]
        out[k] = float(np.abs(vy - np.median(vy)).mean())
    out[0] = out[1]
    return out


def windowed_pearson(a: np.ndarray, b: np.ndarray, half: int, min_count: int = 5) -> np.ndarray:
    """Pearson correlation of a and b (..., T) in truncated windows of half-width ``half``."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    sa, n = _window_sums(a, half)
    sb, _ = _window_sums(b, half)
    saa, _ = _window_sums(a * a, half)
    sbb, _ = _window_sums(b * b, half)
    sab, _ = _window_sums(a * b, half)
    cov = sab / n - sa * sb / n**2
    va = saa / n - (sa / n) ** 2
    vb = sbb / n - (sb / n) ** 2
    ok = (va > 1e-10) & (vb > 1e-10) & (n >= min_count)
    r = np.zeros_like(cov)
    np.divide(cov, np.sqrt(np.maximum(va * vb, 1e-20)), out=r, where=ok)
    return np.clip(r, -1.0, 1.0)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-12 else 0.0


def _windowed_std(x: np.ndarray, half: int) -> np.ndarray:
    """Standard deviation of x (T,) in truncated windows of half-width ``half``."""
    x = np.asarray(x, np.float64)
    if x.size == 0:
        return x
    s, n = _window_sums(x, half)
    ss, _ = _window_sums(x * x, half)
    return np.sqrt(np.maximum(ss / n - (s / n) ** 2, 0.0))


# ----------------------------------------------------------------------------------------------
# the scorer


@register_scorer("av_sync")
class AVSyncScorer(ActiveSpeakerScorer):
    """Training-free audio-visual synchrony scorer (see the module docstring for the formula)."""

    @classmethod
    def local_weights(cls, cfg: dict, place: Place, key: str) -> LocalWeights:
        """The silero-vad model file (``vad: silero``; the energy VAD needs no file)."""
        if cfg.get("vad", "silero") != "silero":
            return super().local_weights(cfg, place, key)
        backend = cfg.get("vad_backend", "onnx")
        try:
            found = WeightCheck("OK", f"av_sync: silero-vad {silero_model_path(f'silero_vad.{backend}')}")
        except FileNotFoundError as exc:
            found = WeightCheck("FAIL", str(exc),
                                "pip install silero-vad (requirements/stack.txt), or stage1.asd.vad: energy")
        return LocalWeights([found])

    Config = AVSyncConfig

    def __init__(self, cfg: AVSyncConfig) -> None:
        super().__init__(cfg)
        self._spec = FaceInputSpec(kind="mouth", size=cfg.patch_size, gray=True, scale=cfg.mouth_scale)

    @property
    def input_spec(self) -> FaceInputSpec:
        return self._spec

    # -- speech side ---------------------------------------------------------------------------
    def voice_probs(self, audio: np.ndarray, sr: int) -> tuple[np.ndarray, float]:
        """(probs (K,), step seconds) from the configured VAD."""
        if self.cfg.vad == "silero":
            return silero_probs(audio, sr, self.cfg.vad_backend)
        if self.cfg.vad == "energy":
            return energy_probs(audio, sr, self.cfg.energy_threshold_db)
        return np.ones(1, np.float32), float("inf")

    def voice_at(self, audio: np.ndarray, sr: int, times: np.ndarray) -> np.ndarray:
        """Smoothed voice probability (T,) at ``times`` (e.g. every frame of the clip, for
        ``select``'s voiced mask); shares the per-clip VAD cache with :meth:`score`."""
        probs, step = self.voice_probs(np.asarray(audio, np.float32).reshape(-1), sr)
        return self._voice_at(probs, step, np.asarray(times, np.float64)).astype(np.float32)

    def _voice_at(self, probs: np.ndarray, step: float, times: np.ndarray) -> np.ndarray:
        if not np.isfinite(step):
            return np.ones(len(times))
        k = max(0, int(round(self.cfg.vad_smooth_s / step)))
        if k:
            from scipy.ndimage import maximum_filter1d

            probs = maximum_filter1d(probs, size=2 * k + 1, mode="nearest")
        centres = (np.arange(len(probs)) + 0.5) * step
        return np.interp(times, centres, probs, left=float(probs[0]), right=0.0)

    def speech_signal(self, rms: WindowRMS, fps: float, times: np.ndarray, env_ref: float) -> np.ndarray:
        """s(tau) of the module docstring at ``times`` (T,) -> (T,)."""
        e_now = np.sqrt(rms(times, 1.0 / fps)) / env_ref
        e_prev = np.sqrt(rms(times - 1.0 / fps, 1.0 / fps)) / env_ref
        return np.abs(e_now - e_prev) + self.cfg.audio_level_weight * e_now

    # -- main ----------------------------------------------------------------------------------
    def score(
        self,
        tracks_patches: list[np.ndarray],
        frame_times: list[np.ndarray],
        audio: np.ndarray | None,
        sr: int,
        fps: float,
    ) -> list[np.ndarray]:
        self.check_inputs(tracks_patches, frame_times)
        cfg = self.cfg
        info: dict[str, Any] = {"audio_used": audio is not None, "lag_s": 0.0}
        self.last_info = info
        n_tracks = len(tracks_patches)
        if n_tracks == 0:
            return []
        times = [np.asarray(t, np.float64).reshape(-1) for t in frame_times]
        half = max(1, int(round(cfg.window_s * fps / 2)))
        if cfg.motion == "flow":
            motion = [mouth_flow(p).astype(np.float64) for p in tracks_patches]
        else:
            motion = [mouth_motion(p, cfg.max_shift_px).astype(np.float64) for p in tracks_patches]
        activity = [_windowed_std(m, half) for m in motion]
        q = [a / (a + cfg.motion_floor) for a in activity]

        if audio is None or len(audio) == 0:
            info["status_hint"] = "no_audio"
            info["audio_used"] = False
            z = q
            voice = [np.ones(len(t)) for t in times]
        else:
            audio = np.asarray(audio, np.float32).reshape(-1)
            probs, step = self.voice_probs(audio, sr)
            all_t = np.concatenate(times) if times else np.zeros(0)
            rms = WindowRMS(audio, sr)
            e_all = np.sqrt(rms(np.arange(0.0, len(audio) / sr, 1.0 / fps), 1.0 / fps))
            env_ref = max(float(e_all.max()) if e_all.size else 0.0, 1e-6)
            max_lag = int(round(cfg.max_lag_s * fps))
            lags = np.arange(-max_lag, max_lag + 1)
            # speech signal of every track at every lag: list of (L, T_i)
            speech = [
                np.stack([self.speech_signal(rms, fps, t + lag / fps, env_ref) for lag in lags])
                if len(t)
                else np.zeros((len(lags), 0))
                for t in times
            ]
            support = np.zeros(len(lags))
            for m, s, qi in zip(motion, speech, q):
                # A still face's motion is noise: Pearson normalises it away, so weight each
                # track's vote by how much its mouth moves (mean q) or listeners pick the lag.
                if len(m) >= 3:
                    w = len(m) * float(np.mean(qi))
                    support += w * np.array([max(0.0, _pearson(m, s[j])) for j in range(len(lags))])
            support -= 1e-3 * np.abs(lags) * max(1.0, float(support.max()))  # prefer small lags on ties
            j_best = int(np.argmax(support))
            lag_s = float(lags[j_best] / fps)
            info["lag_s"] = lag_s
            info["vad"] = cfg.vad
            voice = [self._voice_at(probs, step, t + lag_s) for t in times]
            info["voice_fraction"] = float(np.mean(np.concatenate(voice) > 0.5)) if all_t.size else 0.0
            z = []
            for m, s, qi in zip(motion, speech, q):
                c = windowed_pearson(m, s[j_best], half)
                if cfg.corr_shrink > 0:  # Fisher z lower bound: a short track's correlation is weak evidence
                    _, n = _window_sums(np.zeros(len(m)), half)  # frames in each window
                    c = np.tanh(
                        np.arctanh(np.clip(c, -0.999, 0.999)) - cfg.corr_shrink / np.sqrt(np.maximum(n - 3.0, 1.0))
                    )
                c = np.clip((c - cfg.corr_low) / (cfg.corr_high - cfg.corr_low), 0.0, 1.0)
                z.append(c * qi)

        rel = self._relative(z, times, fps)
        beta = cfg.relative_weight
        out = []
        for zi, ri, vi in zip(z, rel, voice):
            s = vi * zi * (1.0 - beta + beta * ri)
            out.append(np.clip(s, 0.0, 1.0).astype(np.float32))
        return out

    @staticmethod
    def _relative(z: list[np.ndarray], times: list[np.ndarray], fps: float) -> list[np.ndarray]:
        """z_i / max_j z_j over the tracks present at the same frame (1 where z_i is the max)."""
        keys = [np.round(np.asarray(t) * fps).astype(np.int64) for t in times]
        best: dict[int, float] = {}
        for k, zi in zip(keys, z):
            for kk, v in zip(k.tolist(), zi.tolist()):
                if v > best.get(kk, 0.0):
                    best[kk] = v
        rel = []
        for k, zi in zip(keys, z):
            mx = np.array([best.get(kk, 0.0) for kk in k.tolist()])
            r = np.ones(len(zi))
            np.divide(zi, mx, out=r, where=mx > 1e-12)
            rel.append(r)
        return rel
