"""Fine-tune (or train from scratch) ``talknet`` / ``light_asd`` / ``lr_asd`` on per-frame speaking labels.

    from stage1_face_extraction.asd.finetune import FinetuneConfig, load_labelled_corpus, prepare_tracks, train
    clips = load_labelled_corpus("data/demo/MELD.Raw/truth.json", splits=["train"])
    tracks = prepare_tracks(clips, cfg)            # 25 fps face crops, MFCC, labels per track
    result = train(cfg, tracks, out_dir)           # <out>/<arch>.safetensors + <arch>.json

CLI: ``python -m stage1_face_extraction.stages.finetune_asd`` (``facialmmt finetune-asd``).
The written ``.safetensors`` has the published key layout, so ``stage1.asd.checkpoint`` takes it
like a published file (the scorer also reads the ``.json`` beside it).

Corpus format (the demo's ``truth.json``, ``stage1_face_extraction/demo/SCHEMA.md``; any corpus
written the same way works)::

    {"clips": {"<key>": {"path": "<video, relative to the corpus root>", "split": "train",
                         "frames": [{"frame": i, "t": seconds, "faces": [
                             {"name" or "track": "<id>", "box": [x1, y1, x2, y2], "speaking": true}, ...]}, ...]}}}

A face's label is its ``speaking`` flag; without one (the demo), it is the demo's rule: the face is
the utterance's speaker (``"speaker": true``) and ``t`` lies in one of the clip's ``speech`` spans,
or it is the ``talking_over`` listener inside that listener's spans. The faces of one ``track``
(else ``name``) in consecutive frames form a track; a jump of the box (IoU < 0.3, a cut) or a
missing frame starts a new one. Crops come from the labelled boxes with the scorer's own
:func:`~stage1_face_extraction.asd.base.extract_patch` and 25 fps resampling, audio from the clip
(``video.read_audio``, 16 kHz) with the scorer's MFCC, so training and inference see the same input.

Training: windows of ``window_frames`` 25 fps frames (hop ``hop_frames``; a shorter track is one
window of its own length), batches of equal-length windows, Adam with a per-epoch decay, random
horizontal flips. Losses as published: Light-ASD ``CE(av / r) + 0.5 CE(v / r)`` with the
temperature ``r = 1.3 - 0.02 (epoch - 1)`` (not below 1); LR-ASD ``CE(av) + 0.5 CE(v)``; TalkNet
``CE(av) + 0.4 CE(a) + 0.4 CE(v)``.
``max_minutes`` stops training at a wall-clock budget (after the current batch). Finally the
BatchNorm running statistics are re-estimated on ``bn_recalibrate_frames`` training frames
(:func:`recalibrate_batchnorm`: with the published BN momentum of 0.01 a short run otherwise
leaves them near their initial values, and the eval-mode network scores at chance).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .base import FaceInputSpec, extract_patch
from .learned import (
    MODEL_FPS,
    PATCH_SIZE,
    SIDECAR_FORMAT,
    clip_mfcc,
    load_net_weights,
    mfcc_rows,
    resample_to_grid,
    resolve_device,
)

logger = logging.getLogger(__name__)


@dataclass
class FinetuneConfig:
    """What ``finetune_asd`` trains and how (strict: unknown keys fail)."""

    arch: str = "light_asd"  # light_asd | lr_asd | talknet
    init: str | None = None  # checkpoint to start from (published *.model or *.safetensors); None = from scratch
    splits: list[str] = field(default_factory=lambda: ["train"])  # corpus splits to train on (empty = all)
    val_splits: list[str] = field(default_factory=list)  # splits for frame metrics of the trained network
    epochs: int = 10
    max_minutes: float | None = None  # wall-clock budget for training
    window_frames: int = 50  # 2 s at 25 fps
    hop_frames: int = 25
    min_frames: int = 8  # shorter tracks are skipped
    batch_size: int = 16  # windows per batch
    lr: float | None = None  # None: 1e-3 (light_asd, lr_asd), 1e-4 (talknet), as published
    lr_decay: float = 0.95  # per epoch
    flip_p: float = 0.5
    bn_recalibrate_frames: int = 2000  # after training: BN running statistics from this many frames (0 = off)
    crop_scale: float = 0.7  # the scorer's crop (LearnedASDConfig): keep them equal at inference
    crop_offset: float = 0.2
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.arch not in ("light_asd", "lr_asd", "talknet"):
            raise ValueError(f"finetune.arch must be light_asd, lr_asd or talknet, got {self.arch!r}")
        if self.epochs < 1 or self.window_frames < 1 or self.hop_frames < 1 or self.batch_size < 1:
            raise ValueError("finetune: epochs, window_frames, hop_frames and batch_size must be >= 1")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (1e-4 if self.arch == "talknet" else 1e-3)

    @property
    def spec(self) -> FaceInputSpec:
        return FaceInputSpec(kind="face", size=PATCH_SIZE, gray=True, scale=self.crop_scale,
                             offset=self.crop_offset, fps=MODEL_FPS)


# ------------------------------------------------------------------------------------------------
# corpus


@dataclass
class LabelledTrack:
    """One face track of a labelled clip at the source frame rate."""

    frames: np.ndarray  # (T,) source frame indices, consecutive
    times: np.ndarray  # (T,) seconds
    boxes: np.ndarray  # (T, 4)
    labels: np.ndarray  # (T,) bool


@dataclass
class LabelledClip:
    key: str
    path: Path
    split: str
    fps: float | None
    tracks: list[LabelledTrack]


def _in_spans(t: float, spans: list) -> bool:
    return any(float(s) <= t < float(e) for s, e in spans or [])


def _face_label(face: dict, t: float, clip: dict) -> bool:
    if "speaking" in face:
        return bool(face["speaking"])
    if face.get("speaker") and _in_spans(t, clip.get("speech", [])):
        return True
    over = clip.get("talking_over")
    return bool(over and face.get("name") == over.get("name") and _in_spans(t, over.get("speech", [])))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def clip_tracks(clip: dict) -> list[LabelledTrack]:
    """Tracks of one truth clip (see the module docstring for the grouping and the labels)."""
    runs: dict[str, list[tuple[int, float, np.ndarray, bool]]] = {}
    done: list[list[tuple[int, float, np.ndarray, bool]]] = []
    for fr in sorted(clip["frames"], key=lambda f: f["frame"]):
        i, t = int(fr["frame"]), float(fr["t"])
        for face in fr["faces"]:
            ident = str(face.get("track", face.get("name")))
            box = np.asarray(face["box"], np.float64)
            row = (i, t, box, _face_label(face, t, clip))
            run = runs.get(ident)
            if run and (run[-1][0] != i - 1 or _iou(run[-1][2], box) < 0.3):
                done.append(run)
                run = None
            if run is None:
                runs[ident] = [row]
            else:
                run.append(row)
    done.extend(runs.values())
    out = []
    for run in sorted(done, key=lambda r: (r[0][0], r[0][2][0])):
        out.append(LabelledTrack(
            frames=np.array([r[0] for r in run], np.int64), times=np.array([r[1] for r in run]),
            boxes=np.stack([r[2] for r in run]), labels=np.array([r[3] for r in run], bool),
        ))
    return out


def load_labelled_corpus(
    truth: str | Path, root: str | Path | None = None, splits: list[str] | None = None
) -> list[LabelledClip]:
    """Clips of a truth.json-style corpus (``splits`` empty/None = all), with their labelled tracks."""
    truth = Path(truth)
    data = json.loads(truth.read_text(encoding="utf-8"))
    if "clips" not in data or not isinstance(data["clips"], dict):
        raise ValueError(f"{truth}: expected a mapping 'clips' (demo/SCHEMA.md layout)")
    root = Path(root) if root is not None else truth.parent
    fps = data.get("fps_float")
    out = []
    for key, clip in sorted(data["clips"].items()):
        split = str(clip.get("split", key.split("/")[0]))
        if splits and split not in splits:
            continue
        path = root / clip["path"]
        if not path.is_file():
            raise FileNotFoundError(f"{truth}: clip {key}: video not found: {path}")
        out.append(LabelledClip(key=key, path=path, split=split, fps=clip.get("fps", fps), tracks=clip_tracks(clip)))
    return out


@dataclass
class TrackSample:
    """One track ready for the network: 25 fps grey crops, MFCC rows and labels."""

    clip: str
    video: np.ndarray  # (K, 112, 112) uint8
    mfcc: np.ndarray  # (4K, 13) float32
    labels: np.ndarray  # (K,) int64


def prepare_tracks(
    clips: list[LabelledClip], cfg: FinetuneConfig, progress: Callable[[int], None] | None = None
) -> list[TrackSample]:
    """Decode every clip once and cut its labelled tracks as the scorer would (crops, 25 fps, MFCC)."""
    from ..video import NoAudioError, iter_frames, probe, read_audio

    spec = cfg.spec
    out: list[TrackSample] = []
    for clip in clips:
        tracks = [t for t in clip.tracks if len(t.frames) >= 2]
        if not tracks:
            if progress:
                progress(1)
            continue
        fps = clip.fps or probe(clip.path).fps
        want: dict[int, list[tuple[int, int]]] = {}
        for ti, t in enumerate(tracks):
            for r, f in enumerate(t.frames.tolist()):
                want.setdefault(f, []).append((ti, r))
        patches = [np.zeros((len(t.frames),) + PATCH_SIZE, np.uint8) for t in tracks]
        last = max(want)
        for fr in iter_frames(clip.path):
            if fr.index > last:
                break
            for ti, r in want.get(fr.index, ()):
                p = extract_patch(fr.image, tracks[ti].boxes[r], None, spec)
                patches[ti][r] = np.clip(np.rint(p * 255.0), 0, 255).astype(np.uint8)
        try:
            audio = read_audio(clip.path, 16000)
        except NoAudioError:
            audio = None
        mfcc = clip_mfcc(audio, 16000)
        if mfcc is None:
            logger.warning("%s: no audio, skipped for training", clip.key)
            if progress:
                progress(1)
            continue
        for t, p in zip(tracks, patches):
            k, rows = resample_to_grid(t.times, fps)
            if len(k) < cfg.min_frames:
                continue
            out.append(TrackSample(clip=clip.key, video=p[rows], mfcc=mfcc_rows(mfcc, int(k[0]), len(k)),
                                   labels=t.labels[rows].astype(np.int64)))
        if progress:
            progress(1)
    return out


def make_windows(tracks: list[TrackSample], window: int, hop: int) -> list[tuple[int, int, int]]:
    """(track, start, length) windows: hop-spaced full windows, the last one flush with the track end;
    a track shorter than ``window`` is one window of its own length."""
    out = []
    for i, t in enumerate(tracks):
        n = len(t.labels)
        if n <= window:
            out.append((i, 0, n))
            continue
        starts = list(range(0, n - window + 1, hop))
        if starts[-1] != n - window:
            starts.append(n - window)
        out.extend((i, s, window) for s in starts)
    return out


def _batches(
    windows: list[tuple[int, int, int]], batch_size: int, rng: np.random.Generator | None
) -> list[list[tuple[int, int, int]]]:
    by_len: dict[int, list[tuple[int, int, int]]] = {}
    for w in windows:
        by_len.setdefault(w[2], []).append(w)
    batches = []
    for _, items in sorted(by_len.items()):
        order = rng.permutation(len(items)) if rng is not None else np.arange(len(items))
        items = [items[j] for j in order]
        batches.extend(items[b : b + batch_size] for b in range(0, len(items), batch_size))
    if rng is not None:
        batches = [batches[j] for j in rng.permutation(len(batches))]
    return batches


def _tensors(tracks: list[TrackSample], batch: list[tuple[int, int, int]], device: str, flip: np.ndarray | None = None):
    import torch

    video = np.stack([tracks[i].video[s : s + n] for i, s, n in batch]).astype(np.float32) / 255.0  # (B, L, 112, 112)
    if flip is not None and flip.any():
        video[flip] = video[flip][..., ::-1]
    mfcc = np.stack([tracks[i].mfcc[4 * s : 4 * (s + n)] for i, s, n in batch])  # (B, 4L, 13)
    labels = np.stack([tracks[i].labels[s : s + n] for i, s, n in batch])  # (B, L)
    return (torch.from_numpy(mfcc).to(device), torch.from_numpy(np.ascontiguousarray(video)).to(device),
            torch.from_numpy(labels).to(device))


def _loss(arch: str, out: dict, labels, epoch: int):
    import torch.nn.functional as F

    y = labels.reshape(-1)
    if arch == "light_asd":
        r = max(1.0, 1.3 - 0.02 * (epoch - 1))
        return F.cross_entropy(out["av"].reshape(-1, 2) / r, y) + 0.5 * F.cross_entropy(out["v"].reshape(-1, 2) / r, y)
    if arch == "lr_asd":  # as published: the same two heads, no logit temperature
        return F.cross_entropy(out["av"].reshape(-1, 2), y) + 0.5 * F.cross_entropy(out["v"].reshape(-1, 2), y)
    return (F.cross_entropy(out["av"].reshape(-1, 2), y) + 0.4 * F.cross_entropy(out["a"].reshape(-1, 2), y)
            + 0.4 * F.cross_entropy(out["v"].reshape(-1, 2), y))


def recalibrate_batchnorm(net: Any, tracks: list[TrackSample], device: str, max_frames: int, window: int = 25,
                          seed: int = 0) -> int:
    """Re-estimate every BatchNorm's running mean / variance as the plain average over up to
    ``max_frames`` training frames (train-mode forwards, no gradients). Both networks use BN
    momentum 0.01 as published, so after a few hundred steps the running statistics still mostly
    hold their initial values and the eval-mode network is far worse than the training loss says;
    this pass fixes that (and adapts a published checkpoint's statistics to the new show). -> frames used."""
    import torch
    from torch import nn

    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    seen = 0
    with torch.no_grad():
        for batch in _batches(make_windows(tracks, window, window), 8, np.random.default_rng(seed)):
            a, v, _ = _tensors(tracks, batch, device)
            net(a, v)
            seen += int(v.shape[0] * v.shape[1])
            if seen >= max_frames:
                break
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    net.eval()
    return seen


def frame_metrics(net: Any, tracks: list[TrackSample], device: str, window: int = 50) -> dict[str, float]:
    """Per-frame accuracy (p >= 0.5), precision, recall and average precision on ``tracks``
    (each track cut into consecutive ``window``-frame pieces, the last one shorter, as the scorer
    does with one window size; every frame counted once)."""
    import torch
    from sklearn.metrics import average_precision_score

    net.eval()
    probs, ys = [], []
    with torch.inference_mode():
        pieces = [
            (i, s, min(window, len(t.labels) - s))
            for i, t in enumerate(tracks)
            for s in range(0, len(t.labels), window)
        ]
        for batch in _batches(pieces, 32, None):
            a, v, y = _tensors(tracks, batch, device)
            probs.append(torch.softmax(net(a, v)["av"].float(), -1)[..., 1].reshape(-1).cpu().numpy())
            ys.append(y.reshape(-1).cpu().numpy())
    if not probs:
        return {}
    p, y = np.concatenate(probs), np.concatenate(ys)
    pred = p >= 0.5
    tp = float((pred & (y == 1)).sum())
    return {
        "frames": len(y), "positives": int(y.sum()),
        "accuracy": float((pred == (y == 1)).mean()),
        "precision": tp / max(float(pred.sum()), 1.0), "recall": tp / max(float(y.sum()), 1.0),
        "ap": float(average_precision_score(y, p)) if 0 < y.sum() < len(y) else float("nan"),
    }


@dataclass
class FinetuneResult:
    weights: Path
    sidecar: Path
    epochs_run: int
    steps: int
    seconds: float
    history: list[dict[str, Any]]


def train(
    cfg: FinetuneConfig,
    tracks: list[TrackSample],
    out_dir: str | Path,
    val_tracks: list[TrackSample] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> FinetuneResult:
    """Train ``cfg.arch`` on ``tracks``; write ``<out_dir>/<arch>.safetensors`` and ``<arch>.json``.

    ``progress`` is called after every batch with ``{"epoch", "step", "batches", "loss"}``. With
    ``val_tracks``, frame metrics of the final network are added to the last epoch's record.
    """
    import torch
    from safetensors.torch import save_file

    from .nets import build_net

    if not tracks:
        raise ValueError("finetune: no training tracks (check the splits and min_frames)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = build_net(cfg.arch)
    if cfg.init:
        load_net_weights(net, cfg.init, cfg.arch)
        logger.info("starting from %s", cfg.init)
    net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_decay)
    windows = make_windows(tracks, cfg.window_frames, cfg.hop_frames)
    n_frames = int(sum(len(t.labels) for t in tracks))
    logger.info("finetune %s: %d tracks, %d frames at 25 fps, %d windows, device %s",
                cfg.arch, len(tracks), n_frames, len(windows), device)
    t0 = time.perf_counter()
    budget = cfg.max_minutes * 60.0 if cfg.max_minutes else math.inf
    history: list[dict[str, Any]] = []
    steps = 0
    epochs_run = 0
    for epoch in range(1, cfg.epochs + 1):
        net.train()
        batches = _batches(windows, cfg.batch_size, rng)
        total, count = 0.0, 0
        for b, batch in enumerate(batches):
            flip = rng.random(len(batch)) < cfg.flip_p
            a, v, y = _tensors(tracks, batch, device, flip)
            loss = _loss(cfg.arch, net(a, v), y, epoch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            total += float(loss.detach()) * len(batch)
            count += len(batch)
            if progress:
                progress({"epoch": epoch, "step": b + 1, "batches": len(batches), "loss": total / count})
            if time.perf_counter() - t0 > budget:
                break
        sched.step()
        epochs_run = epoch
        rec: dict[str, Any] = {"epoch": epoch, "loss": total / max(count, 1), "seconds": time.perf_counter() - t0}
        history.append(rec)
        logger.info("epoch %d: loss %.4f, %.0f s", epoch, rec["loss"], rec["seconds"])
        if time.perf_counter() - t0 > budget:
            logger.info("stopping: max_minutes %.1f reached", cfg.max_minutes)
            break
    if cfg.bn_recalibrate_frames > 0:
        used = recalibrate_batchnorm(net, tracks, device, cfg.bn_recalibrate_frames, seed=cfg.seed)
        logger.info("BatchNorm statistics re-estimated on %d training frames", used)
    seconds = time.perf_counter() - t0  # training (+ BN pass); the validation below is not counted
    if val_tracks:
        history[-1]["val"] = frame_metrics(net, val_tracks, device, cfg.window_frames)
        logger.info("validation frames after epoch %d: %s", epochs_run, json.dumps(history[-1]["val"]))
    net.eval().cpu()
    weights = out_dir / f"{cfg.arch}.safetensors"
    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(weights))
    sidecar = weights.with_suffix(".json")
    meta = {
        "format": SIDECAR_FORMAT,
        "arch": cfg.arch,
        "layout": "published state-dict keys (model.*, lossAV.FC, ...)",
        "input": {"patch": list(PATCH_SIZE), "gray": True, "fps": MODEL_FPS, "crop_scale": cfg.crop_scale,
                  "crop_offset": cfg.crop_offset, "mfcc": "13 x 100 Hz, python_speech_features-compatible (asd.mfcc)"},
        "config": asdict(cfg),
        "train": {"tracks": len(tracks), "frames": n_frames, "windows": len(windows), "epochs_run": epochs_run,
                  "steps": steps, "seconds": round(seconds, 1), "device": device},
        "history": history,
    }
    sidecar.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return FinetuneResult(
        weights=weights, sidecar=sidecar, epochs_run=epochs_run, steps=steps, seconds=seconds, history=history
    )
