"""Plain data passed between the stage-1 steps (decode -> shots -> detect -> track -> asd -> select).

Everything here is numpy + dataclasses so each step can be tested without video files or models.
Coordinates are in SOURCE pixels of the decoded frame, boxes are ``[x1, y1, x2, y2]`` floats,
landmarks are the 5 MTCNN points in the order (left eye, right eye, nose, left mouth corner,
right mouth corner) as seen in the image, shape (5, 2) as (x, y).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class VideoInfo:
    """Stream facts of one clip."""

    path: str
    fps: float  # native average frame rate
    n_frames: int  # number of decoded video frames (exact after a full decode; estimate before)
    width: int
    height: int
    duration_s: float
    has_audio: bool
    rotation: int = 0  # degrees from display-matrix side data, already applied to decoded frames


@dataclass
class Frame:
    """One decoded video frame."""

    index: int  # 0-based index in decode order
    t: float  # presentation time in seconds on the clip time base (audio sample 0 = t 0.0)
    image: np.ndarray  # (H, W, 3) uint8 RGB


@dataclass
class Detections:
    """Faces found in one frame."""

    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2 in source pixels
    scores: np.ndarray  # (N,) float32 detector confidence in [0, 1]
    landmarks: np.ndarray | None = None  # (N, 5, 2) float32, None when the detector gives none

    @staticmethod
    def empty(with_landmarks: bool = True) -> Detections:
        return Detections(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            landmarks=np.zeros((0, 5, 2), np.float32) if with_landmarks else None,
        )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


@dataclass
class Track:
    """One face followed through consecutive frames of ONE shot.

    Arrays are aligned: row i describes frame ``frames[i]``; frames are consecutive integers.
    Rows that come from gap interpolation have ``detected[i] == False`` and score 0.
    """

    track_id: int
    shot_id: int
    frames: np.ndarray  # (T,) int64 source frame indices, consecutive
    boxes: np.ndarray  # (T, 4) float32, smoothed
    scores: np.ndarray  # (T,) float32 detector score (0 where interpolated)
    detected: np.ndarray  # (T,) bool
    landmarks: np.ndarray | None = None  # (T, 5, 2) float32 (NaN where unknown), None if never given
    speaking: np.ndarray | None = None  # (T,) float32 per-frame speaking score from the ASD scorer
    identity: str | None = None  # name matched by the identity step
    identity_score: float | None = None
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def start(self) -> int:
        return int(self.frames[0])

    @property
    def end(self) -> int:
        """Last frame index (inclusive)."""
        return int(self.frames[-1])

    def row_of(self, frame: int) -> int | None:
        """Row for source frame ``frame`` or None when the track is not there."""
        i = frame - self.start
        return i if 0 <= i < len(self) else None
