"""Streaming hard-cut (shot boundary) detection.

Each frame is shrunk to a small thumbnail and summarised by (a) a normalised HSV colour
histogram (hue x saturation, plus value) and (b) a tiny grey-level thumbnail (``grid`` x
``grid``). The distance between consecutive frames, in [0, 1], averages one minus histogram
intersection with the (scaled, clipped) mean absolute thumbnail difference: the histogram sees
content changes, the thumbnail sees layout changes that keep the colours (two camera angles on
the same set). Both stay small within a shot, even under camera drift, zoom or a moving mouth,
and jump together at a hard cut. A frame starts a new shot when its distance is

* above ``hard_threshold`` (always a cut), or
* above ``min_threshold`` AND above ``mean + k * std`` of the recent distances (adaptive: busy
  shots with large frame-to-frame changes need a bigger jump),

and the current shot is at least ``min_shot_len`` frames long (suppresses flashes/double cuts).
Gradual transitions (dissolves, fades) are not targeted.

    det = ShotDetector()
    shot_ids = [det.update(frame.image) for frame in iter_frames(path)]
    # or: shot_ids = detect_shots(frame.image for frame in iter_frames(path))

``ShotConfig.method`` picks the detector: ``internal`` (the above, :class:`ShotDetector`) or
PySceneDetect's ``AdaptiveDetector`` / ``ContentDetector`` (``scenedetect_adaptive`` /
``scenedetect_content``, :mod:`.shots_scenedetect`, package ``scenedetect-headless``, options in
``ShotConfig.scenedetect_adaptive`` / ``scenedetect_content``). Those report a cut a few frames
late, so they run through :func:`shot_stream`, which yields every frame with its shot id and holds
back only as many frames as the detector may look ahead (``ShotDetector`` refuses them)::

    for frame, shot_id in shot_stream(iter_frames(path), cfg):
        ...

``benchmarks/shots_quality.py`` scores the three on real footage with known cuts.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import cv2
import numpy as np

from .records import Frame

logger = logging.getLogger(__name__)

__all__ = [
    "SHOT_METHODS", "SceneDetectAdaptiveConfig", "SceneDetectContentConfig", "ShotConfig", "ShotDetector",
    "detect_shots", "shot_stream", "shot_boundaries", "frame_signature", "frame_distance",
]

SHOT_METHODS = ("internal", "scenedetect_adaptive", "scenedetect_content")

T = TypeVar("T")


@dataclass
class SceneDetectAdaptiveConfig:
    """PySceneDetect ``AdaptiveDetector`` options (``method: scenedetect_adaptive``).

    The library's defaults are adaptive_threshold 3, min_content_val 15, window_width 2,
    min_scene_len 15; these are the best of a small grid on the composed real-footage clips of
    ``benchmarks/shots_quality.py`` (its dev seeds), min_scene_len in frames like ours.
    """

    adaptive_threshold: float = 4.0  # a frame's content change / the mean of its neighbours' must reach this
    min_content_val: float = 8.0  # ... and its content change this (0-255 scale)
    window_width: int = 2  # neighbours each side; a cut is reported this many frames late
    min_scene_len: int = 4  # frames
    luma_only: bool = False
    downscale_width: int = 256  # frames wider than this are resized to it first, as scenedetect's SceneManager does

    def __post_init__(self) -> None:
        if self.window_width < 1 or self.min_scene_len < 0 or self.downscale_width < 16:
            raise ValueError("scenedetect_adaptive: window_width >= 1, min_scene_len >= 0, downscale_width >= 16")


@dataclass
class SceneDetectContentConfig:
    """PySceneDetect ``ContentDetector`` options (``method: scenedetect_content``).

    The library's defaults are threshold 27 and min_scene_len 15 (frames); a cut closer than that to
    the previous one is merged into it (its flash filter), reported up to min_scene_len frames late.
    """

    threshold: float = 27.0  # mean HSV change (0-255 scale) that makes a cut
    min_scene_len: int = 15  # frames
    luma_only: bool = False
    downscale_width: int = 256

    def __post_init__(self) -> None:
        if self.min_scene_len < 0 or self.downscale_width < 16:
            raise ValueError("scenedetect_content: min_scene_len >= 0 and downscale_width >= 16")


@dataclass
class ShotConfig:
    method: str = "internal"  # one of SHOT_METHODS; the fields below up to min_shot_len are internal's
    thumb_side: int = 96  # frames are area-resized so their longer side is this many pixels
    hue_bins: int = 16
    sat_bins: int = 8
    val_bins: int = 8
    grid: int = 32  # grey thumbnail side for the layout cue
    pixel_gain: float = 2.0  # mean |grey difference| (0..1) is multiplied by this, clipped to 1
    min_threshold: float = 0.20  # a cut needs at least this distance ...
    hard_threshold: float = 0.40  # ... and this much is always a cut
    k: float = 4.0  # ... or mean + k * std of the recent distances when that is higher
    window: int = 30  # recent distances used for the adaptive threshold
    min_shot_len: int = 4  # frames; a cut sooner than this after the previous one is ignored
    scenedetect_adaptive: SceneDetectAdaptiveConfig = field(default_factory=SceneDetectAdaptiveConfig)
    scenedetect_content: SceneDetectContentConfig = field(default_factory=SceneDetectContentConfig)

    def __post_init__(self) -> None:
        if self.method not in SHOT_METHODS:
            raise ValueError(f"shots.method must be one of {', '.join(SHOT_METHODS)}, got {self.method!r}")
        if not 0.0 <= self.min_threshold <= self.hard_threshold <= 1.0:
            raise ValueError("need 0 <= min_threshold <= hard_threshold <= 1")
        if self.thumb_side < 8 or self.grid < 2 or self.window < 2 or self.min_shot_len < 1:
            raise ValueError("thumb_side >= 8, grid >= 2, window >= 2 and min_shot_len >= 1 are required")


def _as_image(frame: np.ndarray | Frame) -> np.ndarray:
    return frame.image if isinstance(frame, Frame) else frame


def frame_signature(image: np.ndarray, cfg: ShotConfig) -> tuple[np.ndarray, np.ndarray]:
    """Summary of one (H, W, 3) uint8 RGB frame for :func:`frame_distance`.

    Returns ``(hist, thumb)``: hist (hue_bins*sat_bins + val_bins,) float32 summing to 2
    (two normalised histograms) and thumb (grid, grid) float32 grey levels in [0, 1].
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    scale = cfg.thumb_side / max(h, w)
    if scale < 1.0:
        image = cv2.resize(
            image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)  # H in [0, 180), S, V in [0, 256)
    hs = cv2.calcHist([hsv], [0, 1], None, [cfg.hue_bins, cfg.sat_bins], [0, 180, 0, 256]).ravel()
    v = cv2.calcHist([hsv], [2], None, [cfg.val_bins], [0, 256]).ravel()
    n = float(hsv.shape[0] * hsv.shape[1])
    hist = np.concatenate([hs, v]).astype(np.float32) / n
    grey = cv2.resize(hsv[..., 2], (cfg.grid, cfg.grid), interpolation=cv2.INTER_AREA)
    return hist, grey.astype(np.float32) / 255.0


def frame_distance(
    sig_a: tuple[np.ndarray, np.ndarray], sig_b: tuple[np.ndarray, np.ndarray], pixel_gain: float = 2.0
) -> float:
    """Distance in [0, 1] between two :func:`frame_signature` results (see module doc)."""
    hist_d = 1.0 - 0.5 * float(np.minimum(sig_a[0], sig_b[0]).sum())
    pix_d = min(1.0, pixel_gain * float(np.abs(sig_a[1] - sig_b[1]).mean()))
    return 0.5 * (hist_d + pix_d)


class ShotDetector:
    """Stateful cut detector: feed frames in order with :meth:`update`, get shot ids back."""

    def __init__(self, cfg: ShotConfig | None = None, **overrides) -> None:
        if cfg is None:
            cfg = ShotConfig(**overrides)
        elif overrides:
            raise TypeError("pass either cfg or keyword overrides, not both")
        if cfg.method != "internal":
            raise ValueError(
                f"ShotDetector is the internal method; shots.method {cfg.method!r} runs through shot_stream()"
            )
        self.cfg = cfg
        self.reset()

    def reset(self) -> None:
        self.shot_id = -1  # becomes 0 with the first frame
        self.n_frames = 0
        self._prev: tuple[np.ndarray, np.ndarray] | None = None
        self._since_cut = 0
        self._recent: deque[float] = deque(maxlen=self.cfg.window)
        self.last_distance = 0.0

    def update(self, frame: np.ndarray | Frame) -> int:
        """Shot id (0, 1, ...) of this frame, the next one in display order."""
        sig = frame_signature(_as_image(frame), self.cfg)
        self.n_frames += 1
        if self._prev is None:
            self._prev, self.shot_id, self._since_cut = sig, 0, 1
            return self.shot_id
        d = frame_distance(self._prev, sig, self.cfg.pixel_gain)
        self._prev = sig
        self.last_distance = d
        if self._is_cut(d):
            self.shot_id += 1
            self._since_cut = 1
            self._recent.clear()  # statistics of the old shot say nothing about the new one
            logger.debug("cut before frame %d (distance %.3f)", self.n_frames - 1, d)
        else:
            self._since_cut += 1
            self._recent.append(d)
        return self.shot_id

    def _is_cut(self, d: float) -> bool:
        cfg = self.cfg
        if self._since_cut < cfg.min_shot_len or d < cfg.min_threshold:
            return False
        if d >= cfg.hard_threshold or len(self._recent) < 2:
            return True
        recent = np.fromiter(self._recent, np.float64)
        return d > recent.mean() + cfg.k * recent.std()


def shot_stream(items: Iterable[T], cfg: ShotConfig | None = None) -> Iterator[tuple[T, int]]:
    """``(item, shot id)`` for every item of ``items`` (RGB arrays or :class:`Frame`), in order.

    With ``method: internal`` every item comes back as soon as it is read; the PySceneDetect methods
    hold back the few frames they may still put a cut before (``window_width`` frames for adaptive,
    ``min_scene_len`` for content).
    """
    cfg = cfg or ShotConfig()
    if cfg.method == "internal":
        det = ShotDetector(cfg)
        for item in items:
            yield item, det.update(item)
        return
    from .shots_scenedetect import SceneDetectShots

    sd = SceneDetectShots(cfg)
    held: deque[T] = deque()
    for item in items:
        held.append(item)
        for sid in sd.push(_as_image(item)):
            yield held.popleft(), sid
    for sid in sd.finish():
        yield held.popleft(), sid


def detect_shots(frames: Iterable[np.ndarray | Frame], cfg: ShotConfig | None = None, **overrides) -> list[int]:
    """Shot id for every frame of ``frames`` (RGB arrays or :class:`Frame`), consumed streaming."""
    if cfg is None:
        cfg = ShotConfig(**overrides)
    elif overrides:
        raise TypeError("pass either cfg or keyword overrides, not both")
    return [sid for _, sid in shot_stream(frames, cfg)]


def shot_boundaries(shot_ids: Iterable[int]) -> list[int]:
    """Positions where a new shot starts (always includes 0 for a non-empty sequence)."""
    out: list[int] = []
    prev = None
    for i, s in enumerate(shot_ids):
        if s != prev:
            out.append(i)
            prev = s
    return out
