"""YuNet face detector (libfacedetection's ONNX model) through OpenCV's ``cv2.FaceDetectorYN``.

Weights are NOT bundled and never downloaded: ``model`` is a local ``.onnx`` file, e.g.
``yunet_n_640_640.onnx`` or ``yunet_s_640_640.onnx`` from the ``onnx/`` folder of
ShiqiYu/libfacedetection.train (``../shared/models/yunet/`` in this workplace). A missing file
raises FileNotFoundError naming it.

OpenCV resizes nothing: the detector runs on the (``downscale``-resized) frame itself, its input
size set to the frame's (``setInputSize``), so one instance serves every frame size. Output per
face, in that frame's pixels::

    faces: (N, 15) float32 = x, y, w, h, 5 landmarks (x, y each), score

The landmarks (the person's right eye, left eye, nose tip, right and left mouth corners, i.e.
image-left eye first) are in MTCNN's order already, so :mod:`stage1_face_extraction.align` and
the ASD crops take them unchanged (``tests/test_detectors.py`` checks them against MTCNN's on a
real face). YuNet sees BGR; frames come in RGB and are flipped here.

Speed (2 CPU cores, 640x360 frames): a few ms per frame for ``yunet_n``; ``benchmarks/
stage1_real_scenes.py`` with ``stage1.detector.name: yunet`` compares it with ``mtcnn`` on real
footage (benchmarks/README.md "Face detectors on real footage").
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import cv2
import numpy as np

from ..common.config import ConfigError
from ..records import Detections
from .base import FaceDetector, register_detector

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "models/yunet_n_640_640.onnx"


@register_detector("yunet")
class YuNetDetector(FaceDetector):
    """``cv2.FaceDetectorYN`` over each frame of a batch (OpenCV runs one image per call).

    Args (besides :class:`FaceDetector`'s):
        model: path of the YuNet ``.onnx`` file.
        nms_threshold: IoU above which overlapping boxes are suppressed.
        top_k: most candidates kept before NMS.
        threads: OpenCV threads for the detector's calls (None: leave OpenCV's setting).
    """

    gives_landmarks = True

    def __init__(
        self,
        *,
        model: str | os.PathLike = DEFAULT_MODEL,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        threads: int | None = None,
        **base,
    ) -> None:
        super().__init__(**base)
        path = Path(os.path.expanduser(str(model)))
        if not path.is_file():
            raise FileNotFoundError(
                f"YuNet model file not found: {path} (set stage1.detector.model to a local yunet_*.onnx, "
                "e.g. from the onnx/ folder of ShiqiYu/libfacedetection.train)"
            )
        if not 0.0 < nms_threshold < 1.0:
            raise ConfigError(f"nms_threshold must be in (0, 1), got {nms_threshold}")
        if top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {top_k}")
        if self.device not in ("auto", "cpu"):
            raise ConfigError(f"the yunet detector runs on the CPU (OpenCV DNN), got device={self.device!r}")
        self.device = "cpu"
        self.model_file = path
        self.nms_threshold = float(nms_threshold)
        self.top_k = int(top_k)
        self.threads = threads
        # A low internal threshold: FaceDetector's min_score filter applies the configured one.
        self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), 0.3, self.nms_threshold, self.top_k)
        self._size: tuple[int, int] = (320, 320)
        self._lock = threading.Lock()  # one cv2 detector object: calls are serialised
        logger.debug("YuNet %s", path)

    def _detect_batch(self, images: np.ndarray) -> list[Detections]:
        """(B, H, W, 3) uint8 RGB -> B Detections in those images' pixels."""
        out = []
        h, w = images.shape[1:3]
        with self._lock:
            if self._size != (w, h):
                self._net.setInputSize((w, h))
                self._size = (w, h)
            prev = cv2.getNumThreads()
            if self.threads is not None:
                cv2.setNumThreads(int(self.threads))
            try:
                for img in images:
                    _, faces = self._net.detect(np.ascontiguousarray(img[..., ::-1]))
                    out.append(self._to_detections(faces))
            finally:
                if self.threads is not None:
                    cv2.setNumThreads(prev)
        return out

    @staticmethod
    def _to_detections(faces: np.ndarray | None) -> Detections:
        """(N, 15) YuNet rows -> Detections (boxes x1 y1 x2 y2, scores, (N, 5, 2) landmarks)."""
        if faces is None or len(faces) == 0:
            return Detections.empty(True)
        f = np.asarray(faces, np.float32).reshape(-1, 15)
        boxes = np.stack([f[:, 0], f[:, 1], f[:, 0] + f[:, 2], f[:, 1] + f[:, 3]], axis=1)
        lm = f[:, 4:14].reshape(-1, 5, 2)
        return Detections(boxes=boxes, scores=np.clip(f[:, 14], 0.0, 1.0), landmarks=lm)
