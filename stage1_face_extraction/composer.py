"""Compose MELD-like multi-person scenes from real single-speaker talking-head clips, with truth.

Stage 1's quality claims are made on REAL lips and voices: this module builds utterance clips
(2-5 s, H.264 + AAC, 23.976 fps, 1280x720 or 640x360) out of any folder of real talking-head
recordings (one person each, talking with their own voice), where the ground truth is known by
construction: the audio is always ONE person's own voice, and every face on screen is a scaled,
shifted copy of a source frame whose face box was detected once in the source.

    from stage1_face_extraction.composer import SceneConfig, load_sources, compose_scenes
    sources = load_sources("../shared/data/talking_heads")
    truth = compose_scenes(sources, "out/scenes", SceneConfig(width=1280, height=720, per_type=7))

Scene types (``SceneConfig.scene_types``; the listener kinds multiply all but ``alone``)::

    alone            the speaker in close-up, their voice
    two_shot_left    speaker on the left, a listener on the right (speaker_right: mirrored)
    cut_to_listener  the two-shot, then a cut (at 40-60 % of the clip) to the listener in close-up
                     while the speaker goes on off screen: after the cut nothing may be chosen
    listener_alone   only the listener, the speaker's voice throughout: nothing may be chosen

Listener kinds: ``quiet`` - a held frame of the listener's clip that sways a little (head motion,
breathing; no lip movement); ``talking`` - the listener's own clip, really talking, MUTED: only
lip-sync with the heard voice tells who is speaking.

The listener is always another person: sources listed together in ``SceneConfig.same_person``
(two recordings of one face; :func:`same_person_groups` finds them from face embeddings) are never
paired, and share one ``speaker_person`` name (what a transcript would call the speaker).

Every frame also gets a slow camera drift shared by all layers and sensor noise, and the layers sit
on a blurred real photograph (scikit-image's) with a feathered edge.

Truth (``truth.json``, the demo corpus' format, scored by ``stage1_face_extraction.quality``):
``clips["<split>/<utt_id>"]`` with ``frames[i].faces[j] = {name, box, speaker}``, plus
``speaker_person`` (the person's name, shared by sources of one person: ``same_person``),
``shot_plan`` (the scene type), ``listener_kind``, ``listener``, ``cut_frame``, ``segment`` (the
speaker's source seconds) and ``speaker_visible_frames``. A face whose box is less than half
inside the frame is not listed. Face boxes come from ``truth_detector`` (MTCNN at full source
resolution by default) on every source frame used, gaps filled by the nearest detection: they are
the detector's boxes, within IoU ~0.8 of a hand-drawn box, which the quality metrics' IoU >= 0.5
match tolerates.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .video import iter_frames, probe, read_audio

logger = logging.getLogger(__name__)

TRUTH_VERSION = 1
SCENE_TYPES = ("alone", "two_shot_left", "two_shot_right", "cut_to_listener", "listener_alone")
LISTENER_KINDS = ("quiet", "talking")
VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".avi", ".webm")


@dataclass
class SceneConfig:
    """How many scenes, of which kinds, at which size (every field is a knob of the generator)."""

    seed: int = 0
    width: int = 1280
    height: int = 720
    fps: str = "24000/1001"  # MELD's rate
    sample_rate: int = 44100
    duration_min_s: float = 2.0
    duration_max_s: float = 4.5
    scene_types: list[str] = field(default_factory=lambda: list(SCENE_TYPES))
    listener_kinds: list[str] = field(default_factory=lambda: list(LISTENER_KINDS))
    per_type: int = 7  # clips per (scene type, listener kind)
    split: str = "scenes"  # the key prefix in truth.json (``<split>/<utt_id>``)
    closeup_height: tuple[float, float] = (0.75, 1.0)  # person layer side / frame height
    two_shot_height: tuple[float, float] = (0.5, 0.72)
    drift_px: float = 3.0  # camera drift amplitude, at 720 p (scaled with the height)
    sway_px: float = 2.0  # quiet listener's own head motion, at 720 p
    noise: float = 2.0  # sensor noise std in grey levels
    crf: int = 23
    x264_preset: str = "veryfast"
    audio_bitrate: int = 96000
    # Groups of source names showing the same person (e.g. two recordings of one speaker): never
    # paired in one scene, and named alike in the truth's ``speaker_person`` (the transcript's name).
    # :func:`same_person_groups` finds them from face embeddings.
    same_person: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        bad = [s for s in self.scene_types if s not in SCENE_TYPES]
        if bad:
            raise ValueError(f"unknown scene type(s) {bad}; valid: {', '.join(SCENE_TYPES)}")
        bad = [k for k in self.listener_kinds if k not in LISTENER_KINDS]
        if bad:
            raise ValueError(f"unknown listener kind(s) {bad}; valid: {', '.join(LISTENER_KINDS)}")
        if not 0 < self.duration_min_s <= self.duration_max_s:
            raise ValueError("need 0 < duration_min_s <= duration_max_s")
        if self.width < 64 or self.height < 64 or self.width % 2 or self.height % 2:
            raise ValueError(f"frame size must be even and >= 64 px, got {self.width}x{self.height}")
        if self.per_type < 1:
            raise ValueError("per_type must be >= 1")
        self.closeup_height = (float(self.closeup_height[0]), float(self.closeup_height[1]))
        self.two_shot_height = (float(self.two_shot_height[0]), float(self.two_shot_height[1]))
        self.same_person = [sorted(str(n) for n in g) for g in self.same_person if len(g) > 1]
        seen = [n for g in self.same_person for n in g]
        if len(seen) != len(set(seen)):
            raise ValueError(f"same_person groups overlap: {self.same_person}")

    def person(self, source: str) -> str:
        """The person a source shows: the first name of its ``same_person`` group, else its own name."""
        return next((g[0] for g in self.same_person if source in g), source)

    @property
    def frame_rate(self) -> Fraction:
        return Fraction(self.fps)


# ------------------------------------------------------------------------------------------------
# sources


class SourceClip:
    """One real talking-head recording: frames (downscaled to ``max_side``), audio, face boxes.

    Face boxes are detected lazily, once per source frame used (:meth:`box`), by ``detector``
    (``stage1_face_extraction.detectors`` instance); frames without a detection take the nearest
    detected frame's box.
    """

    def __init__(self, path: str | Path, sample_rate: int, max_side: int = 720, detector: Any = None) -> None:
        self.path = Path(path)
        self.name = self.path.stem
        info = probe(self.path)
        if not info.has_audio:
            raise ValueError(f"{self.path}: a source clip needs its own speech audio (no audio stream)")
        self.fps = float(info.fps)
        self.frames = np.stack([f.image for f in iter_frames(self.path, max_side=max_side)])  # (T, h, w, 3)
        self.audio = read_audio(self.path, sample_rate)  # (n,) float32
        self.sample_rate = sample_rate
        self.duration = min(len(self.frames) / self.fps, len(self.audio) / sample_rate)
        self.max_side = max_side
        self._detector = detector
        self._boxes: dict[int, np.ndarray | None] = {}

    def add_boxes(self, boxes: dict[str, list[float] | None]) -> None:
        """Boxes detected earlier (``{frame: [x1, y1, x2, y2] or None}``, :meth:`boxes_state`)."""
        self._boxes.update({int(k): None if v is None else np.asarray(v, np.float64) for k, v in boxes.items()})

    def boxes_state(self) -> dict[str, Any]:
        """The detected boxes so far, JSON-ready (:func:`save_box_cache`)."""
        return {
            "size": list(self.size),
            "frames": len(self.frames),
            "boxes": {
                str(k): None if v is None else [round(float(x), 2) for x in v] for k, v in sorted(self._boxes.items())
            },
        }

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def frame_at(self, t: float) -> int:
        """Index of the source frame showing time ``t`` (s)."""
        return int(min(max(math.floor(t * self.fps + 1e-6), 0), len(self.frames) - 1))

    def _detect(self, i: int) -> np.ndarray | None:
        if i not in self._boxes:
            det = self._detector.detect([self.frames[i]])[0]
            if len(det):
                areas = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])
                self._boxes[i] = det.boxes[int(np.argmax(areas))].astype(np.float64)
            else:
                self._boxes[i] = None
        return self._boxes[i]

    def box(self, i: int) -> np.ndarray:
        """(4,) x1, y1, x2, y2 of the face in source frame ``i`` (nearest detection on a miss)."""
        for d in range(len(self.frames)):
            for j in (i - d, i + d) if d else (i,):
                if 0 <= j < len(self.frames):
                    b = self._detect(j)
                    if b is not None:
                        return b
        raise ValueError(f"{self.path}: no face found in any frame")


def _default_detector() -> Any:
    from .detectors import create_detector

    return create_detector("mtcnn", downscale=0.5, min_score=0.9, min_face_size=120, device="cpu")


def load_sources(
    folder: str | Path, sample_rate: int = 44100, max_side: int = 720, detector: Any = None,
    names: list[str] | None = None, box_cache: str | Path | None = None,
) -> list[SourceClip]:
    """Every video in ``folder`` (sorted by name; ``names``: only these stems) as a :class:`SourceClip`.

    ``box_cache``: a JSON file of face boxes detected earlier (:func:`save_box_cache`); entries whose
    frame size or count differ from the clip's are ignored.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"source folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTS)
    if names is not None:
        paths = [p for p in paths if p.stem in names]
    if len(paths) < 2:
        raise ValueError(f"{folder}: need at least 2 talking-head clips (two people), found {len(paths)}")
    detector = detector or _default_detector()
    cache = json.loads(Path(box_cache).read_text()) if box_cache is not None and Path(box_cache).is_file() else {}
    out = []
    for p in paths:
        clip = SourceClip(p, sample_rate, max_side, detector)
        entry = cache.get(p.name)
        if entry and entry.get("size") == list(clip.size) and entry.get("frames") == len(clip.frames):
            clip.add_boxes(entry["boxes"])
        out.append(clip)
    return out


def save_box_cache(sources: list[SourceClip], path: str | Path) -> None:
    """Write the sources' detected face boxes to ``path`` (JSON) for :func:`load_sources`."""
    state = {s.path.name: s.boxes_state() for s in sources}
    Path(path).write_text(json.dumps(state, separators=(",", ":")) + "\n", encoding="utf-8")


def same_person_groups(sources: list[SourceClip], embedder: Any, max_distance: float | None = None,
                       frames: int = 3) -> list[list[str]]:
    """Groups of sources whose faces are one person: the mean unit embedding of ``frames`` face
    crops per source (spread over the clip) within ``max_distance`` (default: the embedder's
    ``distance_threshold``), joined transitively. ``embedder``: an identity embedder
    (``stage1_face_extraction.identity.create_embedder``)."""
    thr = float(embedder.distance_threshold if max_distance is None else max_distance)
    means = []
    for src in sources:
        idx = np.unique(np.linspace(0, len(src.frames) - 1, frames + 2)[1:-1].round().astype(int))
        vecs = embedder.embed([src.frames[i] for i in idx], boxes=np.stack([src.box(int(i)) for i in idx]))
        m = vecs.mean(axis=0)
        means.append(m / max(float(np.linalg.norm(m)), 1e-12))
    parent = list(range(len(sources)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(sources)):
        for j in range(i + 1, len(sources)):
            d = float(np.linalg.norm(means[i] - means[j]))
            if d <= thr:
                logger.info(
                    "%s and %s look like one person (embedding distance %.2f)", sources[i].name, sources[j].name, d
                )
                parent[root(j)] = root(i)
    groups: dict[int, list[str]] = {}
    for i, s in enumerate(sources):
        groups.setdefault(root(i), []).append(s.name)
    return [sorted(g) for g in groups.values() if len(g) > 1]


# ------------------------------------------------------------------------------------------------
# drawing


def _background(rng: np.random.Generator, width: int, height: int, margin: int) -> np.ndarray:
    """A blurred real photograph (no faces) filling (H + 2m, W + 2m, 3) uint8."""
    from skimage import data

    name = ["coffee", "rocket", "hubble_deep_field", "immunohistochemistry"][int(rng.integers(4))]
    img = getattr(data, name)()
    h, w = height + 2 * margin, width + 2 * margin
    scale = max(h / img.shape[0], w / img.shape[1])
    img = cv2.resize(
        img, (math.ceil(img.shape[1] * scale), math.ceil(img.shape[0] * scale)), interpolation=cv2.INTER_LINEAR
    )
    y0 = int(rng.integers(0, img.shape[0] - h + 1))
    x0 = int(rng.integers(0, img.shape[1] - w + 1))
    img = img[y0 : y0 + h, x0 : x0 + w]
    k = max(3, (height // 40) | 1)
    img = cv2.GaussianBlur(img, (k, k), 0)
    return (0.55 * img + 0.45 * 110).astype(np.uint8)  # darker, low contrast: the people stand out


def _feather(side: int) -> np.ndarray:
    """(side, side, 1) float32 alpha: 1 inside, linear ramps over 6 % of the side at the edges."""
    ramp = max(2, int(0.06 * side))
    a = np.minimum(np.arange(side) + 1, np.arange(side)[::-1] + 1) / ramp
    a = np.clip(a, 0.0, 1.0).astype(np.float32)
    return (a[:, None] * a[None, :])[..., None]


def _smooth_path(rng: np.random.Generator, n: int, fps: float, amplitude: float) -> np.ndarray:
    """(n, 2) smooth random offsets (a few slow sinusoids per axis) within +-amplitude px."""
    t = np.arange(n) / fps
    out = np.zeros((n, 2))
    for axis in range(2):
        for _ in range(3):
            f = rng.uniform(0.1, 0.6)
            out[:, axis] += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) / 3.0
    return out * amplitude


@dataclass
class _Layer:
    """One person on screen during [frame0, frame1): source, square side, centre, source frames."""

    src: SourceClip
    role: str  # speaker | listener
    side: int
    centre: tuple[float, float]
    src_frames: np.ndarray  # (n_frames,) source frame per output frame (meaningful inside the span)
    frame0: int
    frame1: int
    sway: np.ndarray | None = None  # (n_frames, 2) own motion


def _layer_frame(layer: _Layer, i: int) -> tuple[np.ndarray, float]:
    """The layer's square image at output frame i, and its scale (layer px / source px)."""
    src = layer.src.frames[int(layer.src_frames[i])]
    h, w = src.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    sq = src[y0 : y0 + s, x0 : x0 + s]
    return cv2.resize(sq, (layer.side, layer.side), interpolation=cv2.INTER_AREA), layer.side / s


def _layer_box(layer: _Layer, i: int, origin: tuple[float, float]) -> np.ndarray:
    src = layer.src
    h, w = src.size
    s = min(h, w)
    b = src.box(int(layer.src_frames[i])).copy()
    b[[0, 2]] -= (w - s) // 2
    b[[1, 3]] -= (h - s) // 2
    k = layer.side / s
    return b * k + np.array([origin[0], origin[1], origin[0], origin[1]])


# ------------------------------------------------------------------------------------------------
# scenes


@dataclass
class ScenePlan:
    """One clip to render (all random choices already made)."""

    utt_id: str
    scene_type: str
    listener_kind: str | None
    speaker: int  # source index
    listener: int | None
    duration: float
    start: float  # speaker segment start in its source (s)
    listener_start: float  # talking listener: its segment start; quiet listener: held frame time
    cut_frac: float | None
    seed: tuple[int, ...]


def plan_scenes(sources: list[SourceClip], cfg: SceneConfig) -> list[ScenePlan]:
    """Every clip of the benchmark, deterministic in ``cfg.seed`` and the sources' order."""
    plans: list[ScenePlan] = []
    n = len(sources)
    person = [cfg.person(s.name) for s in sources]
    if len(set(person)) < 2:
        raise ValueError(f"the sources show fewer than 2 people ({sorted(set(person))}): no two-person scene possible")
    for ti, stype in enumerate(cfg.scene_types):
        kinds: list[str | None] = [None] if stype == "alone" else list(cfg.listener_kinds)
        for ki, kind in enumerate(kinds):
            for k in range(cfg.per_type):
                rng = np.random.default_rng([cfg.seed, ti, ki, k])
                spk = (k + cfg.seed + 3 * ti + ki) % n
                # listener: another person's clip (sources of the speaker's own person excluded)
                others = [j % n for j in range(spk + 1, spk + n) if person[j % n] != person[spk]]
                lis = None if stype == "alone" else others[int(rng.integers(len(others)))]
                longest = (
                    sources[spk].duration
                    if lis is None or kind == "quiet"
                    else min(sources[spk].duration, sources[lis].duration)
                )
                dur = float(min(rng.uniform(cfg.duration_min_s, cfg.duration_max_s), longest - 0.1))
                start = float(rng.uniform(0.0, max(sources[spk].duration - dur - 0.05, 0.0)))
                if lis is None:
                    lstart = 0.0
                elif kind == "talking":
                    lstart = float(rng.uniform(0.0, max(sources[lis].duration - dur - 0.05, 0.0)))
                else:
                    lstart = float(rng.uniform(0.0, sources[lis].duration - 0.05))
                cut = float(rng.uniform(0.4, 0.6)) if stype == "cut_to_listener" else None
                name = stype if kind is None else f"{stype}-{kind}"
                plans.append(
                    ScenePlan(f"{name}-{k:02d}", stype, kind, spk, lis, dur, start, lstart, cut, (cfg.seed, ti, ki, k))
                )
    return plans


def render_scene(plan: ScenePlan, sources: list[SourceClip], cfg: SceneConfig, path: Path) -> dict[str, Any]:
    """Render one scene to ``path`` (mp4) and return its truth entry."""
    from .demo.generate import ClipWriter

    rng = np.random.default_rng([*plan.seed, 1])
    fps = cfg.frame_rate
    W, H = cfg.width, cfg.height
    n = max(2, int(round(plan.duration * float(fps))))
    px = H / 720.0
    margin = int(math.ceil(cfg.drift_px * px)) + 2
    bg = _background(rng, W, H, margin)
    drift = _smooth_path(rng, n, float(fps), cfg.drift_px * px)
    spk = sources[plan.speaker]
    lis = sources[plan.listener] if plan.listener is not None else None
    t_out = np.arange(n) / float(fps)
    spk_frames = np.array([spk.frame_at(plan.start + t) for t in t_out])
    if lis is None:
        lis_frames = None
    elif plan.listener_kind == "talking":
        lis_frames = np.array([lis.frame_at(plan.listener_start + t) for t in t_out])
    else:
        lis_frames = np.full(n, lis.frame_at(plan.listener_start))
    sway = _smooth_path(rng, n, float(fps), cfg.sway_px * px) if plan.listener_kind == "quiet" else None
    cut = int(round(plan.cut_frac * n)) if plan.cut_frac is not None else None

    def closeup(src: SourceClip, frames: np.ndarray, role: str, f0: int, f1: int, sw: np.ndarray | None) -> _Layer:
        side = int(H * rng.uniform(*cfg.closeup_height)) // 2 * 2
        cx = W / 2 + rng.uniform(-0.15, 0.15) * max(W - side, 0)
        cy = H / 2 + rng.uniform(-0.05, 0.1) * side
        return _Layer(src, role, side, (cx, cy), frames, f0, f1, sw)

    layers: list[_Layer] = []
    if plan.scene_type == "alone":
        layers.append(closeup(spk, spk_frames, "speaker", 0, n, None))
    elif plan.scene_type == "listener_alone":
        layers.append(closeup(lis, lis_frames, "listener", 0, n, sway))
    else:
        end = cut if cut is not None else n
        left = plan.scene_type == "two_shot_left" or (plan.scene_type == "cut_to_listener" and rng.random() < 0.5)
        side = int(min(H * rng.uniform(*cfg.two_shot_height), 0.48 * W)) // 2 * 2
        cy = H * rng.uniform(0.45, 0.55)
        xs = (W * rng.uniform(0.24, 0.29), W * rng.uniform(0.71, 0.76))
        sx, lx = (xs[0], xs[1]) if left else (xs[1], xs[0])
        layers.append(_Layer(spk, "speaker", side, (sx, cy), spk_frames, 0, end, None))
        layers.append(_Layer(lis, "listener", side, (lx, cy), lis_frames, 0, end, sway))
        if cut is not None:
            layers.append(closeup(lis, lis_frames, "listener", cut, n, sway))

    t0, t1 = plan.start, plan.start + plan.duration
    audio = spk.audio[int(round(t0 * spk.sample_rate)) : int(round(t1 * spk.sample_rate))]
    audio = np.asarray(audio, np.float32)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 0.99:
        audio = audio * (0.99 / peak)
    frames_truth: list[dict[str, Any]] = []
    visible = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with ClipWriter(path, W, H, fps, audio, cfg.sample_rate, cfg.crf, cfg.x264_preset, cfg.audio_bitrate) as writer:
        for i in range(n):
            dx, dy = drift[i]
            ox, oy = int(round(margin + dx)), int(round(margin + dy))
            canvas = bg[oy : oy + H, ox : ox + W].astype(np.float32)
            faces = []
            for layer in layers:
                if not layer.frame0 <= i < layer.frame1:
                    continue
                img, _ = _layer_frame(layer, i)
                sdx, sdy = (layer.sway[i] if layer.sway is not None else (0.0, 0.0))
                x0 = int(round(layer.centre[0] - layer.side / 2 + sdx - dx))
                y0 = int(round(layer.centre[1] - layer.side / 2 + sdy - dy))
                ax0, ay0 = max(x0, 0), max(y0, 0)
                ax1, ay1 = min(x0 + layer.side, W), min(y0 + layer.side, H)
                if ax1 <= ax0 or ay1 <= ay0:
                    continue
                alpha = _feather(layer.side)[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0]
                patch = img[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0].astype(np.float32)
                canvas[ay0:ay1, ax0:ax1] = alpha * patch + (1 - alpha) * canvas[ay0:ay1, ax0:ax1]
                box = _layer_box(layer, i, (x0, y0))
                clipped = np.array([max(box[0], 0), max(box[1], 0), min(box[2], W), min(box[3], H)])
                area = (box[2] - box[0]) * (box[3] - box[1])
                inside = max(clipped[2] - clipped[0], 0) * max(clipped[3] - clipped[1], 0)
                if area > 0 and inside / area >= 0.5:
                    faces.append({
                        "name": layer.src.name,
                        "box": [round(float(v), 2) for v in clipped],
                        "speaker": layer.role == "speaker",
                    })
            if cfg.noise > 0:
                canvas += rng.normal(0.0, cfg.noise, canvas.shape).astype(np.float32)
            writer.write(np.clip(canvas + 0.5, 0, 255).astype(np.uint8))
            visible += any(f["speaker"] for f in faces)
            frames_truth.append({"frame": i, "t": round(float(i / fps), 4), "faces": faces})
    return {
        "utt_id": plan.utt_id,
        "path": path.name,
        "speaker": spk.name,
        "speaker_person": cfg.person(spk.name),
        "shot_plan": plan.scene_type,
        "listener_kind": plan.listener_kind,
        "listener": lis.name if lis is not None else None,
        "cut_frame": cut,
        "segment": [round(t0, 4), round(t1, 4)],
        "n_frames": n,
        "duration_s": round(n / float(fps), 4),
        "speaker_visible_frames": int(visible),
        "frames": frames_truth,
    }


def compose_scenes(
    sources: list[SourceClip],
    out: str | Path,
    cfg: SceneConfig,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Render every planned scene into ``out/<split>/`` and write ``out/truth.json``; returns the truth."""
    out = Path(out)
    clip_dir = out / cfg.split
    clip_dir.mkdir(parents=True, exist_ok=True)
    plans = plan_scenes(sources, cfg)
    clips: dict[str, Any] = {}
    for k, plan in enumerate(plans):
        entry = render_scene(plan, sources, cfg, clip_dir / f"{plan.utt_id}.mp4")
        entry["path"] = f"{cfg.split}/{entry['path']}"
        clips[f"{cfg.split}/{plan.utt_id}"] = entry
        if progress:
            progress(k + 1, len(plans), plan.utt_id)
    truth = {
        "version": TRUTH_VERSION,
        "kind": "real_scenes",
        "config": asdict(cfg),
        "fps": cfg.fps,
        "fps_float": float(cfg.frame_rate),
        "width": cfg.width,
        "height": cfg.height,
        "sample_rate": cfg.sample_rate,
        "sources": {s.name: {"file": s.path.name, "fps": s.fps, "duration_s": round(s.duration, 3)} for s in sources},
        "clips": clips,
    }
    with (out / "truth.json").open("w", encoding="utf-8", newline="\n") as fh:
        json.dump(truth, fh, ensure_ascii=False, separators=(",", ":"))
        fh.write("\n")
    logger.info("composed %d scenes in %s", len(clips), clip_dir)
    return truth
