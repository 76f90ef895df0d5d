"""OpenCV Haar cascade face detector (no landmarks): a fast, model-free fallback.

Uses ``haarcascade_frontalface_default.xml`` from opencv-python(-headless) 4.x (``cv2.data``).
Scores come from the cascade's last-stage level weight ``w`` squashed to [0, 1] by
``sigmoid(w - 2)`` (w ~ 4..7 for clear frontal faces -> 0.9..0.99).
"""

from __future__ import annotations

import logging
import os

import cv2
import numpy as np

from ..common.config import ConfigError
from ..common.local_weights import LocalWeights, Place, WeightCheck
from ..records import Detections
from .base import FaceDetector, register_detector

logger = logging.getLogger(__name__)

DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"


def cascade_path(name: str = DEFAULT_CASCADE) -> str:
    """Full path of an OpenCV-bundled cascade file (or ``name`` itself when it is a path)."""
    if os.path.sep in name or os.path.isfile(name):
        return name
    base = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if base is None:
        raise FileNotFoundError(
            "this OpenCV build has no cv2.data.haarcascades (opencv 5 dropped them): "
            "install opencv-python-headless 4.x or pass cascade= a path to an XML cascade"
        )
    return os.path.join(base, name)


@register_detector("opencv_haar")
class HaarDetector(FaceDetector):
    """cv2.CascadeClassifier face detector; CPU only (``device`` other than cpu/auto is refused).

    Args (besides :class:`FaceDetector`'s; ``min_score`` defaults to 0 here):
        cascade: cascade XML file name in cv2.data.haarcascades, or a path.
        scale_factor, min_neighbors: ``detectMultiScale`` settings.
    """

    @classmethod
    def local_weights(cls, cfg: dict, place: Place, key: str) -> LocalWeights:
        """The cascade XML file."""
        path = cascade_path(cfg.get("cascade", DEFAULT_CASCADE))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Haar cascade not found: {path}")
        return LocalWeights([WeightCheck("OK", f"opencv_haar: {path}")])

    gives_landmarks = False

    def __init__(
        self,
        *,
        cascade: str = DEFAULT_CASCADE,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_score: float = 0.0,
        **base,
    ) -> None:
        super().__init__(min_score=min_score, **base)
        if self.device not in ("auto", "cpu"):
            raise ConfigError(f"opencv_haar runs on the CPU only, got device={self.device!r}")
        self.device = "cpu"
        if scale_factor <= 1.0:
            raise ConfigError(f"scale_factor must be > 1, got {scale_factor}")
        path = cascade_path(cascade)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Haar cascade not found: {path}")
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise ValueError(f"could not load a Haar cascade from {path}")
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)

    def _detect_batch(self, images: np.ndarray) -> list[Detections]:
        # images: (B, h, w, 3) uint8 RGB
        m = max(1, int(round(self.detect_min_size)))
        out = []
        for img in images:
            grey = cv2.equalizeHist(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))
            rects, _levels, weights = self._cascade.detectMultiScale3(
                grey,
                scaleFactor=self.scale_factor,
                minNeighbors=self.min_neighbors,
                minSize=(m, m),
                outputRejectLevels=True,
            )
            if len(rects) == 0:
                out.append(Detections.empty(False))
                continue
            r = np.asarray(rects, np.float32).reshape(-1, 4)  # x, y, w, h
            boxes = np.concatenate([r[:, :2], r[:, :2] + r[:, 2:]], axis=1)
            w = np.asarray(weights, np.float64).reshape(-1)
            scores = (1.0 / (1.0 + np.exp(-(w - 2.0)))).astype(np.float32)
            out.append(Detections(boxes=boxes, scores=scores, landmarks=None))
        return out
