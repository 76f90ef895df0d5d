"""MTCNN face detector: boxes, scores and 5 landmarks, batched over frames.

The P/R/O-Net weights ship inside facenet-pytorch (``facenet_pytorch/data/{p,r,o}net.pt``), so
this works offline. Two engines run the same three-stage cascade with those weights:

* ``engine="fast"`` (default): this module's batched cascade. Candidate crops for R-Net and
  O-Net are area-resized with OpenCV from the uint8 frames on the CPU (one
  ``torchvision.ops.roi_align`` call on a GPU) instead of one torch interpolate call per crop,
  R/O-Net run in channels-last memory layout (2-3x faster convolutions on CPU), and NMS is
  torchvision's batched NMS. Boxes agree with facenet-pytorch's to within a few pixels.
* ``engine="facenet"``: ``facenet_pytorch.MTCNN(keep_all=True).detect(batch, landmarks=True)``,
  the reference implementation (slower on busy frames).

Cascade, per batch of equal-size frames (B, 3, H, W):

1. P-Net on an image pyramid (scales 12/min_size * factor^k while the short side >= 12 px);
   cells scoring >= thresholds[0] become 12x12 boxes (stride 2) in frame pixels; NMS 0.5 per
   scale, then 0.7 across scales; box regression; boxes squared.
2. R-Net on 24x24 crops: score >= thresholds[1], NMS 0.7, regression, squared.
3. O-Net on 48x48 crops: score >= thresholds[2], 5 landmarks, regression, NMS 0.7 on
   intersection-over-minimum-area.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..common.config import ConfigError
from ..common.local_weights import LocalWeights, Place, WeightCheck
from ..records import Detections
from .base import FaceDetector, register_detector, resolve_torch_device

logger = logging.getLogger(__name__)

ENGINES = ("fast", "facenet")


def _as_float(a, shape: tuple[int, ...]) -> np.ndarray:
    """facenet-pytorch under numpy 2 hands back object arrays: make them float32 ``shape``."""
    return np.asarray(np.asarray(a, dtype=object).tolist(), dtype=np.float32).reshape(shape)


def _load_nets(device: str) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """facenet-pytorch's P/R/O-Nets with the bundled weights (``weights_only`` loading)."""
    import facenet_pytorch
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    data = os.path.join(os.path.dirname(facenet_pytorch.__file__), "data")
    nets = []
    for cls, fname in ((PNet, "pnet.pt"), (RNet, "rnet.pt"), (ONet, "onet.pt")):
        path = os.path.join(data, fname)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"MTCNN weights not found: {path} (reinstall facenet-pytorch)")
        net = cls(pretrained=False)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        nets.append(net.to(device).eval())
    return nets[0], nets[1], nets[2]


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """(K, 4) boxes -> squares with the same centre and side max(w, h)."""
    wh = boxes[:, 2:] - boxes[:, :2]
    side = wh.max(dim=1, keepdim=True).values
    c = boxes[:, :2] + wh / 2
    return torch.cat([c - side / 2, c + side / 2], dim=1)


def _regress(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """Apply (K, 4) corner offsets given in box-size units to (K, 4) boxes."""
    wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    return boxes + reg * wh


def _nms_min(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy NMS on intersection over the SMALLER box's area; returns kept indices."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = (np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0])).clip(0)
        ih = (np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1])).clip(0)
        iom = iw * ih / np.maximum(np.minimum(areas[i], areas[rest]), 1e-9)
        order = rest[iom <= threshold]
    return np.asarray(keep, np.int64)


def _cv2_crops(images: np.ndarray, boxes: np.ndarray, bidx: np.ndarray, size: int) -> np.ndarray:
    """(B, H, W, 3) uint8 frames, (K, 4) boxes of frames ``bidx`` -> (K, size, size, 3) uint8
    area-resized crops; box parts outside the frame are black."""
    H, W = images.shape[1:3]
    out = np.zeros((len(boxes), size, size, 3), np.uint8)
    ib = np.round(boxes).astype(np.int64)
    for k in range(len(ib)):
        x1, y1, x2, y2 = ib[k]
        if x2 <= x1 or y2 <= y1:
            continue
        cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, W), min(y2, H)
        if cx2 <= cx1 or cy2 <= cy1:
            continue
        patch = images[bidx[k], cy1:cy2, cx1:cx2]
        if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
            patch = cv2.copyMakeBorder(
                patch, cy1 - y1, y2 - cy2, cx1 - x1, x2 - cx2, cv2.BORDER_CONSTANT, value=(0, 0, 0)
            )
        out[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return out


class MTCNNCascade:
    """Batched MTCNN cascade on facenet-pytorch's nets (see module doc)."""

    def __init__(
        self,
        *,
        min_size: float = 20.0,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        device: str = "cpu",
        channels_last: bool = True,
        chunk: int = 512,
        crop_backend: str = "auto",
    ) -> None:
        if crop_backend not in ("auto", "cv2", "roi_align"):
            raise ValueError(f"crop_backend must be auto, cv2 or roi_align, got {crop_backend!r}")
        self.min_size = float(min_size)
        self.thresholds = [float(t) for t in thresholds]
        self.factor = float(factor)
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.chunk = chunk
        # 'auto': OpenCV crops from the uint8 frames on the CPU, roi_align on an accelerator
        self.crop_backend = crop_backend
        self.pnet, self.rnet, self.onet = _load_nets(device)
        if channels_last:
            for net in (self.pnet, self.rnet, self.onet):
                net.to(memory_format=torch.channels_last)

    def scales(self, h: int, w: int) -> list[float]:
        """Pyramid scales: the first maps a min_size face to P-Net's 12 px window."""
        m = 12.0 / self.min_size
        out, s = [], m
        while min(h, w) * s >= 12.0:
            out.append(s)
            s *= self.factor
        return out

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _run(self, net: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Net forward in chunks (memory bound); returns the concatenated outputs."""
        outs = [net(self._layout(x[i : i + self.chunk])) for i in range(0, len(x), self.chunk)]
        return tuple(torch.cat(parts) for parts in zip(*outs))

    def _crops(
        self, x: torch.Tensor, images: np.ndarray, boxes: torch.Tensor, bidx: torch.Tensor, size: int
    ) -> torch.Tensor:
        """(K, 3, size, size) normalised crops of ``boxes`` (outside the frame = black).

        On the CPU each crop is cut from the uint8 frame and area-resized with OpenCV (as the
        original MTCNN does; ~3x faster than roi_align with adaptive sampling); elsewhere one
        ``roi_align`` call on the device does the whole batch.
        """
        backend = self.crop_backend
        if backend == "auto":
            backend = "cv2" if self.device.type == "cpu" else "roi_align"
        if backend == "cv2":
            crops = _cv2_crops(images, boxes.cpu().numpy(), bidx.cpu().numpy(), size)  # (K, size, size, 3)
            out = torch.from_numpy(crops).to(self.device).permute(0, 3, 1, 2).float()
        else:
            from torchvision.ops import roi_align

            rois = torch.cat([bidx[:, None].to(boxes.dtype), boxes], dim=1)
            out = roi_align(x, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=2, aligned=True)
        return (out - 127.5) * 0.0078125

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """images (B, H, W, 3) uint8 RGB -> per image (boxes (n, 4), scores (n,), landmarks (n, 5, 2))."""
        B, H, W = images.shape[:3]
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().contiguous()  # (B, 3, H, W) in 0..255, NCHW (pyramid)
        empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
        boxes, scores, bidx = self._stage1(x, H, W)
        if boxes.numel():
            boxes, scores, bidx = self._stage2(x, images, boxes, bidx)
        if not boxes.numel():
            return [empty] * B
        boxes, scores, bidx, lms = self._stage3(x, images, boxes, bidx)
        boxes, scores, bidx, lms = (t.cpu().numpy() for t in (boxes, scores, bidx, lms))
        out = []
        for b in range(B):
            sel = np.nonzero(bidx == b)[0]
            if sel.size == 0:
                out.append(empty)
                continue
            keep = sel[_nms_min(boxes[sel], scores[sel], 0.7)]
            out.append((boxes[keep].astype(np.float32), scores[keep].astype(np.float32), lms[keep].astype(np.float32)))
        return out

    def _stage1(self, x: torch.Tensor, H: int, W: int):
        from torchvision.ops import batched_nms

        all_boxes, all_scores, all_reg, all_b = [], [], [], []
        for s in self.scales(H, W):
            hs, ws = int(H * s + 1), int(W * s + 1)
            im = F.interpolate(x, size=(hs, ws), mode="area")
            reg, prob = self.pnet(self._layout((im - 127.5) * 0.0078125))  # (B, 4, h, w), (B, 2, h, w)
            b, yy, xx = torch.nonzero(prob[:, 1] >= self.thresholds[0], as_tuple=True)
            if b.numel() == 0:
                continue
            score = prob[b, 1, yy, xx]
            cell = torch.stack([xx, yy], dim=1).to(x.dtype)  # (K, 2) x, y cell index
            boxes = torch.cat([torch.floor((2 * cell + 1) / s), torch.floor((2 * cell + 12) / s)], dim=1)
            keep = batched_nms(boxes, score, b, 0.5)
            all_boxes.append(boxes[keep])
            all_scores.append(score[keep])
            all_reg.append(reg[b, :, yy, xx][keep])
            all_b.append(b[keep])
        if not all_boxes:
            z = x.new_zeros((0, 4))
            return z, x.new_zeros(0), torch.zeros(0, dtype=torch.long, device=x.device)
        boxes, scores = torch.cat(all_boxes), torch.cat(all_scores)
        reg, bidx = torch.cat(all_reg), torch.cat(all_b)
        keep = batched_nms(boxes, scores, bidx, 0.7)
        boxes = _square(_regress(boxes[keep], reg[keep]))
        return boxes, scores[keep], bidx[keep]

    def _stage2(self, x: torch.Tensor, images: np.ndarray, boxes: torch.Tensor, bidx: torch.Tensor):
        from torchvision.ops import batched_nms

        reg, prob = self._run(self.rnet, self._crops(x, images, boxes, bidx, 24))  # (K, 4), (K, 2)
        ok = prob[:, 1] >= self.thresholds[1]
        boxes, scores, reg, bidx = boxes[ok], prob[ok, 1], reg[ok], bidx[ok]
        keep = batched_nms(boxes, scores, bidx, 0.7)
        boxes = _square(_regress(boxes[keep], reg[keep]))
        return boxes, scores[keep], bidx[keep]

    def _stage3(self, x: torch.Tensor, images: np.ndarray, boxes: torch.Tensor, bidx: torch.Tensor):
        reg, lm, prob = self._run(self.onet, self._crops(x, images, boxes, bidx, 48))  # (K, 4), (K, 10), (K, 2)
        ok = prob[:, 1] >= self.thresholds[2]
        boxes, scores, reg, lm, bidx = boxes[ok], prob[ok, 1], reg[ok], lm[ok], bidx[ok]
        wh = boxes[:, 2:] - boxes[:, :2]
        lms = torch.stack(
            [boxes[:, 0:1] + wh[:, 0:1] * lm[:, :5], boxes[:, 1:2] + wh[:, 1:2] * lm[:, 5:]], dim=2
        )  # (K, 5, 2)
        return _regress(boxes, reg), scores, bidx, lms


@register_detector("mtcnn")
class MTCNNDetector(FaceDetector):
    """MTCNN with facenet-pytorch's weights, run on batches of equal-size frames.

    Args (besides :class:`FaceDetector`'s):
        thresholds: P-, R- and O-Net score thresholds (facenet-pytorch's default 0.6, 0.7, 0.7).
        factor: image pyramid scale step (0.709; larger = more scales, slower, more recall).
        engine: 'fast' (this module's batched cascade) or 'facenet' (facenet_pytorch.MTCNN).
        channels_last: run the nets in channels-last layout (engine 'fast' only).

    ``min_score`` defaults to 0.9 here: O-Net keeps candidates from 0.7, and at 0.7-0.9 these are
    mostly hands, glasses and other face-like clutter (insightface's t1.jpg has two at ~0.87).

    With ``downscale`` < 1 the pyramid starts at the model's 12 px window on the reduced frame,
    so the smallest face found is max(min_face_size, 12 / downscale) input pixels; that is
    where the speed-up comes from (MTCNN's cost is set by its pyramid, not the frame size).
    """

    weights_fix = "install facenet-pytorch (requirements/nodeps.txt)"

    @classmethod
    def local_weights(cls, cfg: dict, place: Place, key: str) -> LocalWeights:
        """facenet-pytorch's P-, R- and O-Net files, where the installed package keeps them."""
        import importlib.util

        spec = importlib.util.find_spec("facenet_pytorch")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("facenet-pytorch is not installed")
        data = Path(next(iter(spec.submodule_search_locations))) / "data"
        gone = [f for f in ("pnet.pt", "rnet.pt", "onet.pt") if not (data / f).is_file()]
        if gone:
            raise FileNotFoundError(f"MTCNN weights not found: {', '.join(str(data / f) for f in gone)}")
        return LocalWeights([WeightCheck("OK", f"mtcnn: weights in {data}")])

    gives_landmarks = True

    def __init__(
        self,
        *,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        engine: str = "fast",
        channels_last: bool = True,
        min_score: float = 0.9,
        **base,
    ) -> None:
        super().__init__(min_score=min_score, **base)
        if len(thresholds) != 3:
            raise ConfigError(f"thresholds needs 3 values (P, R, O nets), got {list(thresholds)}")
        if not 0.1 < factor < 1.0:
            raise ConfigError(f"factor must be in (0.1, 1), got {factor}")
        if engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        self.device = resolve_torch_device(self.device)
        self.thresholds = [float(t) for t in thresholds]
        self.factor = float(factor)
        self.engine = engine
        pyramid_min = max(12.0, self.detect_min_size)  # never upsample the (reduced) frame
        if engine == "fast":
            self._cascade = MTCNNCascade(
                min_size=pyramid_min,
                thresholds=self.thresholds,
                factor=self.factor,
                device=self.device,
                channels_last=channels_last,
            )
        else:
            from facenet_pytorch import MTCNN

            self._mtcnn = MTCNN(
                keep_all=True,
                min_face_size=pyramid_min,
                thresholds=self.thresholds,
                factor=self.factor,
                select_largest=False,
                post_process=False,
                device=self.device,
            ).eval()
        logger.debug("MTCNN (%s) on %s, pyramid min size %.1f px", engine, self.device, pyramid_min)

    def _detect_batch(self, images: np.ndarray) -> list[Detections]:
        # images: (B, h, w, 3) uint8 RGB
        if self.engine == "fast":
            return [Detections(boxes=b, scores=s, landmarks=lm) for b, s, lm in self._cascade(images)]
        boxes, probs, points = self._mtcnn.detect(images, landmarks=True)  # a 4-D array is a batch
        out = []
        for b, p, lm in zip(boxes, probs, points):
            if b is None or len(b) == 0:
                out.append(Detections.empty(True))
                continue
            n = len(b)
            out.append(
                Detections(boxes=_as_float(b, (n, 4)), scores=_as_float(p, (n,)), landmarks=_as_float(lm, (n, 5, 2)))
            )
        return out
