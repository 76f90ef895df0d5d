"""SCRFD face detector (insightface's ``det_10g.onnx`` / ``det_500m.onnx``) on onnxruntime.

Weights are NOT bundled and never downloaded: point ``model`` at an unpacked insightface model
pack folder (``buffalo_l`` holds ``det_10g.onnx``) or at an ``.onnx`` file. Get buffalo_l from
the insightface model zoo (https://github.com/deepinsight/insightface/tree/master/model_zoo,
``buffalo_l.zip``) and unzip it, e.g. to ``~/.insightface/models/buffalo_l``.

The graph is decoded here (no insightface import): the model sees a letterboxed
``input_size`` image normalised as ``(rgb - 127.5) / 128`` and emits, per stride, scores,
box distances and (optionally) 5-point landmark offsets in units of the stride:

    outputs = [score_s for s in strides] + [bbox_s ...] + [kps_s ...]   # kps only if present
    score_s: (N_s, 1)  bbox_s: (N_s, 4)  kps_s: (N_s, 10)   (a leading batch dim of 1 is allowed)
    N_s = (H / s) * (W / s) * num_anchors, anchors of a cell are consecutive rows

6 or 9 outputs -> strides (8, 16, 32) with 2 anchors; 10 or 15 -> (8, 16, 32, 64, 128), 1 anchor.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from ..common.config import ConfigError
from ..common.local_weights import LocalWeights, Place, WeightCheck
from ..onnx_pack import resolve_pack_file
from ..records import Detections
from .base import FaceDetector, register_detector

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "~/.insightface/models/buffalo_l"
_PREFERRED_FILES = ("det_10g.onnx", "det_2.5g.onnx", "det_500m.onnx", "scrfd_10g_bnkps.onnx")


def resolve_model_file(model: str | os.PathLike) -> Path:
    """``model`` as an .onnx file: a file path, or a pack folder holding det_10g.onnx (or one
    ``det_*.onnx``). Raises FileNotFoundError naming the path and where to get buffalo_l."""
    return resolve_pack_file(
        model, _PREFERRED_FILES, lambda d: sorted(d.glob("det_*.onnx")) or sorted(d.glob("*scrfd*.onnx")),
        "SCRFD", "detector",
    )


def anchor_centers(height: int, width: int, stride: int, num_anchors: int) -> np.ndarray:
    """(height * width * num_anchors, 2) float32 (x, y) cell origins in input pixels, row-major,
    the ``num_anchors`` anchors of a cell consecutive."""
    ys, xs = np.mgrid[:height, :width]
    centers = (np.stack([xs, ys], axis=-1).reshape(-1, 2) * stride).astype(np.float32)
    if num_anchors > 1:
        centers = np.repeat(centers, num_anchors, axis=0)
    return centers


def distance2bbox(points: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """points (N, 2), dist (N, 4) left/top/right/bottom distances -> (N, 4) x1, y1, x2, y2."""
    return np.concatenate([points - dist[:, :2], points + dist[:, 2:4]], axis=1)


def distance2kps(points: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """points (N, 2), dist (N, 2K) offsets -> (N, K, 2) keypoints."""
    return points[:, None, :] + dist.reshape(len(dist), dist.shape[1] // 2, 2)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; boxes (N, 4), scores (N,) -> kept indices, best first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, np.int64)


def output_layout(n_outputs: int) -> tuple[tuple[int, ...], int, bool]:
    """(strides, num_anchors, has_kps) for an SCRFD graph with ``n_outputs`` outputs."""
    layouts = {
        6: ((8, 16, 32), 2, False),
        9: ((8, 16, 32), 2, True),
        10: ((8, 16, 32, 64, 128), 1, False),
        15: ((8, 16, 32, 64, 128), 1, True),
    }
    if n_outputs not in layouts:
        raise ValueError(f"not an SCRFD output layout: {n_outputs} outputs (expected 6, 9, 10 or 15)")
    return layouts[n_outputs]


def decode_outputs(
    outputs: list[np.ndarray],
    input_hw: tuple[int, int],
    score_threshold: float,
    nms_threshold: float = 0.4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """SCRFD raw outputs for ONE image -> boxes (N, 4), scores (N,), kps (N, 5, 2) | None,
    in the model input's pixels, after score threshold and NMS (best first)."""
    strides, num_anchors, has_kps = output_layout(len(outputs))
    fmc = len(strides)
    h_in, w_in = input_hw
    all_boxes, all_scores, all_kps = [], [], []
    for k, stride in enumerate(strides):
        scores = np.asarray(outputs[k], np.float32).reshape(-1)
        dist = np.asarray(outputs[k + fmc], np.float32).reshape(-1, 4) * stride
        centers = anchor_centers(h_in // stride, w_in // stride, stride, num_anchors)
        if len(centers) != len(scores):
            raise ValueError(
                f"stride {stride}: {len(scores)} scores for {len(centers)} anchors "
                f"(input {w_in}x{h_in}, {num_anchors} anchors per cell)"
            )
        pos = np.nonzero(scores >= score_threshold)[0]
        all_scores.append(scores[pos])
        all_boxes.append(distance2bbox(centers[pos], dist[pos]))
        if has_kps:
            kd = np.asarray(outputs[k + 2 * fmc], np.float32).reshape(len(scores), -1) * stride
            all_kps.append(distance2kps(centers[pos], kd[pos]))
    scores = np.concatenate(all_scores)
    boxes = np.concatenate(all_boxes).astype(np.float32)
    kps = np.concatenate(all_kps).astype(np.float32) if has_kps else None
    keep = nms(boxes, scores, nms_threshold)
    return boxes[keep], scores[keep], (kps[keep] if kps is not None else None)


@register_detector("scrfd")
class SCRFDDetector(FaceDetector):
    """SCRFD on onnxruntime (CUDA provider when ``device`` allows and onnxruntime has it).

    Args (besides :class:`FaceDetector`'s):
        model: buffalo_l-style folder or .onnx file (never downloaded).
        input_size: (width, height) the letterboxed frame is fitted into (a fixed-size graph
            overrides it).
        nms_threshold: IoU above which the weaker of two boxes is suppressed.

    Frames are run one by one (insightface's exported graphs have a batch of 1).
    """

    @classmethod
    def local_weights(cls, cfg: dict, place: Place, key: str) -> LocalWeights:
        """The SCRFD .onnx file of ``model`` (a pack folder or the file)."""
        path = resolve_model_file(place.path(cfg.get("model", DEFAULT_MODEL)))
        return LocalWeights([WeightCheck("OK", f"scrfd: {path}")])

    gives_landmarks = True

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        input_size: tuple[int, int] | list[int] = (640, 640),
        nms_threshold: float = 0.4,
        **base,
    ) -> None:
        super().__init__(**base)
        self.model_file = resolve_model_file(model)
        if len(input_size) != 2 or min(input_size) < 32:
            raise ConfigError(f"input_size must be (width, height) >= 32, got {input_size}")
        import onnxruntime as ort

        available = ort.get_available_providers()
        if self.device == "auto":
            self.device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
        if self.device.startswith("cuda"):
            if "CUDAExecutionProvider" not in available:
                raise ConfigError(f"device={self.device!r} but onnxruntime has no CUDA provider ({available})")
            dev_id = int(self.device.split(":")[1]) if ":" in self.device else 0
            providers = [("CUDAExecutionProvider", {"device_id": dev_id}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        self._session = ort.InferenceSession(str(self.model_file), providers=providers)
        inp = self._session.get_inputs()[0]
        self._input_name = inp.name
        self._output_names = [o.name for o in self._session.get_outputs()]
        output_layout(len(self._output_names))  # fails early on a non-SCRFD graph
        h, w = inp.shape[2], inp.shape[3]
        if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
            self.input_size = (w, h)
        else:
            self.input_size = (int(input_size[0]), int(input_size[1]))
        self.nms_threshold = float(nms_threshold)
        logger.debug("SCRFD %s on %s, input %s", self.model_file, providers[0], self.input_size)

    def _letterbox(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """(h, w, 3) uint8 -> (1, 3, H_in, W_in) float32 blob and the resize scale."""
        w_in, h_in = self.input_size
        h, w = image.shape[:2]
        scale = min(w_in / w, h_in / h)
        nw, nh = max(1, int(w * scale)), max(1, int(h * scale))
        canvas = np.zeros((h_in, w_in, 3), np.uint8)
        canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        blob = (canvas.astype(np.float32) - 127.5) / 128.0
        return blob.transpose(2, 0, 1)[None], scale

    def _detect_batch(self, images: np.ndarray) -> list[Detections]:
        # images: (B, h, w, 3) uint8 RGB
        out = []
        w_in, h_in = self.input_size
        for img in images:
            blob, scale = self._letterbox(img)
            raw = self._session.run(self._output_names, {self._input_name: blob})
            boxes, scores, kps = decode_outputs(raw, (h_in, w_in), self.min_score, self.nms_threshold)
            out.append(
                Detections(
                    boxes=boxes / scale,
                    scores=scores,
                    landmarks=(kps / scale) if kps is not None else None,
                )
            )
        return out
