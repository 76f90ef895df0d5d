"""Learned active-speaker scorers ``talknet``, ``light_asd`` and ``lr_asd`` (drop-in replacements for ``av_sync``).

    stage1:
      asd:
        name: light_asd                       # or lr_asd, talknet
        checkpoint: models/finetuning_TalkSet.model   # published file, or a finetune_asd .safetensors

Networks: ``asd/nets.py`` (TalkNet, Light-ASD) and ``asd/lr_asd_net.py`` (LR-ASD), all with the
published state-dict layout. Config keys: :class:`LearnedASDConfig` (strict: an unknown key fails).

Input preprocessing
-------------------
The published inference (``Columbia_test.py``, the same code in the Light-ASD and LR-ASD
repositories; TalkNet's demo is its ancestor) re-done on the pipeline's data. Each point: what the
published code does, then what happens here. ``benchmarks/asd_reference_check.py`` re-implements the
published steps (except the detector and the lossy re-encodes) and compares the two per frame.

* **25 fps**: the clip is re-encoded with ``ffmpeg -r 25`` (the source frame nearest each
  ``n / 25`` s; MPEG-4, then JPEG frames, both at ``qscale 2``). Here the decoded frames are used
  directly: each track is resampled on the clip's grid ``k / 25`` s, grid points inside the track's
  span (source frame times +- half a source frame) taking the nearest source patch
  (:func:`resample_to_grid`); scores go back to the source frames by linear interpolation in time.
* **Faces**: S3FD (at 0.25 scale, confidence 0.9) on every 25 fps frame, an IoU > 0.5 tracker that
  bridges up to 10 missed frames by linear interpolation and keeps tracks of more than 10 frames.
  Here: the pipeline's detector (MTCNN by default; its boxes are tighter than S3FD's, not measured
  - tune ``crop_scale`` / ``crop_offset`` if a published model looks off) and tracker; any track
  length is scored, down to one frame.
* **Face crop** (declared as :class:`FaceInputSpec` ``kind="face", size=(112, 112), gray=True,
  scale=crop_scale, offset=crop_offset, fps=25``). Published: half side ``s = max(w, h) / 2`` and the
  box centre, each median-filtered over 13 frames (zero-padded ends); the frame padded with grey
  110; the square ``[cy - s, cy + 1.8 s) x [cx - 1.4 s, cx + 1.4 s)`` (crop scale 0.4, integer
  bounds) resized to 224x224 (bilinear), written to an XVID video, read back, grey, the central
  112x112. That is a square of 0.7 x the longer box side centred 0.2 box sides below the box
  centre, at 112 px: ``crop_scale: 0.7``, ``crop_offset: 0.2`` here, cut by one bilinear warp
  straight to 112 px (``extract_patch``) from the tracker's smoothed boxes; the border repeats edge
  pixels instead of grey 110 (only matters for a face at the frame edge).
* **Audio**: published: 16 kHz mono int16 WAV cut per track from ``first frame / 25`` to
  ``(last frame + 1) / 25`` s, MFCC per track (python_speech_features, 13 coefficients, 25 ms
  windows every 10 ms), the track cut to whole 40 ms steps of its audio. Here: ``asd.mfcc.mfcc_13``
  (the same MFCC, int16 scale) over the WHOLE clip once; grid frame ``k`` gets rows
  ``4k .. 4k + 3``, so audio and video stay aligned for any track start; rows past the end of the
  audio repeat the last row and the whole track is scored.
* **Windows** (``windows_s``): published: each track cut into consecutive windows of d seconds
  for d in ``{1,1,1,2,2,2,3,3,4,5,6}`` - a Python SET, so d = 1, 2, 3, 4, 5, 6, each once - one
  forward per window at batch 1, the per-frame scores averaged over d. Default here
  ``[1, 2, 3, 4, 5, 6]`` (the same; a repeated duration in a user list counts that many times and
  is computed once); ``null``: the whole track in one window (fastest). Equal-length windows share
  a forward (same numbers as batch 1).
* **Score**: published: the RAW "speaking" logit of the ``lossAV`` head (``FC(x)[:, 1]``, not a
  softmax, not a logit difference) averaged over durations, rounded to 0.1, smoothed per frame over
  ``[i - 2, min(i + 3, n - 1))`` (the track's last score never enters), speaking when > 0 (the
  Columbia F1; the AVA mAP of the training code ranks by the softmax instead). Here: the softmax
  probability of "speaking" averaged over windows, then a centred moving average of
  ``smooth_frames`` (5) frames truncated at the ends (:func:`smooth`); ``select`` thresholds it at
  0.5, i.e. ``logit_1 > logit_0``, which is NOT the published ``logit_1 > 0`` (how often they
  differ: ``benchmarks/asd_reference_check.py``).
* **No audio**: ``light_asd`` / ``lr_asd`` use their visual-only ``lossV`` head; ``talknet``
  (whose heads all see the audio) gets the MFCC of digital silence (the published code has no
  such path). ``last_info["status_hint"] == "no_audio"``.

Measured (``benchmarks/asd_reference_check.py --negatives``, the 7 shared talking heads, the
pipeline's MTCNN boxes on both sides): per-frame speaking probabilities of the pipeline and of the
published preprocessing differ by 0.008 (light_asd TalkSet), 0.025 (light_asd AVA), 0.013 (lr_asd
TalkSet) and 0.013 (lr_asd AVA) on average with the clips' own audio (at most 0.068 on one clip);
correlation over own audio + noise 0.91 / 0.99 / 0.96 / 1.00; the pipeline's ``p > 0.5`` and the
published ``logit_1 > 0`` agree on 100 / 98.9 / 97.9 / 99.2 % of the frames. Speaking share with
the own audio, pipeline / published: light_asd TalkSet 1.00 / 1.00, AVA 0.80 / 0.80; lr_asd
TalkSet 1.00 / 0.98, AVA 0.81 / 0.82. So the published models answer "is there speech and are the
lips moving", not "do the lips match this voice": another person's speech under the same face
scores speaking almost as often (0.74 / 0.78 with the AVA files). With quiet noise (-50 dBFS)
instead of speech the AVA files say "not speaking" (0 %), the TalkSet-finetuned ones still
"speaking" (100 % / 96 %).

Batching: all windows of all tracks of a clip that have the same length go through ONE forward
(``max_batch_frames`` caps the frames per forward), on CUDA when present (``device: auto``).
Items of different lengths are never padded together (the temporal convolutions, TalkNet's
global layer norm and attention and the Light-ASD / LR-ASD backward GRUs would see the padding), so scores do
not depend on which other tracks share the batch.

``voice_at`` (the voiced-frame mask ``select`` uses) comes from the same VAD as ``av_sync``
(``vad``: silero | energy | none).

Checkpoints
-----------
``checkpoint`` is a local file (relative paths resolve from the working directory, the repo root
for ``dvc repro``):

* the published ``*.model`` files (``torch.save`` of a plain state dict of tensors) are read with
  ``torch.load(weights_only=True)``: no code runs, no flag needed. A file that ``weights_only``
  refuses (one that also pickles Python objects, e.g. training arguments) fails with an error
  naming the class and how to convert it: there is no way to allow pickled classes (that would
  amount to a full unpickle, ``os.system`` included). Convert such a file once, on a machine you
  trust, to a plain state dict or to safetensors (docs/stage1.md "Learned active-speaker scorers");
* ``*.safetensors`` written by ``finetune_asd`` (same key layout), with its ``<stem>.json`` beside it
  (architecture, preprocessing, training summary); a JSON naming the other architecture is an error.

Keys may carry a ``module.`` prefix (DataParallel). Missing or unexpected keys, wrong shapes, the
other architecture's file, a truncated or non-checkpoint file: :class:`CheckpointError` naming the
file and what is wrong. ``random_init: true`` runs without weights (tests, benchmarks, training
from scratch) and logs a warning; meaningless scores.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .av_sync import AVSyncConfig, AVSyncScorer, resample_audio
from .base import ActiveSpeakerScorer, FaceInputSpec, register_scorer
from .mfcc import ROWS_PER_VIDEO_FRAME, SAMPLE_RATE, mfcc_13

logger = logging.getLogger(__name__)

MODEL_FPS = 25.0
PATCH_SIZE = (112, 112)
SIDECAR_FORMAT = "facialmmt-asd-checkpoint"


class CheckpointError(ValueError):
    """An ASD checkpoint that cannot be used (missing, truncated, wrong architecture or layout)."""


@dataclass
class LearnedASDConfig:
    """``stage1.asd`` keys of ``talknet`` / ``light_asd`` / ``lr_asd`` (besides ``name``)."""

    checkpoint: str | None = None  # local weights file (published *.model or finetune_asd *.safetensors)
    random_init: bool = False  # run without weights (tests / benchmarks / training from scratch)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    windows_s: list[float] | None = field(default_factory=lambda: [1, 2, 3, 4, 5, 6])  # what the published code runs
    smooth_frames: int = 5  # centred moving average over 25 fps frames (1 = none)
    crop_scale: float = 0.7  # face crop side / longer box side
    crop_offset: float = 0.2  # crop centre below the box centre, in longer box sides
    max_batch_frames: int = 3000  # frames (items x length) per forward
    vad: str = "silero"  # voice activity for select's voiced mask: silero | energy | none
    vad_backend: str = "onnx"

    def __post_init__(self) -> None:
        if self.windows_s is not None:
            self.windows_s = [float(w) for w in self.windows_s]
            if not self.windows_s or min(self.windows_s) <= 0:
                raise ValueError("asd.windows_s must be null or a non-empty list of positive seconds")
        if int(self.smooth_frames) < 1:
            raise ValueError("asd.smooth_frames must be >= 1")
        if self.crop_scale <= 0:
            raise ValueError("asd.crop_scale must be > 0")
        if int(self.max_batch_frames) < 1:
            raise ValueError("asd.max_batch_frames must be >= 1")
        if self.checkpoint is None and not self.random_init:
            raise ValueError(
                "asd.checkpoint is required (a local TalkNet / Light-ASD / LR-ASD weights file; see docs/stage1.md "
                "'Learned active-speaker scorers'); random_init: true runs without weights (meaningless scores)"
            )


# ------------------------------------------------------------------------------------------------
# checkpoints


def _arch_of_keys(keys: set[str]) -> str | None:
    """Which published architecture a state dict's keys belong to (None: none recognised).

    Light-ASD and LR-ASD share ``model.visualEncoder.`` / ``model.audioEncoder.``; Light-ASD has
    ``model.GRU.`` and two-path blocks (``s_3`` / ``s_5``), LR-ASD ``model.fusion.`` /
    ``model.detector.`` and one-path blocks (``s_1`` / ``s_norm_1``)."""
    if any(k.startswith("model.visualFrontend.") for k in keys):
        return "talknet"
    if any(k.startswith(("model.fusion.", "model.detector.")) or ".s_norm_1." in k for k in keys):
        return "lr_asd"
    if any(k.startswith(("model.GRU.", "model.visualEncoder.")) for k in keys):
        return "light_asd"
    return None


def read_sidecar(path: str | Path) -> dict | None:
    """The ``<stem>.json`` written beside a finetune_asd checkpoint, or None."""
    side = Path(path).with_suffix(".json")
    if not side.is_file():
        return None
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{side}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        return None
    return meta


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Raw state dict from a ``.safetensors`` file or a torch file (``weights_only=True``: tensors
    and plain containers only, never a pickled class). Every failure is a :class:`CheckpointError`
    that names the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"ASD checkpoint not found: {path} (resolved {path.resolve()}); download the published "
            "file or train one with finetune_asd (docs/stage1.md 'Learned active-speaker scorers')"
        )
    if path.stat().st_size == 0:
        raise CheckpointError(f"ASD checkpoint {path} is empty (0 bytes): an interrupted download?")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(
                f"cannot read ASD checkpoint {path}: truncated or not a safetensors file ({exc})"
            ) from None
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError / UnpicklingError / EOFError ...
        msg = str(exc)
        if "Weights only load failed" in msg and "invalid load key" not in msg and "truncated" not in msg.lower():
            first = msg.strip().splitlines()[0] if msg.strip() else type(exc).__name__
            raise CheckpointError(
                f"ASD checkpoint {path} holds pickled objects that torch.load(weights_only=True) refuses "
                f"({first}). Only plain state dicts of tensors and safetensors files are read: if the file "
                "comes from a source you trust, convert it once on that trust (torch.load it there and "
                "save_file(state_dict, 'x.safetensors') or torch.save(state_dict, 'x.model'))."
            ) from None
        else:
            raise CheckpointError(
                f"cannot read ASD checkpoint {path} ({path.stat().st_size} bytes): truncated, corrupt or not a "
                f"torch checkpoint ({type(exc).__name__}: {msg.strip().splitlines()[0] if msg.strip() else ''})"
            ) from None
    for key in ("state_dict", "model_state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(k, str) for k in sd):
        raise CheckpointError(f"ASD checkpoint {path}: expected a state dict, got {type(sd).__name__}")
    return sd


def load_net_weights(net: Any, path: str | Path, arch: str) -> dict | None:
    """Load ``path`` into ``net`` (a ``nets.TalkNet`` / ``nets.LightASD`` / ``lr_asd_net.LRASD``) strictly. Returns the
    sidecar metadata of a finetune_asd checkpoint (or None)."""
    import torch

    path = Path(path)
    meta = read_sidecar(path)
    if meta is not None and meta.get("arch") != arch:
        raise CheckpointError(
            f"{path}: its {path.with_suffix('.json').name} says arch {meta.get('arch')!r}, not {arch!r}"
        )
    sd = read_checkpoint(path)
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    want = net.state_dict()
    got_arch = _arch_of_keys(set(sd))
    if got_arch is not None and got_arch != arch:
        raise CheckpointError(
            f"{path} is a {got_arch} checkpoint, but the scorer is {arch}: set stage1.asd.name: {got_arch}"
        )
    missing = sorted(set(want) - set(sd))
    unexpected = sorted(set(sd) - set(want))
    bad_shape = sorted(
        k for k in set(want) & set(sd)
        if not isinstance(sd[k], torch.Tensor) or tuple(sd[k].shape) != tuple(want[k].shape)
    )
    if missing or unexpected or bad_shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) (e.g. {', '.join(unexpected[:3])})")
        if bad_shape:
            k = bad_shape[0]
            got = tuple(sd[k].shape) if isinstance(sd[k], torch.Tensor) else type(sd[k]).__name__
            parts.append(f"{len(bad_shape)} wrong shape(s) (e.g. {k}: file {got}, {arch} {tuple(want[k].shape)})")
        raise CheckpointError(
            f"{path} does not match the published {arch} layout: " + "; ".join(parts)
        )
    net.load_state_dict({k: v.to(want[k].dtype) for k, v in sd.items()}, strict=True)
    return meta


# ------------------------------------------------------------------------------------------------
# 25 fps resampling


def resample_to_grid(times: np.ndarray, fps_src: float | None, fps: float = MODEL_FPS) -> tuple[np.ndarray, np.ndarray]:
    """Resample one track to the clip's ``fps`` grid.

    times: (T,) source frame times (s), increasing. Returns (grid indices k (K,) int, nearest
    source row per grid point (K,) int): grid times ``k / fps`` inside ``[t0 - h, t_end + h)`` with
    ``h`` half a source frame; at least one grid point (nearest to ``t0``).
    """
    t = np.asarray(times, np.float64).reshape(-1)
    if t.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if not fps_src or fps_src <= 0:
        fps_src = 1.0 / float(np.median(np.diff(t))) if t.size > 1 else fps
    half = 0.5 / fps_src
    k0 = int(np.ceil((t[0] - half) * fps - 1e-9))
    k1 = int(np.ceil((t[-1] + half) * fps - 1e-9)) - 1
    k = np.arange(k0, k1 + 1, dtype=np.int64) if k1 >= k0 else np.array([round(t[0] * fps)], np.int64)
    g = k / fps
    j = np.clip(np.searchsorted(t, g), 1, max(t.size - 1, 1))
    if t.size == 1:
        rows = np.zeros(len(k), np.int64)
    else:
        rows = np.where(np.abs(t[j - 1] - g) <= np.abs(t[j] - g), j - 1, j).astype(np.int64)
    return k, rows


def smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average of (K,) values, truncated at the ends: element ``i`` is the mean of
    ``x[max(0, i - width // 2) : min(K, i + (width - 1) // 2 + 1)]``. Always (K,), also when K is
    shorter than ``width`` (``np.convolve(mode="same")`` would return max(K, width) values)."""
    x = np.asarray(x, np.float64).reshape(-1)
    width = int(width)
    if width <= 1 or x.size < 2:
        return x
    n = x.size
    csum = np.concatenate([[0.0], np.cumsum(x)])
    i = np.arange(n)
    lo = np.maximum(i - width // 2, 0)
    hi = np.minimum(i + (width - 1) // 2 + 1, n)
    return (csum[hi] - csum[lo]) / (hi - lo)


def mfcc_rows(mfcc: np.ndarray, k0: int, length: int) -> np.ndarray:
    """MFCC rows of grid frames ``k0 .. k0 + length - 1``: (4 * length, 13); rows past either end
    of the audio repeat the first / last row."""
    idx = np.arange(ROWS_PER_VIDEO_FRAME * k0, ROWS_PER_VIDEO_FRAME * (k0 + length))
    return mfcc[np.clip(idx, 0, len(mfcc) - 1)]


def clip_mfcc(audio: np.ndarray | None, sr: int) -> np.ndarray | None:
    """MFCC (rows, 13) of a clip's audio at 16 kHz, or None without audio."""
    if audio is None or len(audio) == 0:
        return None
    x = resample_audio(np.asarray(audio, np.float32).reshape(-1), sr, SAMPLE_RATE)
    return mfcc_13(x, SAMPLE_RATE)


# ------------------------------------------------------------------------------------------------
# the scorers


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"asd.device {device!r}: CUDA is not available")
    return device


class LearnedASDScorer(ActiveSpeakerScorer):
    """Shared preprocessing, batching and checkpoint loading of ``talknet``, ``light_asd`` and ``lr_asd``."""

    Config = LearnedASDConfig
    arch: ClassVar[str] = ""

    def __init__(self, cfg: LearnedASDConfig) -> None:
        super().__init__(cfg)
        from .nets import build_net

        self.device = resolve_device(cfg.device)
        self.net = build_net(self.arch)
        self.checkpoint_meta: dict | None = None
        if cfg.checkpoint is not None:
            self.checkpoint_meta = load_net_weights(self.net, cfg.checkpoint, self.arch)
            logger.info("%s: loaded %s", self.arch, cfg.checkpoint)
            trained = (self.checkpoint_meta or {}).get("input", {})
            for key in ("crop_scale", "crop_offset"):
                if key in trained and abs(float(trained[key]) - float(getattr(cfg, key))) > 1e-6:
                    logger.warning("%s was trained with %s %s, the scorer uses %s: set stage1.asd.%s to match",
                                   cfg.checkpoint, key, trained[key], getattr(cfg, key), key)
        else:
            logger.warning("%s: random_init: true - no weights loaded, the speaking scores are meaningless", self.arch)
        self.net.eval().to(self.device)
        self._spec = FaceInputSpec(
            kind="face", size=PATCH_SIZE, gray=True, scale=cfg.crop_scale, offset=cfg.crop_offset, fps=MODEL_FPS
        )
        self._vad = AVSyncScorer(AVSyncConfig(vad=cfg.vad, vad_backend=cfg.vad_backend))

    @property
    def input_spec(self) -> FaceInputSpec:
        return self._spec

    def voice_at(self, audio: np.ndarray, sr: int, times: np.ndarray) -> np.ndarray:
        """Voice probability (T,) at ``times`` from the configured VAD (as ``av_sync``'s)."""
        return self._vad.voice_at(audio, sr, times)

    # -- model calls ------------------------------------------------------------------------------
    def _forward(self, mfcc: np.ndarray | None, video: np.ndarray) -> np.ndarray:
        """mfcc (B, 4L, 13) or None, video (B, L, 112, 112) -> speaking probability (B, L)."""
        import torch

        with torch.inference_mode():
            v = torch.from_numpy(np.ascontiguousarray(video, np.float32)).to(self.device)
            if mfcc is None and hasattr(self.net, "forward_visual"):
                logits = self.net.forward_visual(v)
            else:
                if mfcc is None:
                    silence = mfcc_13(np.zeros(400, np.float32))[0]  # (13,)
                    mfcc = np.broadcast_to(silence, (video.shape[0], ROWS_PER_VIDEO_FRAME * video.shape[1], 13))
                a = torch.from_numpy(np.ascontiguousarray(mfcc, np.float32)).to(self.device)
                logits = self.net(a, v)["av"]
            return torch.softmax(logits.float(), dim=-1)[..., 1].cpu().numpy()

    def score_grid(
        self, patches25: list[np.ndarray], k0s: list[int], mfcc: np.ndarray | None
    ) -> tuple[list[np.ndarray], int]:
        """Speaking probability per 25 fps frame for tracks already on the grid.

        patches25: per track (K_i, 112, 112) float32; k0s: each track's first grid index; mfcc: the
        clip's (rows, 13) or None. Returns (per track (K_i,) float64, number of forwards).
        """
        cfg = self.cfg
        acc = [np.zeros(len(p)) for p in patches25]
        weight = [np.zeros(len(p)) for p in patches25]
        windows = Counter(cfg.windows_s) if cfg.windows_s is not None else Counter({None: 1})
        forwards = 0
        for w, count in sorted(windows.items(), key=lambda kv: (kv[0] is None, kv[0] or 0.0)):
            buckets: dict[int, list[tuple[int, int]]] = {}
            for i, p in enumerate(patches25):
                step = len(p) if w is None else max(1, round(w * MODEL_FPS))
                for s in range(0, len(p), max(step, 1)):
                    length = min(step, len(p) - s)
                    buckets.setdefault(length, []).append((i, s))
            for length, items in sorted(buckets.items()):
                per = max(1, int(cfg.max_batch_frames) // length)
                for b in range(0, len(items), per):
                    chunk = items[b : b + per]
                    video = np.stack([patches25[i][s : s + length] for i, s in chunk])  # (n, L, 112, 112)
                    audio = None if mfcc is None else np.stack([mfcc_rows(mfcc, k0s[i] + s, length) for i, s in chunk])
                    probs = self._forward(audio, video)  # (n, L)
                    forwards += 1
                    for (i, s), pr in zip(chunk, probs):
                        acc[i][s : s + length] += count * pr
                        weight[i][s : s + length] += count
        return [a / np.maximum(wt, 1e-12) for a, wt in zip(acc, weight)], forwards

    def score(
        self,
        tracks_patches: list[np.ndarray],
        frame_times: list[np.ndarray],
        audio: np.ndarray | None,
        sr: int,
        fps: float,
    ) -> list[np.ndarray]:
        self.check_inputs(tracks_patches, frame_times)
        has_audio = audio is not None and len(audio) > 0
        info: dict[str, Any] = {"audio_used": has_audio, "model": self.arch, "device": self.device}
        self.last_info = info
        if not tracks_patches:
            return []
        if not has_audio:
            info["status_hint"] = "no_audio"
        mfcc = clip_mfcc(audio, sr) if has_audio else None
        grid_k, patches25, k0s = [], [], []
        for p, t in zip(tracks_patches, frame_times):
            p = np.asarray(p, np.float32)
            if p.ndim == 4:  # RGB given: the models are grey
                p = p @ np.array([0.299, 0.587, 0.114], np.float32)
            if len(p) == 0:
                grid_k.append(np.zeros(0, np.int64))
                patches25.append(np.zeros((0,) + PATCH_SIZE, np.float32))
                k0s.append(0)
                continue
            if p.shape[1:] != PATCH_SIZE:
                raise ValueError(f"{self.arch} needs {PATCH_SIZE} patches (its input_spec), got {p.shape[1:]}")
            k, rows = resample_to_grid(t, fps)
            grid_k.append(k)
            patches25.append(p[rows])  # (K, 112, 112)
            k0s.append(int(k[0]))
        probs25, forwards = self.score_grid(patches25, k0s, mfcc)
        info["forwards"] = forwards
        out = []
        for p25, k, t in zip(probs25, grid_k, frame_times):
            t = np.asarray(t, np.float64).reshape(-1)
            if t.size == 0:
                out.append(np.zeros(0, np.float32))
                continue
            p25 = smooth(p25, int(self.cfg.smooth_frames))
            s = np.interp(t, k / MODEL_FPS, p25) if len(k) > 1 else np.full(t.size, p25[0])
            out.append(np.clip(s, 0.0, 1.0).astype(np.float32))
        return out


@register_scorer("talknet")
class TalkNetScorer(LearnedASDScorer):
    """TalkNet (ACM MM 2021): visual ResNet-18 + V-TCN, SE-ResNet audio, cross- and self-attention."""

    arch = "talknet"


@register_scorer("light_asd")
class LightASDScorer(LearnedASDScorer):
    """Light-ASD (CVPR 2023): (2+1)-D split convolutions for video and audio, a bidirectional GRU."""

    arch = "light_asd"


@register_scorer("lr_asd")
class LRASDScorer(LearnedASDScorer):
    """LR-ASD (IJCV 2025, Light-ASD's successor): sequential (2+1)-D encoders, gated audio-visual
    fusion, forward + reversed GRUs joined by a gate (``asd/lr_asd_net.py``). Same input as Light-ASD."""

    arch = "lr_asd"
