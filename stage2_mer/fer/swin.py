"""Auxiliary FER branch: a face-pretrained Swin-Tiny with a face-embedding head and a 7-way MLP.

Architecture (FacialMMT's facial-expression network)::

    images (N, 3, 224, 224), in fer.channel_order (BGR by default), (x / 255 - 0.5) / 0.5
      -> timm Swin-Tiny stages            (N, 7, 7, 768)   no final norm, no pooling, no classifier
      -> embedding: LayerNorm(768)        (N, 7, 7, 768)
                    Flatten               (N, 37632)       49 tokens x 768, row-major (h, w, c)
                    Linear(37632 -> 512)  (N, 512)
                    BatchNorm1d(512)      (N, 512)         the face-recognition embedding
      -> head:      Linear(512 -> 64), ReLU, Linear(64 -> 7)  -> logits (N, 7), MELD label order

The backbone is created with ``timm.create_model(..., pretrained=False)`` (never downloaded); its
weights come from a local face-recognition checkpoint (FaceX-Zoo style Swin-Tiny trained on
MS-Celeb-1M, ``Swin_tiny_Ms-Celeb-1M.pt``) read by :func:`load_face_checkpoint`, which maps the
official Swin key names onto timm's (:func:`official_to_fer_key`). The 7-way head is always new.

Batch of one in train mode: BatchNorm1d cannot compute batch statistics from one sample. Instead
of FacialMMT's trick (duplicate the image, run both copies, keep one: twice the compute and a
statistics update from a fake pair), the embedding BatchNorm normalises a batch of exactly one
with its running statistics and leaves them untouched (:class:`EmbeddingBatchNorm`); batches of
two or more behave like a normal BatchNorm1d. An empty batch returns ``(0, 7)`` without running.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from stage1_face_extraction.common.config import ConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "CHANNEL_ORDERS",
    "FER_MEAN",
    "FER_STD",
    "CheckpointError",
    "CheckpointReport",
    "EmbeddingBatchNorm",
    "FERConfig",
    "SwinFER",
    "build_fer",
    "fer_to_official_key",
    "load_face_checkpoint",
    "official_to_fer_key",
]

#: Input normalisation of the FER Swin (FacialMMT: ``Normalize(0.5, 0.5)`` on RGB in [0, 1]).
FER_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
FER_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

#: ``fer.channel_order`` values: the channel order of the images the Swin is fed (the crops and
#: Aff-Wild2 frames are decoded as RGB; ``bgr`` swaps them just before normalisation).
CHANNEL_ORDERS: tuple[str, ...] = ("bgr", "rgb")

#: Swin's total stride (patch 4, then three 2x patch mergings): 224 -> a 7 x 7 token grid.
SWIN_STRIDE = 32


class CheckpointError(ValueError):
    """A face checkpoint is unreadable, of the wrong layout, or does not fit the model."""


@dataclass
class FERConfig:
    """``fer`` section of params.yaml (strict keys: build it with ``params.from_dict``).

    Attributes:
        backbone: a timm Swin model name (``swin_tiny_patch4_window7_224``: FacialMMT's Swin-Tiny,
            embed 96, depths 2-2-6-2, heads 3-6-12-24, window 7).
        checkpoint: local face-pretrained Swin file (``models/Swin_tiny_Ms-Celeb-1M.pt`` or a
            ``.safetensors`` with the same keys); read by :func:`load_face_checkpoint`.
        drop_path: stochastic-depth rate of the backbone (linearly increasing over blocks).
        embed_dim: size of the face embedding (BatchNorm1d output).
        head_hidden: hidden width of the classification MLP.
        num_labels: output classes (7, MELD order).
        image_size: input side; must be a multiple of 32 (the checkpoint's embedding Linear only
            fits 224: 7 x 7 x 768 inputs).
        random_init: no weights at all (tests / demo only; warns). Otherwise ``checkpoint`` must
            name an existing file (FileNotFoundError naming it).
        strict: a checkpoint that leaves backbone/embedding weights missing, or brings keys the
            model does not have, is an error (else a warning).
        channel_order: ``bgr`` (default) or ``rgb``: the order the Swin's input channels are in.
            FaceX-Zoo trained ``Swin_tiny_Ms-Celeb-1M.pt`` on OpenCV-decoded (BGR) faces and
            FacialMMT fed it BGR too, so ``bgr`` is what the checkpoint expects; ``rgb`` is what
            this project fed before the switch existed (checkpoints without the key load as ``rgb``).
    """

    backbone: str = "swin_tiny_patch4_window7_224"
    checkpoint: str | None = None
    drop_path: float = 0.3
    embed_dim: int = 512
    head_hidden: int = 64
    num_labels: int = 7
    image_size: int = 224
    random_init: bool = False
    strict: bool = True
    channel_order: str = "bgr"

    def __post_init__(self) -> None:
        if self.channel_order not in CHANNEL_ORDERS:
            raise ConfigError(f"fer.channel_order must be one of {CHANNEL_ORDERS}, got {self.channel_order!r}")
        if not isinstance(self.backbone, str) or not self.backbone.startswith("swin"):
            raise ConfigError(f"fer.backbone must be a timm Swin model name, got {self.backbone!r}")
        if not 0.0 <= float(self.drop_path) < 1.0:
            raise ConfigError(f"fer.drop_path must be in [0, 1), got {self.drop_path!r}")
        for name in ("embed_dim", "head_hidden", "num_labels"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"fer.{name} must be >= 1, got {getattr(self, name)!r}")
        if int(self.image_size) < SWIN_STRIDE or int(self.image_size) % SWIN_STRIDE:
            raise ConfigError(f"fer.image_size must be a positive multiple of {SWIN_STRIDE}, got {self.image_size!r}")


class EmbeddingBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d that accepts a batch of one in train mode.

    ``N >= 2`` (or eval mode): exactly :class:`torch.nn.BatchNorm1d`. ``N == 1`` in train mode:
    normalised with the running statistics (as in eval), which are not updated, so a lone MELD
    face neither crashes nor drags the statistics; gradients still reach weight and bias.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (N, C)
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                training=False, momentum=0.0, eps=self.eps)
        return super().forward(x)


class SwinFER(nn.Module):
    """Swin-Tiny + face-embedding head + 7-way MLP (randomly initialised; see :func:`build_fer`).

    Submodules (state-dict prefixes): ``backbone`` (timm SwinTransformer with ``norm`` and
    ``head`` removed), ``embedding`` (``0`` LayerNorm, ``1`` Flatten, ``2`` Linear, ``3``
    :class:`EmbeddingBatchNorm`: the same indices as FaceX-Zoo's ``output_layer``), ``head``
    (``0`` Linear, ``1`` ReLU, ``2`` Linear).
    """

    def __init__(self, cfg: FERConfig | None = None) -> None:
        super().__init__()
        import timm

        cfg = cfg or FERConfig(random_init=True)
        if not timm.is_model(cfg.backbone):
            raise ConfigError(f"fer.backbone: unknown timm model {cfg.backbone!r}")
        self.cfg = cfg
        size = int(cfg.image_size)
        self.backbone = timm.create_model(
            cfg.backbone, pretrained=False, num_classes=0, drop_path_rate=float(cfg.drop_path), img_size=size,
        )
        width = int(self.backbone.num_features)  # 768 for Swin-Tiny
        # The face head replaces the final LayerNorm + average pooling + classifier of the ImageNet model.
        self.backbone.norm = nn.Identity()
        grid = size // SWIN_STRIDE  # 7
        self.embedding = nn.Sequential(
            nn.LayerNorm(width),  # on (N, 7, 7, 768)
            nn.Flatten(1),  # (N, 37632)
            nn.Linear(grid * grid * width, int(cfg.embed_dim)),  # (N, 512)
            EmbeddingBatchNorm(int(cfg.embed_dim)),
        )
        self.head = nn.Sequential(
            nn.Linear(int(cfg.embed_dim), int(cfg.head_hidden)),
            nn.ReLU(inplace=True),
            nn.Linear(int(cfg.head_hidden), int(cfg.num_labels)),
        )
        self.checkpoint: str | None = None  # set by load_face_checkpoint

    @property
    def num_labels(self) -> int:
        return int(self.cfg.num_labels)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Face embeddings: images (N, 3, S, S) normalised -> (N, embed_dim)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
        if images.shape[0] == 0:
            return images.new_zeros((0, int(self.cfg.embed_dim)))
        tokens = self.backbone.forward_features(images)  # (N, 7, 7, 768) NHWC, norm is Identity
        return self.embedding(tokens)  # (N, 512)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, 3, S, S) normalised, in ``cfg.channel_order`` -> logits (N, num_labels), MELD label order."""
        if images.ndim == 4 and images.shape[0] == 0:
            return images.new_zeros((0, self.num_labels))
        return self.head(self.embed(images))  # (N, 7)


# ------------------------------------------------------------------------------------------------
# checkpoint key mapping

_DOWNSAMPLE = re.compile(r"^layers\.(\d+)\.downsample\.(.+)$")
_FER_DOWNSAMPLE = re.compile(r"^backbone\.layers\.(\d+)\.downsample\.(.+)$")
#: Buffers the official Swin saves but timm recomputes (non-persistent there).
_DERIVED_BUFFERS = ("relative_position_index", "attn_mask")


def official_to_fer_key(key: str, *, official: bool = True) -> str | None:
    """Map one backbone-relative key of a face Swin checkpoint onto a :class:`SwinFER` key.

    Rules (``key`` is already stripped of the checkpoint's ``backbone.`` prefix):

    * ``...relative_position_index`` / ``...attn_mask``: derived buffers -> ``None`` (skipped;
      timm builds them itself).
    * ``output_layer.{i}.*`` (FaceX-Zoo face head: 0 LayerNorm, 2 Linear, 3 BatchNorm1d) ->
      ``embedding.{i}.*``.
    * ``layers.{i}.downsample.*``: the official Swin merges patches at the *end* of stage ``i``
      (stages 0-2 own one); timm merges at the *start* of stage ``i + 1`` -> with ``official``
      ``backbone.layers.{i+1}.downsample.*`` (``official=False``: a checkpoint already in timm
      naming, kept as is).
    * everything else (``patch_embed.*``, ``layers.{i}.blocks.{j}.*``, and ``norm.*`` / ``head.*``
      of an ImageNet-style checkpoint) -> ``backbone.`` + key; names not in the model end up
      in the report's ``unexpected`` list.
    """
    if key.endswith(_DERIVED_BUFFERS):
        return None
    if key.startswith("output_layer."):
        return "embedding." + key[len("output_layer."):]
    m = _DOWNSAMPLE.match(key)
    if m and official:
        return f"backbone.layers.{int(m.group(1)) + 1}.downsample.{m.group(2)}"
    return "backbone." + key


def fer_to_official_key(key: str) -> str | None:
    """Inverse of :func:`official_to_fer_key` (official naming, without the ``backbone.`` prefix).

    ``head.*`` (the 7-way MLP, not part of a face checkpoint) -> ``None``.
    """
    if key.startswith("embedding."):
        return "output_layer." + key[len("embedding."):]
    m = _FER_DOWNSAMPLE.match(key)
    if m:
        return f"layers.{int(m.group(1)) - 1}.downsample.{m.group(2)}"
    if key.startswith("backbone."):
        return key[len("backbone."):]
    return None


@dataclass
class CheckpointReport:
    """What :func:`load_face_checkpoint` did (model keys use :class:`SwinFER` names).

    Attributes:
        path: the file read.
        loaded: model keys filled from the checkpoint.
        missing: backbone/embedding keys the checkpoint did not provide (left at init).
        unexpected: checkpoint keys (mapped names) that have no place in the model.
        skipped: checkpoint keys ignored on purpose (``classifier.*`` / ``head.*`` of the
            face-recognition training head, non-``backbone`` entries, derived buffers).
        new: keys trained from scratch in any case (the 7-way ``head.*``).
    """

    path: str
    loaded: list[str]
    missing: list[str]
    unexpected: list[str]
    skipped: list[str]
    new: list[str]

    def summary(self) -> str:
        return (f"{self.path}: loaded {len(self.loaded)} tensors, missing {len(self.missing)}, "
                f"unexpected {len(self.unexpected)}, skipped {len(self.skipped)}, new {len(self.new)} (FER head)")


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The flat tensor dict inside ``path`` (torch ``{'state_dict': ...}`` or safetensors), read by the
    project's safe reader (:func:`stage1_face_extraction.common.weights.load_state_dict`)."""
    from stage1_face_extraction.common.weights import load_state_dict

    if not path.is_file():
        raise FileNotFoundError(f"FER checkpoint not found: {path}")
    try:
        obj = load_state_dict(path)
    except Exception as exc:  # truncated zip, not a torch file, pickle with foreign objects, not a dict ...
        hint = ""
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            hint = (" (it pickles more than tensors: if you trust the file, convert its 'state_dict' once to a "
                    ".safetensors file in an environment you trust, and point fer.checkpoint at that)")
        raise CheckpointError(f"cannot read FER checkpoint {path}: {type(exc).__name__}: {exc}{hint}") from exc
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def load_face_checkpoint(model: SwinFER, path: str | Path, *, strict: bool = True) -> CheckpointReport:
    """Load a face-recognition Swin checkpoint (MS-Celeb-1M, FaceX-Zoo layout) into ``model``.

    Layout read: a torch file holding a dict with ``'state_dict'`` (or ``'model'``, or a bare
    state dict), or a ``.safetensors`` file with the same keys. Keys prefixed ``backbone.`` are
    the Swin + face-embedding head in official Swin naming and are mapped with
    :func:`official_to_fer_key` (official vs timm naming is detected from where the
    ``downsample`` keys live); other keys (``classifier.*``, ``head.*`` of the recognition loss,
    ...) are skipped. A checkpoint with no ``backbone.`` key at all is taken as a bare Swin
    state dict (its ``classifier.*`` still skipped). Non-tensor entries (epoch counters) are
    ignored.

    Torch files are read with ``torch.load(path, map_location='cpu', weights_only=True)``: plain
    tensors / dicts / numbers only. A file that pickles other objects (an argparse Namespace, a
    whole module) is refused with a hint: convert its ``state_dict`` once to safetensors, in an
    environment where the file is trusted (this project never unpickles arbitrary objects).

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names it).
        CheckpointError: unreadable / truncated / not a state dict / nothing matches the model /
            a tensor shape differs from the model's / (``strict``) missing backbone or
            embedding keys, or unexpected keys. Every message names the file.
    """
    path = Path(path)
    raw = _read_checkpoint(path)
    prefix = "backbone." if any(k.startswith("backbone.") for k in raw) else ""
    skipped = sorted(k for k in raw if not k.startswith(prefix) or k.startswith("classifier."))
    drop = set(skipped)
    inner = {k[len(prefix):]: v for k, v in raw.items() if k not in drop}
    # Official naming has a downsample in stage 0 and none in the last stage; timm the reverse.
    last = len(model.backbone.layers) - 1
    official = any(k.startswith("layers.0.downsample.") for k in inner) or not any(
        k.startswith(f"layers.{last}.downsample.") for k in inner)

    own = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, value in inner.items():
        target = official_to_fer_key(key, official=official)
        if target is None:
            skipped.append(prefix + key)
            continue
        if target not in own:
            unexpected.append(target)
            continue
        if tuple(value.shape) != tuple(own[target].shape):
            raise CheckpointError(
                f"FER checkpoint {path}: backbone.{key} -> {target} has shape {tuple(value.shape)}, "
                f"the model ({model.cfg.backbone}, image_size {model.cfg.image_size}) "
                f"expects {tuple(own[target].shape)}")
        mapped[target] = value
    if not mapped:
        raise CheckpointError(
            f"FER checkpoint {path}: no key matches a Swin face model (first keys: {', '.join(list(raw)[:5])})")
    new = sorted(k for k in own if k.startswith("head."))
    missing = sorted(k for k in own if k not in mapped and not k.startswith("head."))
    report = CheckpointReport(str(path), sorted(mapped), missing, sorted(unexpected), sorted(skipped), new)
    problems = []
    if missing:
        problems.append(f"{len(missing)} model keys missing from the checkpoint ({', '.join(missing[:5])}...)")
    if unexpected:
        problems.append(f"{len(unexpected)} checkpoint keys unknown to the model ({', '.join(unexpected[:5])}...)")
    if problems and strict:
        raise CheckpointError(f"FER checkpoint {path}: " + "; ".join(problems) + " (strict: false to accept)")
    for p in problems:
        logger.warning("FER checkpoint %s: %s", path, p)
    result = model.load_state_dict(mapped, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    model.checkpoint = str(path)
    logger.info("%s", report.summary())
    return report


def build_fer(cfg: FERConfig) -> SwinFER:
    """A :class:`SwinFER` with its face checkpoint loaded (or random weights when ``random_init``).

    Raises:
        ConfigError: no ``checkpoint`` and not ``random_init``.
        FileNotFoundError: ``checkpoint`` does not exist (names the file).
        CheckpointError: see :func:`load_face_checkpoint`.
    """
    if cfg.random_init:
        warnings.warn("FER Swin with random_init=True: no face pretraining (demo/tests only)", stacklevel=2)
        if cfg.checkpoint:
            logger.warning("fer.random_init is true: ignoring checkpoint %s", cfg.checkpoint)
        return SwinFER(cfg)
    if not cfg.checkpoint:
        raise ConfigError("fer.checkpoint must name a local face-pretrained Swin file "
                          "(e.g. models/Swin_tiny_Ms-Celeb-1M.pt), or set fer.random_init: true (demo/tests)")
    path = Path(cfg.checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"FER checkpoint not found: {path} "
            "(FacialMMT's Swin_tiny_Ms-Celeb-1M.pt; place it there or set fer.checkpoint)")
    model = SwinFER(cfg)
    load_face_checkpoint(model, path, strict=cfg.strict)
    return model
