"""Face tracks from per-frame detections: IoU association inside shots, gaps, smoothing.

    tracks = track_faces(dets_per_frame, frame_indices, shot_ids, TrackerConfig())

Inputs are aligned lists, one entry per listed frame (increasing source frame indices):

* ``dets_per_frame[i]``: :class:`Detections` of frame ``frame_indices[i]``, or ``None`` when the
  detector was not run on it (detection on a stride). A frame with an EMPTY Detections counts
  as a miss; ``None`` does not.
* ``shot_ids[i]``: the shot of that frame (from :mod:`.shots`). No track crosses a shot change.

Frames may be listed every frame (with ``None`` where detection was skipped) or only where
detection ran (indices with gaps): either way, each returned :class:`Track` covers every integer
frame from its first to its last detection, filling the frames in between by linear
interpolation of boxes and landmarks (``detected`` False, score 0).

Association is frame by frame, Hungarian on 1 - IoU (``scipy.optimize.linear_sum_assignment``)
between the live tracks' predicted boxes (constant velocity from their last two detections) and
the frame's detections, a pair accepted when IoU >= ``iou_threshold``. A track dies when it went
unmatched for more than ``max_gap`` frames (raised automatically to the typical detection
spacing - 1 so that a stride alone never breaks tracks). Tracks spanning fewer than
``min_track_len`` frames or with fewer than ``min_detections`` detections are dropped, and the
survivors' boxes are smoothed (centered moving average or Savitzky-Golay on centre and size).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .records import Detections, Track

logger = logging.getLogger(__name__)

__all__ = ["TrackerConfig", "track_faces", "iou_matrix", "smooth_boxes", "interpolate_track"]

SMOOTHING = ("none", "mean", "savgol")


@dataclass
class TrackerConfig:
    iou_threshold: float = 0.3  # min IoU between a track's predicted box and a detection
    max_gap: int = 10  # frames a track may go unmatched and still be bridged
    min_track_len: int = 5  # frames (span from first to last detection, inclusive)
    min_detections: int = 1  # real detections a track needs
    min_det_score: float = 0.0  # detections below are ignored
    smoothing: str = "mean"  # 'none', 'mean' (centered moving average) or 'savgol'
    smooth_window: int = 5  # frames, odd; <= 1 disables smoothing
    savgol_order: int = 2
    motion: bool = True  # predict boxes with the last velocity before matching

    def __post_init__(self) -> None:
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {self.iou_threshold}")
        if self.max_gap < 0 or self.min_track_len < 1 or self.min_detections < 1:
            raise ValueError("need max_gap >= 0, min_track_len >= 1 and min_detections >= 1")
        if self.smoothing not in SMOOTHING:
            raise ValueError(f"smoothing must be one of {', '.join(SMOOTHING)}, got {self.smoothing!r}")
        if self.smooth_window > 1 and self.smooth_window % 2 == 0:
            raise ValueError(f"smooth_window must be odd, got {self.smooth_window}")


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4), (M, 4) x1y1x2y2 boxes -> (N, M) intersection over union."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


@dataclass
class _Raw:
    """A track under construction: its real detections only."""

    shot_id: int
    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    landmarks: list[np.ndarray | None] = field(default_factory=list)

    def add(self, frame: int, box: np.ndarray, score: float, lm: np.ndarray | None) -> None:
        self.frames.append(frame)
        self.boxes.append(np.asarray(box, np.float32))
        self.scores.append(float(score))
        self.landmarks.append(None if lm is None else np.asarray(lm, np.float32))

    @property
    def last(self) -> int:
        return self.frames[-1]

    def predict(self, frame: int, motion: bool) -> np.ndarray:
        box = self.boxes[-1]
        if not motion or len(self.frames) < 2:
            return box
        dt = self.frames[-1] - self.frames[-2]
        velocity = (self.boxes[-1] - self.boxes[-2]) / max(dt, 1)
        return box + velocity * (frame - self.frames[-1])


def interpolate_track(raw_frames, raw_boxes, raw_scores, raw_landmarks):
    """Detections at (sorted, unique) frames -> every frame from first to last.

    Returns frames (T,) int64, boxes (T, 4) float32, scores (T,) float32 (0 where filled),
    detected (T,) bool, landmarks (T, 5, 2) float32 with NaN where unknown, or None when no
    detection had landmarks.
    """
    f = np.asarray(raw_frames, np.int64)
    frames = np.arange(f[0], f[-1] + 1, dtype=np.int64)
    det = np.zeros(len(frames), bool)
    det[f - f[0]] = True
    bx = np.asarray(raw_boxes, np.float64).reshape(-1, 4)
    boxes = np.stack([np.interp(frames, f, bx[:, k]) for k in range(4)], axis=1).astype(np.float32)
    scores = np.zeros(len(frames), np.float32)
    scores[f - f[0]] = np.asarray(raw_scores, np.float32)
    landmarks = None
    if any(lm is not None for lm in raw_landmarks):
        lm = np.stack(
            [np.full((5, 2), np.nan, np.float32) if x is None else x.reshape(5, 2) for x in raw_landmarks]
        ).reshape(len(f), 10).astype(np.float64)
        landmarks = np.full((len(frames), 10), np.nan)
        for k in range(10):
            ok = np.isfinite(lm[:, k])
            if ok.sum() == 0:
                continue
            vals = np.interp(frames, f[ok], lm[ok, k])
            # only fill between known points, never extrapolate flat beyond them
            inside = (frames >= f[ok][0]) & (frames <= f[ok][-1])
            landmarks[inside, k] = vals[inside]
        landmarks = landmarks.reshape(len(frames), 5, 2).astype(np.float32)
    return frames, boxes, scores, det, landmarks


def _moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Centered moving average along axis 0; the window shrinks symmetrically at the ends."""
    n = len(x)
    half = window // 2
    out = np.empty_like(x)
    c = np.concatenate([np.zeros((1,) + x.shape[1:]), np.cumsum(x, axis=0)])
    for i in range(n):
        h = min(half, i, n - 1 - i)
        out[i] = (c[i + h + 1] - c[i - h]) / (2 * h + 1)
    return out


def smooth_boxes(boxes: np.ndarray, cfg: TrackerConfig) -> np.ndarray:
    """(T, 4) x1y1x2y2 -> (T, 4) smoothed on centre (cx, cy) and size (w, h)."""
    if cfg.smoothing == "none" or cfg.smooth_window <= 1 or len(boxes) < 3:
        return boxes.astype(np.float32)
    b = boxes.astype(np.float64)
    cs = np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], axis=1)  # (T, 4) cx cy w h
    window = min(cfg.smooth_window, len(b) if len(b) % 2 else len(b) - 1)
    if cfg.smoothing == "mean":
        cs = _moving_average(cs, window)
    else:
        from scipy.signal import savgol_filter

        order = min(cfg.savgol_order, window - 1)
        cs = savgol_filter(cs, window, order, axis=0, mode="interp")
    cs[:, 2:] = np.clip(cs[:, 2:], 1e-3, None)
    out = np.concatenate([cs[:, :2] - cs[:, 2:] / 2, cs[:, :2] + cs[:, 2:] / 2], axis=1)
    return out.astype(np.float32)


def _effective_gap(frame_indices: np.ndarray, ran: np.ndarray, shot_ids: np.ndarray, max_gap: int) -> int:
    """max_gap, raised to (median spacing of detection-run frames within shots) - 1."""
    run = frame_indices[ran]
    shots = shot_ids[ran]
    if len(run) < 2:
        return max_gap
    d = np.diff(run)[shots[1:] == shots[:-1]]
    if d.size == 0:
        return max_gap
    return max(max_gap, int(np.median(d)) - 1)


def track_faces(
    dets_per_frame: Sequence[Detections | None],
    frame_indices: Sequence[int] | np.ndarray,
    shot_ids: Sequence[int] | np.ndarray | None = None,
    cfg: TrackerConfig | None = None,
) -> list[Track]:
    """Link per-frame detections into tracks (see module doc).

    Args:
        dets_per_frame: one :class:`Detections` or ``None`` (not run) per listed frame.
        frame_indices: (N,) increasing source frame indices of the listed frames.
        shot_ids: (N,) shot id of each listed frame; ``None`` = all one shot.
        cfg: :class:`TrackerConfig`.

    Returns:
        Tracks sorted by (start frame, first box x), ids 0..K-1, each inside one shot.
    """
    cfg = cfg or TrackerConfig()
    n = len(dets_per_frame)
    frames = np.asarray(frame_indices, np.int64).reshape(-1)
    shots = np.zeros(n, np.int64) if shot_ids is None else np.asarray(shot_ids, np.int64).reshape(-1)
    if len(frames) != n or len(shots) != n:
        raise ValueError(
            f"dets_per_frame ({n}), frame_indices ({len(frames)}) and shot_ids ({len(shots)}) differ in length"
        )
    if n and np.any(np.diff(frames) <= 0):
        raise ValueError("frame_indices must be strictly increasing")
    ran = np.array([d is not None for d in dets_per_frame], bool)
    max_gap = _effective_gap(frames, ran, shots, cfg.max_gap)

    finished: list[_Raw] = []
    live: list[_Raw] = []
    current_shot = None
    for i in range(n):
        frame, shot = int(frames[i]), int(shots[i])
        if shot != current_shot:  # a cut ends every live track
            finished.extend(live)
            live = []
            current_shot = shot
        dets = dets_per_frame[i]
        if dets is None:
            continue
        # retire tracks unmatched for too long
        still = [t for t in live if frame - t.last - 1 <= max_gap]
        finished.extend(t for t in live if frame - t.last - 1 > max_gap)
        live = still
        boxes = np.asarray(dets.boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(dets.scores, np.float32).reshape(-1)
        lms = None if dets.landmarks is None else np.asarray(dets.landmarks, np.float32).reshape(-1, 5, 2)
        keep = np.nonzero(scores >= cfg.min_det_score)[0]
        matched_dets: set[int] = set()
        if live and keep.size:
            pred = np.stack([t.predict(frame, cfg.motion) for t in live])
            last = np.stack([t.boxes[-1] for t in live])
            iou = np.maximum(iou_matrix(pred, boxes[keep]), iou_matrix(last, boxes[keep]))
            from scipy.optimize import linear_sum_assignment

            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols):
                if iou[r, c] >= cfg.iou_threshold:
                    j = int(keep[c])
                    live[r].add(frame, boxes[j], scores[j], None if lms is None else lms[j])
                    matched_dets.add(j)
        for j in keep:
            if int(j) not in matched_dets:
                t = _Raw(shot_id=shot)
                t.add(frame, boxes[j], scores[j], None if lms is None else lms[j])
                live.append(t)
    finished.extend(live)

    out: list[Track] = []
    for raw in finished:
        span = raw.frames[-1] - raw.frames[0] + 1
        if span < cfg.min_track_len or len(raw.frames) < cfg.min_detections:
            continue
        f, b, s, det, lm = interpolate_track(raw.frames, raw.boxes, raw.scores, raw.landmarks)
        out.append(
            Track(
                track_id=-1,
                shot_id=raw.shot_id,
                frames=f,
                boxes=smooth_boxes(b, cfg),
                scores=s,
                detected=det,
                landmarks=lm,
                extra={"raw_boxes": b},  # (T, 4) interpolated, before smoothing
            )
        )
    out.sort(key=lambda t: (t.start, float(t.boxes[0, 0])))
    for k, t in enumerate(out):
        t.track_id = k
    logger.debug("%d tracks from %d frames (%d dropped short)", len(out), n, len(finished) - len(out))
    return out
