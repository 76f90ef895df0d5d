"""Face detectors behind one registry: ``create_detector(name, **cfg)``.

Registered: ``mtcnn`` (default; facenet-pytorch, 5 landmarks, weights bundled), ``scrfd``
(insightface ONNX from a local folder, 5 landmarks) and ``opencv_haar`` (no landmarks).

    from stage1_face_extraction.detectors import create_detector, list_detectors
    det = create_detector("mtcnn", downscale=0.5, min_face_size=40)
    dets = det.detect(frames)  # list of (H, W, 3) uint8 RGB -> list[Detections]
"""

from __future__ import annotations

from .base import (
    FaceDetector,
    create_detector,
    detector_class,
    list_detectors,
    register_detector,
    resolve_torch_device,
)
from .haar import HaarDetector
from .mtcnn import MTCNNDetector
from .scrfd import SCRFDDetector
from .yunet import YuNetDetector

DEFAULT_DETECTOR = "mtcnn"

__all__ = [
    "DEFAULT_DETECTOR",
    "FaceDetector",
    "HaarDetector",
    "MTCNNDetector",
    "SCRFDDetector",
    "YuNetDetector",
    "create_detector",
    "detector_class",
    "list_detectors",
    "register_detector",
    "resolve_torch_device",
]
