"""``inception_resnet_v1``: facenet-pytorch's InceptionResnetV1 (FaceNet, 512-d) on aligned 160x160 crops.

Weights are NEVER downloaded. They come from, in this order:

* ``weights=PATH``: a state_dict file (safetensors, or torch with ``weights_only=True``),
  e.g. facenet-pytorch's ``20180402-114759-vggface2.pt``;
* ``pretrained='vggface2'`` (default) or ``'casia-webface'``: facenet-pytorch's own cache,
  ``$TORCH_HOME/checkpoints/20180402-114759-vggface2.pt`` / ``20180408-102900-casia-webface.pt``
  (``TORCH_HOME`` defaults to ``$XDG_CACHE_HOME/torch`` = ``~/.cache/torch``);
* ``random_init=True``: random weights, only when asked for explicitly (tests, demos; logs a
  warning). The embeddings then carry no identity information.

A missing file raises FileNotFoundError naming the file(s) looked for and the release URL to
fetch them from. The classifier head (``logits.*``, 8631 / 10575 training identities) in those
files is dropped; every other key must match exactly.

Input: per face, :func:`stage1_face_extraction.align.align_face` (5-point fit to the MTCNN
template, facenet-pytorch's 160 crop look; box crop when landmarks are missing), then
facenet-pytorch's ``fixed_image_standardization`` ``(rgb - 127.5) / 128``.

Threshold: FaceNet (VGGFace2) separates LFW pairs best at a euclidean distance of ~1.1-1.2 between
L2-normalised embeddings (Schroff et al. 2015 report 1.1 for their model; facenet-pytorch's LFW
evaluation lands in the same range). :attr:`InceptionResnetV1Embedder.distance_threshold` = 1.1,
i.e. cosine similarity >= 0.395. Not re-measured here (no weights offline): tune it per corpus.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..align import align_face
from ..common.config import ConfigError
from ..common.local_weights import LocalWeights, Place, WeightCheck, fmt_bytes
from ..common.weights import load_state_dict
from .base import FaceEmbedder, register_embedder

logger = logging.getLogger(__name__)

CHECKPOINTS = {
    "vggface2": "20180402-114759-vggface2.pt",
    "casia-webface": "20180408-102900-casia-webface.pt",
}
RELEASE_URL = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
INPUT_SIZE = 160


def torch_home() -> Path:
    """facenet-pytorch's cache root: ``$TORCH_HOME`` or ``$XDG_CACHE_HOME/torch`` (~/.cache/torch)."""
    return Path(
        os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")))
    )


def checkpoint_path(pretrained: str) -> Path:
    """Where facenet-pytorch caches the ``pretrained`` ('vggface2' | 'casia-webface') state_dict."""
    if pretrained not in CHECKPOINTS:
        raise ConfigError(f"pretrained must be one of {sorted(CHECKPOINTS)}, got {pretrained!r}")
    return torch_home() / "checkpoints" / CHECKPOINTS[pretrained]


def resolve_weights(weights: str | os.PathLike | None, pretrained: str) -> Path:
    """The state_dict file to load; FileNotFoundError naming what was looked for and where to get it."""
    p = Path(os.path.expanduser(str(weights))) if weights is not None else checkpoint_path(pretrained)
    if p.is_file():
        return p
    raise FileNotFoundError(
        f"InceptionResnetV1 weights not found: {p}. They are never downloaded: fetch "
        f"{RELEASE_URL}{CHECKPOINTS[pretrained]} (vggface2: {CHECKPOINTS['vggface2']}, casia-webface: "
        f"{CHECKPOINTS['casia-webface']}) on a machine with network and pass it as weights=PATH, or put it "
        f"in {torch_home() / 'checkpoints'} ($TORCH_HOME/checkpoints) and use pretrained='vggface2' or "
        f"'casia-webface'; random_init=True only for tests"
    )


def load_facenet(weights: str | os.PathLike | None = None, pretrained: str = "vggface2", random_init: bool = False):
    """facenet-pytorch ``InceptionResnetV1(classify=False)`` in eval mode, on the CPU, with the weights
    of :func:`resolve_weights` (``logits.*`` dropped, every other key must match) or, only when
    ``random_init`` and no ``weights`` are given, random ones (logged). ``.weights_file`` tells which."""
    from facenet_pytorch import InceptionResnetV1

    if pretrained not in CHECKPOINTS:
        raise ConfigError(f"pretrained must be one of {sorted(CHECKPOINTS)}, got {pretrained!r}")
    net = InceptionResnetV1(pretrained=None, classify=False)
    if random_init and weights is None:
        logger.warning("inception_resnet_v1 with RANDOM weights: outputs carry no identity (tests/demo only)")
        net.weights_file = None
    else:
        net.weights_file = resolve_weights(weights, pretrained)
        state = {k: v for k, v in load_state_dict(net.weights_file).items() if not k.startswith("logits.")}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{net.weights_file} is not an InceptionResnetV1 state_dict: {e}") from None
        logger.info("inception_resnet_v1: loaded %s", net.weights_file)
    return net.eval()


def facenet_weights(cfg: dict, place: Place) -> LocalWeights:
    """The weights file config ``cfg`` loads (embedder and feature extractor alike); random ones WARN."""
    if cfg.get("random_init") and cfg.get("weights") is None:
        return LocalWeights([WeightCheck(
            "WARN", "random_init: true (demo only): random InceptionResnetV1 weights, meaningless face features",
            "on real MELD set random_init: false and weights: models/20180402-114759-vggface2.pt",
            ".random_init")], dim=512)
    weights = cfg.get("weights")
    try:
        path = resolve_weights(None if weights is None else place.path(weights), cfg.get("pretrained", "vggface2"))
        found = WeightCheck("OK", f"inception_resnet_v1: {path} ({fmt_bytes(path.stat().st_size)})")
    except (FileNotFoundError, ValueError) as exc:
        found = WeightCheck("FAIL", str(exc), "fetch 20180402-114759-vggface2.pt (facenet-pytorch release) to "
                            "models/ and set weights", ".weights")
    return LocalWeights([found], dim=512)


@register_embedder("inception_resnet_v1")
class InceptionResnetV1Embedder(FaceEmbedder):
    """FaceNet InceptionResnetV1 (facenet-pytorch), 512-d.

    Args:
        weights: state_dict file (overrides ``pretrained``).
        pretrained: 'vggface2' or 'casia-webface': the file in facenet-pytorch's cache.
        random_init: random weights (explicit opt-in; the embeddings mean nothing).
        margin: aligned-crop margin in output pixels (facenet-pytorch MTCNN's ``margin``).
        device: 'cpu', 'cuda', 'cuda:N' or 'auto'.
        batch_size: faces per forward pass.
    """

    @classmethod
    def local_weights(cls, cfg: dict, place: Place, key: str) -> LocalWeights:
        return facenet_weights(cfg, place)

    dim = 512
    distance_threshold = 1.1  # on unit vectors: cosine >= 0.395 (module docstring)

    def __init__(
        self,
        *,
        weights: str | Path | None = None,
        pretrained: str = "vggface2",
        random_init: bool = False,
        margin: float = 0.0,
        device: str = "cpu",
        batch_size: int = 32,
    ) -> None:
        if pretrained not in CHECKPOINTS:
            raise ConfigError(f"pretrained must be one of {sorted(CHECKPOINTS)}, got {pretrained!r}")
        if not 0 <= margin < INPUT_SIZE:
            raise ConfigError(f"margin must be in [0, {INPUT_SIZE}), got {margin}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = str(device)
        self.margin = float(margin)
        self.batch_size = int(batch_size)
        self._net = load_facenet(weights, pretrained, random_init)
        self.weights_file = self._net.weights_file
        self._torch = torch
        self._net = self._net.to(self.device)

    def crops(self, images: list[np.ndarray], boxes: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
        """(N, 160, 160, 3) uint8 aligned RGB crops."""
        out = np.zeros((len(images), INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
        for i, (im, b) in enumerate(zip(images, boxes)):
            lm = None if landmarks is None else landmarks[i]
            out[i] = align_face(im, lm, b, size=INPUT_SIZE, margin=self.margin)
        return out

    @staticmethod
    def preprocess(crops: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float32, ``(x - 127.5) / 128``."""
        return ((crops.astype(np.float32) - 127.5) / 128.0).transpose(0, 3, 1, 2).copy()

    def _embed(self, images: list[np.ndarray], boxes: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
        torch = self._torch
        x = self.preprocess(self.crops(images, boxes, landmarks))
        out = []
        with torch.inference_mode():
            for s in range(0, len(x), self.batch_size):
                out.append(
                    self._net(torch.from_numpy(x[s : s + self.batch_size]).to(self.device)).float().cpu().numpy()
                )
        return np.concatenate(out).astype(np.float32)
