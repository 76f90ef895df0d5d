"""``arcface``: insightface recognition ONNX (e.g. buffalo_l's ``w600k_r50.onnx``) on onnxruntime.

Weights are NOT bundled and never downloaded: ``model`` is an ``.onnx`` file or an unpacked
insightface model pack folder (``buffalo_l`` holds ``w600k_r50.onnx``; other packs hold
``w600k_mbf.onnx`` / ``glintr100.onnx``). Get ``buffalo_l.zip`` from the insightface model zoo
(https://github.com/deepinsight/insightface/tree/master/model_zoo) and unzip it, e.g. to
``~/.insightface/models/buffalo_l`` (the SCRFD detector reads ``det_10g.onnx`` from the same folder).
No insightface import: only onnxruntime (and ``onnx`` to read the first graph nodes).

Alignment: the standard ArcFace 112x112 five-point template (insightface ``arcface_dst``: eye
centres, nose tip, mouth corners, in image order left -> right) fitted with a least-squares
similarity (Umeyama, :func:`stage1_face_extraction.align.similarity_transform`: the same estimate as
insightface's ``skimage`` ``SimilarityTransform``). Faces without usable landmarks (NaN rows,
detectors without points) get landmarks guessed from the box with the mean MTCNN positions
(:data:`stage1_face_extraction.align.TEMPLATE_UV`), which is right for upright frontal faces only.

Input normalisation, as insightface's ``ArcFaceONNX``: ``(x - 127.5) / 127.5`` in **RGB** order.
insightface reads frames with OpenCV (BGR) and its ``cv2.dnn.blobFromImages(..., swapRB=True)``
turns them into RGB, so the network sees RGB; our frames are RGB already and are fed unchanged. Old
mxnet-converted graphs that normalise inside (a ``Sub`` and a ``Mul`` node among the first 8) get
raw 0..255 pixels (insightface's own rule); ``input_mean`` / ``input_std`` override both.

Threshold: ArcFace (w600k_r50) verification thresholds are usually quoted at cosine ~0.28-0.4;
:attr:`ArcFaceEmbedder.distance_threshold` = 1.1 on unit vectors (cosine >= 0.395) is the
conservative end, chosen for clustering a few people per dialogue. Not measured here (no weights
offline): tune it per corpus.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from ..align import TEMPLATE_UV, similarity_transform, warp_crop
from ..common.config import ConfigError
from ..common.local_weights import LocalWeights, Place, WeightCheck
from ..onnx_pack import resolve_pack_file
from .base import FaceEmbedder, register_embedder

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "~/.insightface/models/buffalo_l"
_PREFERRED_FILES = ("w600k_r50.onnx", "glintr100.onnx", "w600k_mbf.onnx")
_NON_RECOGNITION_PREFIXES = ("det_", "1k3d68", "2d106det", "genderage", "scrfd")

#: insightface's ``arcface_dst``: landmarks in a 112x112 crop (left eye, right eye, nose,
#: left mouth corner, right mouth corner, as seen in the image).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
INPUT_SIZE = 112

def resolve_model_file(model: str | os.PathLike) -> Path:
    """``model`` as an .onnx file: a file path, or a pack folder holding w600k_r50.onnx (or exactly one
    recognition-looking ``.onnx``). Raises FileNotFoundError naming the path and where to get buffalo_l."""
    return resolve_pack_file(
        model, _PREFERRED_FILES,
        lambda d: [f for f in sorted(d.glob("*.onnx")) if not f.name.startswith(_NON_RECOGNITION_PREFIXES)],
        "ArcFace", "recognition",
    )


def box_landmarks(box: np.ndarray) -> np.ndarray:
    """(5, 2) landmarks guessed from an MTCNN-like box with the mean MTCNN positions (upright faces)."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, np.float64)[:4])
    return np.array([x1, y1]) + TEMPLATE_UV * np.array([max(x2 - x1, 1.0), max(y2 - y1, 1.0)])


def arcface_matrix(landmarks: np.ndarray | None, box: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Source -> crop (2, 3) affine mapping the 5 landmarks (or box-guessed ones) onto the ArcFace template."""
    lm = None if landmarks is None else np.asarray(landmarks, np.float64).reshape(-1, 2)
    if lm is None or lm.shape != (5, 2) or not np.isfinite(lm).all() or np.linalg.norm(lm[1] - lm[0]) <= 1.0:
        lm = box_landmarks(box)
    return similarity_transform(lm, ARCFACE_TEMPLATE * (size / 112.0))


def arcface_crop(
    image: np.ndarray, landmarks: np.ndarray | None, box: np.ndarray, size: int = INPUT_SIZE
) -> np.ndarray:
    """(size, size, 3) uint8 ArcFace-aligned crop of ``image`` (RGB in, RGB out)."""
    m = arcface_matrix(landmarks, box, size)
    return warp_crop(image, m, (size, size), border="constant", interpolation=cv2.INTER_LINEAR).astype(np.uint8)


def _normalises_inside(model_file: Path) -> bool:
    """insightface's rule: a Sub and a Mul node among the first 8 -> the graph normalises itself."""
    import onnx

    graph = onnx.load(str(model_file), load_external_data=False).graph
    names = [n.name for n in graph.node[:8]]
    has_sub = any(n.startswith(("Sub", "_minus")) for n in names)
    has_mul = any(n.startswith(("Mul", "_mul")) for n in names)
    return has_sub and has_mul


@register_embedder("arcface")
class ArcFaceEmbedder(FaceEmbedder):
    """insightface ArcFace recognition graph (512-d for w600k_r50).

    Args:
        model: .onnx file or model pack folder (default ``~/.insightface/models/buffalo_l``).
        device: 'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when onnxruntime has it).
        input_mean, input_std: override the pixel normalisation (default: insightface's rule).
        batch_size: faces per run (graphs with a fixed batch of 1 are run face by face).
    """

    @classmethod
    def local_weights(cls, cfg: dict, place: Place, key: str) -> LocalWeights:
        """The recognition .onnx file of ``model`` (a pack folder or the file)."""
        path = resolve_model_file(place.path(cfg.get("model", DEFAULT_MODEL)))
        return LocalWeights([WeightCheck("OK", f"arcface: {path}")])

    dim = 512
    distance_threshold = 1.1  # on unit vectors: cosine >= 0.395 (module docstring)

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        device: str = "cpu",
        input_mean: float | None = None,
        input_std: float | None = None,
        batch_size: int = 32,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if input_std is not None and input_std <= 0:
            raise ConfigError(f"input_std must be > 0, got {input_std}")
        self.model_file = resolve_model_file(model)
        import onnxruntime as ort

        available = ort.get_available_providers()
        if device == "auto":
            device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in available:
                raise ConfigError(f"device={device!r} but onnxruntime has no CUDA provider ({available})")
            dev_id = int(device.split(":")[1]) if ":" in device else 0
            providers = [("CUDAExecutionProvider", {"device_id": dev_id}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        self.device = device
        inside = _normalises_inside(self.model_file)
        self.input_mean = float(input_mean if input_mean is not None else (0.0 if inside else 127.5))
        self.input_std = float(input_std if input_std is not None else (1.0 if inside else 127.5))
        self._session = ort.InferenceSession(str(self.model_file), providers=providers)
        inp = self._session.get_inputs()[0]
        outs = self._session.get_outputs()
        if len(outs) != 1:
            raise ValueError(f"{self.model_file}: an ArcFace graph has one output, this one has {len(outs)}")
        shape = list(inp.shape)
        if len(shape) != 4 or shape[1] != 3:
            raise ValueError(f"{self.model_file}: expected an (N, 3, H, W) input, got {shape}")
        h, w = shape[2], shape[3]
        if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
            if h != w:
                raise ValueError(f"{self.model_file}: expected a square input, got {w}x{h}")
            self.input_size = int(h)
        else:
            self.input_size = INPUT_SIZE
        self._fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.batch_size = int(self._fixed_batch or batch_size)
        out_dim = outs[0].shape[-1]
        if isinstance(out_dim, int) and out_dim > 0 and out_dim != type(self).dim:
            self.dim = int(out_dim)  # instance attribute: e.g. 128-d research graphs
        self._input_name = inp.name
        self._output_name = outs[0].name
        logger.debug("ArcFace %s on %s, input %d, mean %.1f std %.1f", self.model_file, providers[0],
                     self.input_size, self.input_mean, self.input_std)

    def crops(self, images: list[np.ndarray], boxes: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB crops aligned to the ArcFace template (S = the graph's input size)."""
        out = np.zeros((len(images), self.input_size, self.input_size, 3), np.uint8)
        for i, (im, b) in enumerate(zip(images, boxes)):
            out[i] = arcface_crop(im, None if landmarks is None else landmarks[i], b, self.input_size)
        return out

    def preprocess(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB -> (N, 3, S, S) float32 ``(x - input_mean) / input_std``."""
        return ((crops.astype(np.float32) - self.input_mean) / self.input_std).transpose(0, 3, 1, 2).copy()

    def _embed(self, images: list[np.ndarray], boxes: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
        x = self.preprocess(self.crops(images, boxes, landmarks))
        out = []
        for s in range(0, len(x), self.batch_size):
            y = self._session.run([self._output_name], {self._input_name: x[s : s + self.batch_size]})[0]
            out.append(np.asarray(y, np.float32).reshape(len(x[s : s + self.batch_size]), -1))
        return np.concatenate(out)
