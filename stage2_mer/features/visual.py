"""Visual (per-face-frame) extractors: ``inception_resnet_v1``, ``timm``, ``dlib_resnet``, ``arcface_onnx``.

Input: Stage-1 face crops of one utterance, ``(N, 160, 160, 3) uint8 RGB``
(:class:`stage1_face_extraction.store.FaceShardReader`). Output: ``(N, D) float32``, one row per
face frame, in frame order (FacialMMT: InceptionResNetV1, D = 512).

Weights are only ever read from local files (never downloaded); torch files are loaded with
``weights_only=True``; ONNX graphs run on onnxruntime.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from stage1_face_extraction.common.config import ConfigError
from stage1_face_extraction.common.local_weights import LocalWeights, Place, WeightCheck, fmt_bytes
from stage1_face_extraction.common.weights import load_state_dict
from stage1_face_extraction.identity.arcface import DEFAULT_MODEL as ARCFACE_DEFAULT_MODEL
from stage1_face_extraction.identity.inception_resnet_v1 import (
    CHECKPOINTS,
    facenet_weights,
    load_facenet,
)

from .registry import PER_FACE_FRAME, Contract, VisualExtractor, register_extractor

logger = logging.getLogger(__name__)

#: facenet-pytorch's torch-hub cache file names (``$TORCH_HOME/checkpoints/<name>``).
FACENET_FILES = CHECKPOINTS


@register_extractor("inception_resnet_v1")
class InceptionResnetV1Extractor(VisualExtractor):
    """facenet-pytorch InceptionResnetV1 (``classify=False``): 512-d per face (FacialMMT's visual input).

    Args:
        pretrained: ``vggface2`` (FacialMMT) or ``casia-webface``.
        weights: local state-dict file; default ``$TORCH_HOME/checkpoints/`` + facenet's file name
            (``20180402-114759-vggface2.pt`` / ``20180408-102900-casia-webface.pt``).
        random_init: no weights at all (demo / tests only; warns).
        batch_size, device, amp: see :class:`VisualExtractor`.

    Input 160x160 RGB, ``(x - 127.5) / 128``; output the 512-d ``last_bn`` embedding (not
    L2-normalised, as facenet-pytorch returns it with ``classify=False``).
    """

    @classmethod
    def local_weights(cls, cfg: dict, place: Place, key: str) -> LocalWeights:
        return facenet_weights(cfg, place)

    def __init__(
        self,
        *,
        pretrained: str = "vggface2",
        weights: str | Path | None = None,
        random_init: bool = False,
        **common,
    ) -> None:
        super().__init__(**common)
        if random_init:
            warnings.warn("inception_resnet_v1 with random_init=True: features are meaningless (demo/tests only)",
                          stacklevel=2)
        self.pretrained = pretrained
        import torch

        with torch.random.fork_rng():
            torch.manual_seed(0)  # random_init: the same random network every run (deterministic demo)
            self.module = load_facenet(None if random_init else weights, pretrained, random_init)
        self.weights = None if self.module.weights_file is None else str(self.module.weights_file)
        self.module.to(self.device)

    @property
    def contract(self) -> Contract:
        return Contract(
            modality="visual",
            dim=512,
            frame_rate=PER_FACE_FRAME,
            image_size=(160, 160),
            mean=(127.5 / 255,) * 3,
            std=(128.0 / 255,) * 3,
            normalization="(x - 127.5) / 128 on 0..255 RGB",
        )

    def _forward(self, x):
        return self.module(x)  # (B, 512)


@register_extractor("timm")
class TimmExtractor(VisualExtractor):
    """Any timm model as a pooled-feature extractor (``num_classes=0``), weights from a local file.

    Args:
        model: timm model name (e.g. ``resnet50``, ``vit_base_patch16_224``).
        weights: local ``.safetensors`` or torch state-dict file (classifier keys are dropped).
        random_init: allow running without weights (tests only; warns).
        batch_size, device, amp: see :class:`VisualExtractor`.

    Input size, mean and std come from the model's ``pretrained_cfg``; crops are resized to it.
    """

    @classmethod
    def local_weights(cls, cfg: dict, place: Place, key: str) -> LocalWeights:
        """The local ``weights`` file (timm never downloads here); none is a WARN with random_init."""
        model = cfg.get("model")
        if cfg.get("weights") is None:
            if cfg.get("random_init"):
                return LocalWeights([WeightCheck("WARN", "random_init: true (demo only): meaningless features",
                                                 "set weights to a local timm state dict", ".random_init")])
            return LocalWeights([WeightCheck("FAIL", f"timm {model!r} needs a local weights file",
                                             "save the model's state dict (.safetensors) under models/ and set weights",
                                             ".weights")])
        path = place.path(cfg["weights"])
        if path.is_file():
            return LocalWeights([WeightCheck("OK", f"timm {model}: {path} ({fmt_bytes(path.stat().st_size)})")])
        return LocalWeights([WeightCheck(
            "FAIL", f"{place.show(cfg['weights'])} does not exist",
            f"save timm's {model} state dict there (timm.create_model(..., pretrained=True) on a machine with "
            "network, then safetensors.torch.save_file(model.state_dict(), PATH))", ".weights")])

    def __init__(
        self,
        *,
        model: str,
        weights: str | Path | None = None,
        random_init: bool = False,
        **common,
    ) -> None:
        super().__init__(**common)
        import timm
        import torch

        if not timm.is_model(model):
            raise ConfigError(f"unknown timm model {model!r}")
        self.model_name = model
        with torch.random.fork_rng():
            torch.manual_seed(0)  # random_init: the same random network every run
            self.module = timm.create_model(model, pretrained=False, num_classes=0).eval()
        if weights is None:
            if not random_init:
                raise ConfigError(f"timm extractor {model!r} needs a local `weights` file (or random_init: true)")
            warnings.warn(f"timm {model!r} with random_init=True: features are meaningless", stacklevel=2)
        else:
            sd = load_state_dict(weights)
            own = self.module.state_dict()
            dropped = sorted(k for k in sd if k not in own)
            if dropped:
                logger.info("timm %s: ignoring %d keys not in the headless model (%s...)", model, len(dropped),
                            ", ".join(dropped[:3]))
            self.module.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=True)
            logger.info("timm %s: loaded %s", model, weights)
        self.weights = None if weights is None else str(weights)
        cfg = self.module.pretrained_cfg
        self._contract = Contract(
            modality="visual",
            dim=int(self.module.num_features),
            frame_rate=PER_FACE_FRAME,
            image_size=tuple(int(v) for v in cfg["input_size"][1:]),
            mean=tuple(float(v) for v in cfg["mean"]),
            std=tuple(float(v) for v in cfg["std"]),
            normalization="(x / 255 - mean) / std (timm pretrained_cfg)",
        )
        self.module.to(self.device)

    @property
    def contract(self) -> Contract:
        return self._contract

    def _forward(self, x):
        return self.module(x)  # (B, num_features)


class _FaceEmbedderExtractor(VisualExtractor):
    """A visual extractor backed by a stage-1 identity embedder (``self._embedder``): each crop is
    one whole face; the embedder aligns and normalises it itself."""

    def _forward(self, x):  # pragma: no cover - extract() is overridden
        raise NotImplementedError

    def extract(self, faces: np.ndarray) -> np.ndarray:
        faces = np.asarray(faces)
        if faces.ndim != 4 or faces.shape[-1] != 3 or faces.dtype != np.uint8:
            raise ValueError(f"faces must be (N, H, W, 3) uint8 RGB, got {faces.dtype} {faces.shape}")
        n, h, w = faces.shape[:3]
        boxes = np.tile(np.array([[0, 0, w, h]], np.float32), (n, 1))  # (N, 4) whole crop
        return self._embedder.embed(list(faces), boxes).astype(np.float32)  # (N, D)


@register_extractor("dlib_resnet")
class DlibResnetExtractor(_FaceEmbedderExtractor):
    """dlib ResNet 128-d descriptor of each whole crop (via the Stage-1 identity embedder).

    The crops are already aligned faces, so each crop's box is the whole crop; dlib's 5-point
    predictor re-locates the landmarks inside it. Output is L2-normalised (as the embedder's).
    CPU only (dlib); ``device``/``amp``/``batch_size`` have no effect.

    Args:
        model_dir, num_jitters, padding: passed to ``create_embedder('dlib_resnet', ...)``.
    """

    @classmethod
    def local_weights(cls, cfg: dict, place: Place, key: str) -> LocalWeights:
        """The stage-1 embedder's files; what it misses is reported with the embedder's fix."""
        from stage1_face_extraction.identity.dlib_resnet import DlibResnetEmbedder

        try:
            found = DlibResnetEmbedder.local_weights(cfg, place, key).checks
        except (FileNotFoundError, ValueError) as exc:
            found = [WeightCheck("FAIL", str(exc), DlibResnetEmbedder.weights_fix)]
        return LocalWeights(found, dim=128)

    def __init__(
        self, *, model_dir: str | Path | None = None, num_jitters: int = 0, padding: float = 0.25, **common
    ) -> None:
        super().__init__(**common)
        from stage1_face_extraction.identity import create_embedder

        kw = {"num_jitters": num_jitters, "padding": padding}
        if model_dir is not None:
            kw["model_dir"] = model_dir
        self._embedder = create_embedder("dlib_resnet", **kw)

    @property
    def contract(self) -> Contract:
        return Contract(
            modality="visual",
            dim=128,
            frame_rate=PER_FACE_FRAME,
            image_size=(150, 150),  # dlib aligns a 150x150 chip itself
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            normalization="none (dlib takes 0..255 RGB and aligns its own chip)",
        )



@register_extractor("arcface_onnx")
class ArcFaceOnnxExtractor(_FaceEmbedderExtractor):
    """insightface ArcFace recognition ONNX (buffalo_l's ``w600k_r50.onnx``: 512-d) per face crop.

    Loading, alignment and normalisation are the Stage-1 identity embedder's
    (:class:`stage1_face_extraction.identity.arcface.ArcFaceEmbedder`): each crop is re-aligned to
    the ArcFace 112x112 five-point template from landmarks guessed with the mean MTCNN positions
    inside the whole crop (right for Stage-1 / FacSeqs-160 crops, which are MTCNN-style), then fed as
    ``(x - 127.5) / 127.5`` RGB (raw pixels for old graphs that normalise inside). Output is
    L2-normalised (as the embedder's); D is read from the graph's output shape (512 when dynamic).

    Args:
        model: an ``.onnx`` file or an unpacked insightface pack folder (default
            ``~/.insightface/models/buffalo_l``); a missing one is a FileNotFoundError naming the
            path and where to get buffalo_l. Never downloaded.
        device: ``auto`` (CUDA when onnxruntime has it), ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: crops per run (a graph with a fixed batch size imposes its own).
    """

    @classmethod
    def local_weights(cls, cfg: dict, place: Place, key: str) -> LocalWeights:
        """The recognition .onnx file of ``model`` (a pack folder or the file)."""
        from stage1_face_extraction.identity.arcface import resolve_model_file

        path = resolve_model_file(place.path(cfg.get("model", ARCFACE_DEFAULT_MODEL)))
        return LocalWeights([WeightCheck("OK", str(path))])

    def __init__(
        self, *, model: str | Path = ARCFACE_DEFAULT_MODEL, device: str = "auto", batch_size: int = 32
    ) -> None:
        super().__init__(batch_size=batch_size, device="cpu", amp=False)  # torch is not used
        from stage1_face_extraction.identity import create_embedder

        self._embedder = create_embedder("arcface", model=str(model), device=device, batch_size=int(batch_size))
        self.model_file = str(self._embedder.model_file)
        self.device = self._embedder.device  # onnxruntime device
        self.batch_size = self._embedder.batch_size

    @property
    def contract(self) -> Contract:
        e = self._embedder
        inside = e.input_mean == 0.0 and e.input_std == 1.0
        return Contract(
            modality="visual",
            dim=int(e.dim),
            frame_rate=PER_FACE_FRAME,
            image_size=(e.input_size, e.input_size),
            mean=(e.input_mean / 255,) * 3,
            std=(e.input_std / 255,) * 3,
            normalization=(f"(x - {e.input_mean:g}) / {e.input_std:g} on 0..255 RGB"
                           + (" (the graph normalises inside)" if inside else "")
                           + ", after re-aligning the crop to the ArcFace 112x112 template"),
        )

