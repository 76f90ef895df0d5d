"""Feature-extractor interface, contract and registry (one registry for both modalities).

    @register_extractor("my_visual")
    class MyVisual(VisualExtractor):
        def __init__(self, *, batch_size: int = 32, device: str = "auto") -> None: ...
        @property
        def contract(self) -> Contract: ...
        def _forward(self, x: torch.Tensor) -> torch.Tensor: ...  # (B, 3, H, W) float -> (B, D)

    ext = create_extractor("inception_resnet_v1", pretrained="vggface2")
    feats = ext.extract(faces)  # faces (N, 160, 160, 3) uint8 RGB -> (N, 512) float32

Visual extractors map face crops ``(N, H, W, 3) uint8 RGB`` to one row per face frame ``(N, D)``;
audio extractors map one utterance's mono 16 kHz waveform ``(n,) float32`` to ``(L, D)``, one row
per encoder frame. Every extractor declares a :class:`Contract`.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import ClassVar, TypeVar

import numpy as np

from stage1_face_extraction.common.config import ConfigError
from stage1_face_extraction.common.local_weights import LocatesWeights
from stage1_face_extraction.common.registry import Registry

logger = logging.getLogger(__name__)

__all__ = [
    "Contract",
    "FeatureExtractor",
    "VisualExtractor",
    "AudioExtractor",
    "register_extractor",
    "create_extractor",
    "validate_extractor",
    "list_extractors",
    "extractor_class",
    "resolve_device",
]

MODALITIES = ("visual", "audio")
PER_FACE_FRAME = "per face frame"


@dataclasses.dataclass(frozen=True)
class Contract:
    """What an extractor consumes and produces.

    Attributes:
        modality: ``"visual"`` or ``"audio"``.
        dim: output feature size D.
        frame_rate: output rows per second of audio (float), or ``"per face frame"`` (visual: one
            row per input face crop).
        image_size: visual: (H, W) the network sees (inputs of another size are resized).
        mean, std: visual: per-channel normalisation applied to pixels scaled to [0, 1]
            (``(x / 255 - mean) / std``); e.g. facenet's ``(x - 127.5) / 128`` is mean 127.5/255,
            std 128/255.
        normalization: human-readable description of the input normalisation.
        sample_rate: audio: expected input sample rate in Hz.
    """

    modality: str
    dim: int
    frame_rate: float | str
    image_size: tuple[int, int] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    normalization: str = ""
    sample_rate: int | None = None

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        if int(self.dim) < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim}")
        if self.modality == "visual":
            if self.image_size is None or self.mean is None or self.std is None:
                raise ValueError("a visual contract needs image_size, mean and std")
            if self.frame_rate != PER_FACE_FRAME:
                raise ValueError(f"visual frame_rate must be {PER_FACE_FRAME!r}")
        else:
            if not self.sample_rate:
                raise ValueError("an audio contract needs sample_rate")
            if not isinstance(self.frame_rate, (int, float)) or self.frame_rate <= 0:
                raise ValueError(f"audio frame_rate must be a positive number, got {self.frame_rate!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``; other values pass through."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    return device


class FeatureExtractor(LocatesWeights, abc.ABC):
    """Base of every extractor; subclasses set ``modality`` and implement ``contract``/``extract``."""

    weights_fix: ClassVar[str] = "place the weights named above there, or pick another extractor"

    name: ClassVar[str] = ""
    modality: ClassVar[str] = ""

    @property
    @abc.abstractmethod
    def contract(self) -> Contract:
        """Input/output contract of this configured instance."""

    @property
    def dim(self) -> int:
        return self.contract.dim

    @abc.abstractmethod
    def extract(self, x: np.ndarray) -> np.ndarray:
        """Features of one input (see the modality subclasses)."""

    def __repr__(self) -> str:
        c = self.contract
        return f"{type(self).__name__}(name={self.name!r}, modality={c.modality!r}, dim={c.dim})"


class VisualExtractor(FeatureExtractor):
    """``extract(faces (N, H, W, 3) uint8 RGB) -> (N, D) float32``, batched, AMP on CUDA only.

    Subclasses implement ``_forward(x)`` on a normalised ``(B, 3, H', W')`` float tensor already
    resized to ``contract.image_size`` and on ``self.device``, and set ``self.module``.
    """

    modality = "visual"

    def __init__(self, *, batch_size: int = 32, device: str = "auto", amp: bool = True) -> None:
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        self.amp = bool(amp) and self.device.startswith("cuda")

    @abc.abstractmethod
    def _forward(self, x):  # (B, 3, H, W) float32 normalised -> (B, D)
        ...

    def preprocess(self, faces: np.ndarray):
        """(B, H, W, 3) uint8 -> (B, 3, H', W') float32 normalised tensor on ``self.device``."""
        import torch
        import torch.nn.functional as F

        c = self.contract
        x = torch.from_numpy(np.ascontiguousarray(faces)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W) in [0, 1]
        if tuple(x.shape[-2:]) != tuple(c.image_size):
            x = F.interpolate(x, size=tuple(c.image_size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(c.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(c.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def extract(self, faces: np.ndarray) -> np.ndarray:
        import torch

        faces = np.asarray(faces)
        if faces.ndim != 4 or faces.shape[-1] != 3 or faces.dtype != np.uint8:
            raise ValueError(f"faces must be (N, H, W, 3) uint8 RGB, got {faces.dtype} {faces.shape}")
        n = faces.shape[0]
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        out = []
        with torch.inference_mode():
            for i in range(0, n, self.batch_size):
                x = self.preprocess(faces[i : i + self.batch_size])
                with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
                    y = self._forward(x)  # (B, D)
                out.append(y.float().cpu().numpy())
        return np.concatenate(out, 0).astype(np.float32, copy=False)


class AudioExtractor(FeatureExtractor):
    """``extract(wave (n,) float32 at contract.sample_rate) -> (L, D) float32``."""

    modality = "audio"

    def extract_batch(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Features of several waves (sorted by length by the caller); one at a time unless the
        extractor batches them in one forward (the transformers encoders do)."""
        return [self.extract(w) for w in waves]

    @staticmethod
    def check_wave(wave: np.ndarray) -> np.ndarray:
        wave = np.asarray(wave)
        if wave.ndim != 1 or not np.issubdtype(wave.dtype, np.floating):
            raise ValueError(f"wave must be a mono (n,) float waveform, got {wave.dtype} {wave.shape}")
        return np.ascontiguousarray(wave, dtype=np.float32)


E = TypeVar("E", bound="type[FeatureExtractor]")
_REGISTRY: Registry = Registry("feature extractor", "extractors", FeatureExtractor)


def register_extractor(name: str) -> Callable[[E], E]:
    """Class decorator: make a :class:`FeatureExtractor` subclass available as ``name``."""
    return _REGISTRY.register(name)


def list_extractors(modality: str | None = None) -> list[str]:
    """Registered extractor names, sorted (optionally only those of one modality)."""
    names = _REGISTRY.names()
    if modality is None:
        return names
    if modality not in MODALITIES:
        raise ConfigError(f"modality must be one of {MODALITIES}, got {modality!r}")
    return [n for n in names if _REGISTRY.get(n).modality == modality]


def extractor_class(name: str) -> type[FeatureExtractor]:
    """The class registered as ``name``; an unknown name raises ConfigError listing the valid ones."""
    return _REGISTRY.get(name)


def create_extractor(name: str, **cfg) -> FeatureExtractor:
    """Build extractor ``name`` from keyword config ``cfg``; unknown keys raise ConfigError."""
    ext = _REGISTRY.create(name, cfg)
    logger.info("created %r", ext)
    return ext


def validate_extractor(name: str, cfg: dict) -> type[FeatureExtractor]:
    """The class of extractor ``name`` after checking ``cfg``'s keys (ConfigError otherwise), building nothing."""
    _REGISTRY.validate(name, cfg)
    return extractor_class(name)
