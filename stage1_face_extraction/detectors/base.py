"""Face detector interface and registry.

Every detector takes a batch of RGB frames and returns one :class:`Detections` per frame with
boxes (and landmarks when it gives them) in the INPUT frame's pixels. The shared work lives
here: input checks, optional downscaling (detect on a resized frame, map results back),
grouping frames of equal size into batches, and the ``min_score`` / ``min_face_size`` filters.
A subclass only implements :meth:`FaceDetector._detect_batch` on equal-size images.

    @register_detector("my_detector")
    class MyDetector(FaceDetector):
        gives_landmarks = False
        def _detect_batch(self, images): ...

    det = create_detector("mtcnn", downscale=0.5, min_face_size=40)
    dets = det.detect([frame0, frame1])  # list[Detections]
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Sequence
from typing import ClassVar, TypeVar

import cv2
import numpy as np

from ..common.config import ConfigError
from ..common.local_weights import LocatesWeights
from ..common.registry import Registry
from ..records import Detections

logger = logging.getLogger(__name__)

__all__ = [
    "FaceDetector",
    "register_detector",
    "create_detector",
    "validate_detector",
    "list_detectors",
    "detector_class",
    "resolve_torch_device",
]

D = TypeVar("D", bound="type[FaceDetector]")


def register_detector(name: str) -> Callable[[D], D]:
    """Class decorator: make a :class:`FaceDetector` subclass available as ``name``."""
    return _REGISTRY.register(name)


def list_detectors() -> list[str]:
    """Registered detector names, sorted."""
    return _REGISTRY.names()


def detector_class(name: str) -> type[FaceDetector]:
    """The class registered as ``name``; unknown names raise with the valid ones."""
    return _REGISTRY.get(name)


def create_detector(name: str, **cfg) -> FaceDetector:
    """Build detector ``name`` with keyword config ``cfg``; unknown keys raise ConfigError."""
    return _REGISTRY.create(name, cfg)


def validate_detector(name: str, cfg: dict) -> None:
    """Check ``name`` is a registered detector and ``cfg`` its keys (ConfigError otherwise), building nothing."""
    _REGISTRY.validate(name, cfg)


def resolve_torch_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; anything else is returned as is."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class FaceDetector(LocatesWeights, abc.ABC):
    """Batched face detector: ``detect(list of (H, W, 3) uint8 RGB) -> list[Detections]``.

    Args:
        downscale: detect on frames resized by this factor in (0, 1] (results are mapped back to
            input pixels). Saves work in proportion to the pixels for fixed-input detectors
            (Haar, SCRFD); MTCNN's cost is mostly set by its pyramid, i.e. by ``min_face_size``
            (see :class:`~.mtcnn.MTCNNDetector`), so there it gains ~1.1-1.5x.
        min_score: drop detections scoring below this.
        min_face_size: smallest face, in INPUT pixels, to look for; boxes whose longer side is
            smaller are dropped.
        device: 'auto' (cuda when available), 'cpu', 'cuda', 'cuda:1', ...
        batch_size: frames per forward call (frames of equal size only are batched together).
    """

    weights_fix: ClassVar[str] = "unzip the insightface pack there and set stage1.detector.model, or use mtcnn"

    name: ClassVar[str] = ""
    gives_landmarks: ClassVar[bool] = False

    def __init__(
        self,
        *,
        downscale: float = 1.0,
        min_score: float = 0.5,
        min_face_size: int = 20,
        device: str = "auto",
        batch_size: int = 8,
    ) -> None:
        if not 0.0 < downscale <= 1.0:
            raise ConfigError(f"downscale must be in (0, 1], got {downscale}")
        if not 0.0 <= min_score <= 1.0:
            raise ConfigError(f"min_score must be in [0, 1], got {min_score}")
        if min_face_size < 1:
            raise ConfigError(f"min_face_size must be >= 1 pixel, got {min_face_size}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.downscale = float(downscale)
        self.min_score = float(min_score)
        self.min_face_size = int(min_face_size)
        self.device = device
        self.batch_size = int(batch_size)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(downscale={self.downscale}, min_score={self.min_score}, "
            f"min_face_size={self.min_face_size}, device={self.device!r}, batch_size={self.batch_size})"
        )

    # ------------------------------------------------------------------------------ public API

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """Faces in each frame. frames: list of (H, W, 3) uint8 RGB; sizes may differ."""
        frames = list(frames)
        for i, f in enumerate(frames):
            if not isinstance(f, np.ndarray) or f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
                desc = f"{f.shape} {f.dtype}" if isinstance(f, np.ndarray) else type(f).__name__
                raise ValueError(f"frame {i}: expected an (H, W, 3) uint8 RGB array, got {desc}")
        out: list[Detections | None] = [None] * len(frames)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, f in enumerate(frames):
            if f.shape[0] == 0 or f.shape[1] == 0:
                out[i] = Detections.empty(self.gives_landmarks)
            else:
                groups.setdefault(f.shape[:2], []).append(i)
        for (h, w), idx in groups.items():
            sw, sh = self._scaled_size(w, h)
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start : start + self.batch_size]
                batch = np.stack([self._resize(frames[i], sw, sh) for i in chunk])  # (B, sh, sw, 3)
                raw = self._detect_batch(batch)
                if len(raw) != len(chunk):
                    raise RuntimeError(f"{type(self).__name__} returned {len(raw)} results for {len(chunk)} frames")
                for i, det in zip(chunk, raw):
                    out[i] = self._postprocess(det, w / sw, h / sh, w, h)
        return out  # type: ignore[return-value]

    def detect_one(self, frame: np.ndarray) -> Detections:
        """Faces in one (H, W, 3) uint8 RGB frame."""
        return self.detect([frame])[0]

    # --------------------------------------------------------------------------- for subclasses

    @abc.abstractmethod
    def _detect_batch(self, images: np.ndarray) -> list[Detections]:
        """images: (B, h, w, 3) uint8 RGB, all the same size -> B Detections in those pixels.

        ``self.detect_min_size`` is the smallest face to look for, in these (scaled) pixels.
        Filtering by score/size and mapping back are done by the caller.
        """

    @property
    def detect_min_size(self) -> float:
        """``min_face_size`` in the pixels the model sees (after downscaling)."""
        return self.min_face_size * self.downscale

    # --------------------------------------------------------------------------------- helpers

    def _scaled_size(self, w: int, h: int) -> tuple[int, int]:
        if self.downscale == 1.0:
            return w, h
        return max(1, int(round(w * self.downscale))), max(1, int(round(h * self.downscale)))

    @staticmethod
    def _resize(image: np.ndarray, w: int, h: int) -> np.ndarray:
        if image.shape[1] == w and image.shape[0] == h:
            return image
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)

    def _postprocess(self, det: Detections, sx: float, sy: float, w: int, h: int) -> Detections:
        """Map from model pixels to input pixels, clip to the frame, filter, sort by score."""
        if len(det) == 0:
            return Detections.empty(self.gives_landmarks)
        boxes = det.boxes.astype(np.float32).reshape(-1, 4) * np.array([sx, sy, sx, sy], np.float32)
        scores = det.scores.astype(np.float32).reshape(-1)
        lms = None
        if det.landmarks is not None:
            lms = det.landmarks.astype(np.float32).reshape(-1, 5, 2) * np.array([sx, sy], np.float32)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        keep = (scores >= self.min_score) & (side >= self.min_face_size) & np.isfinite(boxes).all(1)
        order = np.argsort(-scores[keep], kind="stable")
        boxes, scores = boxes[keep][order], scores[keep][order]
        if lms is not None:
            lms = lms[keep][order]
        elif self.gives_landmarks:
            lms = np.full((len(boxes), 5, 2), np.nan, np.float32)
        return Detections(
            boxes=np.ascontiguousarray(boxes), scores=np.ascontiguousarray(scores), landmarks=lms
        )


_REGISTRY: Registry = Registry("face detector", "detectors", FaceDetector)
