"""Aff-Wild2 (ABAW3 expression track) reader: the labelled frames that train the FER branch.

Layout (one data root, relative folder names, not FacialMMT's hard-coded absolute paths)::

    <root>/cropped_aligned/<video>/<frame:05d>.jpg          face crops (112 x 112 in ABAW3)
    <root>/<annotations>/<video>.txt                         one file per video:
        Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other     (header)
        <label of frame 00001.jpg>
        <label of frame 00002.jpg>  ...                      -1 = not annotated, 7 = Other

ABAW3 ships the annotations as ``Third_ABAW_Annotations/EXPR_Classification_Challenge/{Train_Set,
Validation_Set}``; read each folder with :func:`scan_affwild2` to get a train and a validation
index (FacialMMT trained without any Aff-Wild2 validation).

Labels: -1 and 7 (Other) are dropped; the kept Aff-Wild2 index ``k`` becomes the MELD label
``AFFWILD2_TO_MELD[k]`` (``stage1_face_extraction.common.labels.EMOTIONS`` order). Annotated frames whose
JPEG is absent (face not detected by the ABAW cropper) are skipped and counted.

:class:`AffWild2Dataset` decodes JPEGs as RGB (PIL), augments them in RGB and hands the float
output over in ``channel_order`` (``fer.channel_order``: ``bgr`` by default, what the
face-pretrained Swin was trained on and what FacialMMT fed, reading with OpenCV). The
training augmentation uses the probabilities it names (FacialMMT's ``RandomApply`` fired with
1 - p): grayscale p = 0.2, colour jitter p = 0.8 (brightness, contrast, saturation 0.4, hue
0.1 instead of 0.4), Gaussian blur p = 0.5 (sigma 0.1-2, kernel about 10 % of the side), then
(float output) random erasing p = 0.25 with per-pixel noise; :meth:`AugmentConfig.facialmmt`
gives FacialMMT's effective values instead (grayscale 0.8, jitter 0.2 with hue 0.4, blur 0.5).
All randomness is torch's, so DataLoader workers are seeded by torch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from stage1_face_extraction.common.config import ConfigError
from stage1_face_extraction.common.labels import EMOTIONS

from .swin import CHANNEL_ORDERS

logger = logging.getLogger(__name__)

__all__ = [
    "AFFWILD2_EXPRESSIONS",
    "AFFWILD2_TO_MELD",
    "ANNOTATION_DIR",
    "ANNOTATION_HEADER",
    "IMAGE_DIR",
    "MELD_TO_AFFWILD2",
    "AffWild2Config",
    "AffWild2Dataset",
    "AffWild2FormatError",
    "AffWild2Index",
    "AugmentConfig",
    "check_affwild2_source",
    "is_affwild2_standin",
    "is_demo_corpus",
    "read_expression_file",
    "scan_affwild2",
    "write_demo_affwild2",
]

#: Aff-Wild2 expression classes, in annotation index order.
AFFWILD2_EXPRESSIONS: tuple[str, ...] = (
    "Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other",
)
ANNOTATION_HEADER = ",".join(AFFWILD2_EXPRESSIONS)
INVALID = -1
OTHER = 7
#: Aff-Wild2 index k (0..6) -> MELD label (EMOTIONS: neutral, surprise, fear, sadness, joy, disgust, anger).
AFFWILD2_TO_MELD: tuple[int, ...] = (0, 6, 5, 2, 4, 3, 1)
#: MELD label -> Aff-Wild2 index (the inverse permutation).
MELD_TO_AFFWILD2: tuple[int, ...] = tuple(AFFWILD2_TO_MELD.index(m) for m in range(len(EMOTIONS)))

IMAGE_DIR = "cropped_aligned"
ANNOTATION_DIR = "Third_ABAW_Annotations/EXPR_Classification_Challenge/Train_Set"


class AffWild2FormatError(ValueError):
    """An annotation file does not follow the ABAW3 expression format (names file and line)."""


def read_expression_file(path: str | Path) -> np.ndarray:
    """Labels of one video's annotation txt: (n,) int64 Aff-Wild2 indices, -1..7, frame 1..n."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    if not lines or lines[0].replace(" ", "").lower() != ANNOTATION_HEADER.lower():
        got = lines[0][:80] if lines else "an empty file"
        raise AffWild2FormatError(f"{path}:1: expected the header {ANNOTATION_HEADER!r}, got {got!r}")
    labels = []
    for number, line in enumerate(lines[1:], start=2):
        text = line.strip()
        if not text:
            continue
        try:
            value = int(text)
        except ValueError:
            raise AffWild2FormatError(f"{path}:{number}: expected an integer label, got {text!r}") from None
        if not INVALID <= value <= OTHER:
            raise AffWild2FormatError(f"{path}:{number}: label {value} outside -1..7")
        labels.append(value)
    return np.asarray(labels, dtype=np.int64)


@dataclass
class AffWild2Index:
    """The usable frames of an Aff-Wild2 annotation folder.

    Attributes:
        image_root: the ``cropped_aligned`` folder.
        files: (M,) image paths relative to ``image_root`` (``<video>/<frame:05d>.jpg``),
            videos sorted by name, frames in order.
        labels: (M,) int64 MELD labels.
        stats: counts: ``videos``, ``annotated`` (lines), ``invalid`` (-1), ``other`` (7),
            ``missing_image`` (labelled but no JPEG), ``videos_without_images``, ``kept``.
    """

    image_root: Path
    files: list[str]
    labels: np.ndarray
    stats: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.files)

    def class_counts(self) -> np.ndarray:
        """(7,) int64 frames per MELD label (for class weights or sampling)."""
        return np.bincount(self.labels, minlength=len(EMOTIONS)).astype(np.int64)


def scan_affwild2(
    image_root: str | Path, annotation_root: str | Path, *, videos: Sequence[str] | None = None
) -> AffWild2Index:
    """Index the annotated frames of ``annotation_root/*.txt`` that have a JPEG in ``image_root``.

    Args:
        image_root: the ``cropped_aligned`` folder.
        annotation_root: folder of ``<video>.txt`` files.
        videos: only these videos (default: every txt, sorted by name).
    """
    image_root, annotation_root = Path(image_root), Path(annotation_root)
    if not annotation_root.is_dir():
        raise FileNotFoundError(f"Aff-Wild2 annotation folder not found: {annotation_root}")
    if not image_root.is_dir():
        raise FileNotFoundError(f"Aff-Wild2 image folder not found: {image_root}")
    names = sorted(p.stem for p in annotation_root.glob("*.txt")) if videos is None else list(videos)
    stats = dict.fromkeys(("videos", "annotated", "invalid", "other", "missing_image", "videos_without_images",
                           "kept"), 0)
    table = np.asarray(AFFWILD2_TO_MELD + (-1,), dtype=np.int64)  # index 7 never used after dropping
    files: list[str] = []
    labels: list[np.ndarray] = []
    for video in names:
        raw = read_expression_file(annotation_root / f"{video}.txt")  # (n,)
        stats["videos"] += 1
        stats["annotated"] += len(raw)
        stats["invalid"] += int((raw == INVALID).sum())
        stats["other"] += int((raw == OTHER).sum())
        frame_dir = image_root / video
        present = set(os.listdir(frame_dir)) if frame_dir.is_dir() else set()
        if not present:
            stats["videos_without_images"] += 1
        frames = np.flatnonzero((raw != INVALID) & (raw != OTHER)) + 1  # 1-based frame numbers
        have = np.array([f"{i:05d}.jpg" in present for i in frames], dtype=bool)
        stats["missing_image"] += int((~have).sum())
        frames = frames[have]
        files.extend(f"{video}/{i:05d}.jpg" for i in frames)
        labels.append(table[raw[frames - 1]])
    out = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    stats["kept"] = len(files)
    if stats["missing_image"]:
        logger.warning("Aff-Wild2 %s: %d labelled frames have no JPEG in %s (skipped)", annotation_root,
                       stats["missing_image"], image_root)
    logger.info("Aff-Wild2 %s: %d videos, %d frames kept (%d invalid, %d Other dropped)", annotation_root,
                stats["videos"], stats["kept"], stats["invalid"], stats["other"])
    return AffWild2Index(image_root=image_root, files=files, labels=out, stats=stats)


# ------------------------------------------------------------------------------------------------
# dataset


@dataclass
class AugmentConfig:
    """Training augmentation of Aff-Wild2 faces; each ``*_p`` is the probability it is applied.

    ``enabled: false`` turns it off (validation / evaluation); ``jitter``: ColorJitter
    (brightness, contrast, saturation, hue); ``blur_sigma``: (min, max); ``erase_p``: random
    erasing with per-pixel noise (float output only). Order: grayscale, jitter, blur, erasing.
    """

    enabled: bool = True
    grayscale_p: float = 0.2
    jitter_p: float = 0.8
    jitter: list[float] = field(default_factory=lambda: [0.4, 0.4, 0.4, 0.1])
    blur_p: float = 0.5
    blur_sigma: list[float] = field(default_factory=lambda: [0.1, 2.0])
    erase_p: float = 0.25

    def __post_init__(self) -> None:
        for name in ("grayscale_p", "jitter_p", "blur_p", "erase_p"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ConfigError(f"affwild2.augment.{name} must be a probability, got {getattr(self, name)!r}")
        if len(self.jitter) != 4 or not 0.0 <= float(self.jitter[3]) <= 0.5:
            raise ConfigError(f"affwild2.augment.jitter must be [brightness, contrast, saturation, hue<=0.5], "
                              f"got {self.jitter!r}")
        if len(self.blur_sigma) != 2 or not 0 < float(self.blur_sigma[0]) <= float(self.blur_sigma[1]):
            raise ConfigError(f"affwild2.augment.blur_sigma must be [min, max] > 0, got {self.blur_sigma!r}")

    @classmethod
    def facialmmt(cls) -> AugmentConfig:
        """FacialMMT's EFFECTIVE augmentation : its ``RandomApply`` fired when
        ``random() > p``, so grayscale (named 0.2) ran with 0.8, colour jitter (0.4 x 4, named 0.8)
        with 0.2, blur with 0.5; random erasing 0.25."""
        return cls(grayscale_p=0.8, jitter_p=0.2, jitter=[0.4, 0.4, 0.4, 0.4], blur_p=0.5, erase_p=0.25)

    @classmethod
    def named(cls, name: str) -> AugmentConfig:
        """``project`` (the defaults) or ``facialmmt`` (``train.aux_augment``)."""
        if name == "project":
            return cls()
        if name == "facialmmt":
            return cls.facialmmt()
        raise ConfigError(f"augmentation must be 'project' or 'facialmmt', got {name!r}")


@dataclass
class AffWild2Config:
    """``affwild2`` section of params.yaml (strict keys: build it with ``params.from_dict``).

    Attributes:
        root: data root; ``images`` and ``annotations`` are relative to it.
        images, annotations: the ``cropped_aligned`` folder and the annotation folder.
        image_size: side of the float output (bicubic resize; 112 crops are upsampled).
        output: ``float`` -> (3, S, S) float32 normalised ((x - 0.5) / 0.5, in ``channel_order``);
            ``uint8`` -> (H, W, 3) uint8 RGB at the stored size, augmented but neither resized,
            normalised nor erased: resize/normalise on the GPU with
            :func:`stage2_mer.fer.frames.faces_to_input` (small worker-to-GPU transfers).
        augment: training augmentation (``augment: {enabled: false}`` for validation).
        channel_order: ``bgr`` or ``rgb``, the float output's channel order (``fer.channel_order``;
            the uint8 output stays RGB: :func:`~stage2_mer.fer.frames.faces_to_input` swaps it).
    """

    root: str = "data/affwild2"
    images: str = IMAGE_DIR
    annotations: str = ANNOTATION_DIR
    image_size: int = 224
    output: str = "float"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    channel_order: str = "bgr"

    def __post_init__(self) -> None:
        if self.output not in ("float", "uint8"):
            raise ConfigError(f"affwild2.output must be 'float' or 'uint8', got {self.output!r}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ConfigError(f"affwild2.channel_order must be one of {CHANNEL_ORDERS}, got {self.channel_order!r}")
        if int(self.image_size) < 1:
            raise ConfigError(f"affwild2.image_size must be >= 1, got {self.image_size!r}")

    @property
    def image_root(self) -> Path:
        return Path(self.root) / self.images

    @property
    def annotation_root(self) -> Path:
        return Path(self.root) / self.annotations


def _blur_kernel(side: int) -> int:
    """Odd Gaussian kernel about 10 % of the image side (at least 3)."""
    return max(3, (side // 10) // 2 * 2 + 1)


class AffWild2Dataset(torch.utils.data.Dataset):
    """Aff-Wild2 frames as ``(image, label)``: image per ``output`` (see :class:`AffWild2Config`),
    label an int64 scalar tensor in MELD order. ``augment`` None or disabled: no augmentation."""

    def __init__(
        self,
        index: AffWild2Index,
        *,
        image_size: int = 224,
        output: str = "float",
        augment: AugmentConfig | None = None,
        channel_order: str = "bgr",
    ) -> None:
        if output not in ("float", "uint8"):
            raise ConfigError(f"output must be 'float' or 'uint8', got {output!r}")
        if channel_order not in CHANNEL_ORDERS:
            raise ConfigError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
        self.channel_order = channel_order
        self.index = index
        self.image_size = int(image_size)
        self.output = output
        self.augment = augment if augment is not None and augment.enabled else None
        self._colour = None
        self._blurs: dict[int, object] = {}
        if self.augment is not None:
            from torchvision.transforms import v2

            b, c, s, h = (float(v) for v in augment.jitter)
            self._colour = [
                (float(augment.grayscale_p), v2.Grayscale(num_output_channels=3)),
                (float(augment.jitter_p), v2.ColorJitter(brightness=b, contrast=c, saturation=s, hue=h)),
            ]
            self._erase = v2.RandomErasing(p=float(augment.erase_p), value="random")

    @classmethod
    def from_config(cls, cfg: AffWild2Config) -> AffWild2Dataset:
        index = scan_affwild2(cfg.image_root, cfg.annotation_root)
        return cls(index, image_size=cfg.image_size, output=cfg.output, augment=cfg.augment,
                   channel_order=cfg.channel_order)

    def __len__(self) -> int:
        return len(self.index)

    def _apply(self, p: float, fn, img: torch.Tensor) -> torch.Tensor:
        return fn(img) if p > 0 and float(torch.rand(())) < p else img

    def _blur(self, side: int):
        """GaussianBlur with a kernel about 10 % of ``side`` (one per image size, cached)."""
        if side not in self._blurs:
            from torchvision.transforms import v2

            sigma = tuple(float(v) for v in self.augment.blur_sigma)
            self._blurs[side] = v2.GaussianBlur(_blur_kernel(side), sigma=sigma)
        return self._blurs[side]

    def _augment(self, img: torch.Tensor) -> torch.Tensor:  # img (3, H, W) uint8
        for p, fn in self._colour:
            img = self._apply(p, fn, img)
        return self._apply(float(self.augment.blur_p), self._blur(int(min(img.shape[-2:]))), img)

    def read(self, i: int) -> torch.Tensor:
        """Frame ``i`` decoded: (3, H, W) uint8 RGB (PIL, converted to RGB whatever the JPEG mode)."""
        from PIL import Image

        path = self.index.image_root / self.index.files[i]
        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))  # (H, W, 3) uint8
        except Exception as exc:
            raise OSError(f"cannot decode Aff-Wild2 frame {path}: {exc}") from exc
        return torch.from_numpy(rgb.copy()).permute(2, 0, 1)  # (3, H, W)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.transforms.v2 import functional as TF

        img = self.read(i)  # (3, H, W) uint8 RGB
        label = torch.tensor(int(self.index.labels[i]), dtype=torch.int64)
        if self.output == "uint8":
            if self.augment is not None:
                img = self._augment(img)
            return img.permute(1, 2, 0).contiguous(), label  # (H, W, 3) uint8
        if tuple(img.shape[-2:]) != (self.image_size, self.image_size):
            img = TF.resize(img, [self.image_size, self.image_size],
                            interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
        if self.augment is not None:
            img = self._augment(img)
        if self.channel_order == "bgr":
            img = img.flip(0)  # augmented in RGB (grayscale weights, hue), fed in the Swin's order
        x = img.to(torch.float32).div_(255.0).sub_(0.5).div_(0.5)  # (3, S, S) in [-1, 1]
        if self.augment is not None:
            x = self._erase(x)
        return x, label


# ------------------------------------------------------------------------------------------------
# demo data

#: The stage that writes the demo's stand-in (its ownership mark, ``runstate.claim_output``).
STANDIN_STAGE = "make_affwild2"
#: The demo corpus generator writes this file into its MELD.Raw (make_demo; doctor tells the demo by it).
DEMO_TRUTH = "truth.json"


def is_demo_corpus(meld_root: str | Path) -> bool:
    """Is ``meld_root`` the generated demo corpus (it holds the generator's ``truth.json``)?"""
    return (Path(meld_root) / DEMO_TRUTH).is_file()


def is_affwild2_standin(folder: str | Path) -> bool:
    """Is ``folder`` the demo's Aff-Wild2 stand-in (the ``make_affwild2`` stage's output mark)?"""
    import json

    from stage1_face_extraction.common.runstate import OWNER

    mark = Path(folder) / OWNER
    try:
        return mark.is_file() and json.loads(mark.read_text(encoding="utf-8")).get("stage") == STANDIN_STAGE
    except (OSError, ValueError, AttributeError):
        return False


def check_affwild2_source(folder: str | Path, meld_root: str | Path | None) -> None:
    """Refuse (:class:`ConfigError`) the demo's stand-in for any run that is not on the demo corpus.

    The stand-in holds MELD train faces labelled with their utterances' emotions: on real MELD the
    FER network would learn MELD's labels and hand its in-sample outputs to the MER model (label
    leakage). ``meld_root`` None (unknown) counts as real MELD.
    """
    if not is_affwild2_standin(folder):
        return
    if meld_root is not None and is_demo_corpus(meld_root):
        return
    where = f"{meld_root} is not the demo corpus (no {DEMO_TRUTH})" if meld_root is not None else \
        "the MELD folder is unknown (pass --meld-root)"
    raise ConfigError(f"{folder} is the demo's Aff-Wild2 stand-in ({STANDIN_STAGE}: MELD train faces labelled "
                      f"with their utterances' emotions) and {where}: training the FER network on it leaks MELD "
                      "labels into the model. Point train's --affwild2 (dvc.yaml) at a real Aff-Wild2 folder "
                      "(docs/real-meld.md) or set train.aux_ratio: 0")


def write_demo_affwild2(
    out_dir: str | Path,
    faces: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    *,
    frames_per_video: int | None = None,
    annotations: str = ANNOTATION_DIR,
) -> Path:
    """Write a tiny Aff-Wild2-layout folder from face crops, so the FER path runs in the demo.

    Args:
        out_dir: the data root to create (``cropped_aligned/`` and ``annotations`` under it).
        faces: (N, H, W, 3) uint8 RGB crops.
        labels: (N,) MELD labels 0..6, written back as Aff-Wild2 indices (``MELD_TO_AFFWILD2``).
        frames_per_video: frames per video ``demo_000``, ``demo_001``, ... (default all in one).
        annotations: annotation folder relative to ``out_dir``.

    Returns:
        ``out_dir`` (use it as ``AffWild2Config.root``).
    """
    from PIL import Image

    faces = np.asarray(faces)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if faces.ndim != 4 or faces.shape[-1] != 3 or faces.dtype != np.uint8:
        raise ValueError(f"faces must be (N, H, W, 3) uint8 RGB, got {faces.dtype} {faces.shape}")
    if len(labels) != len(faces):
        raise ValueError(f"{len(faces)} faces but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(EMOTIONS)):
        raise ValueError(f"labels must be MELD labels 0..{len(EMOTIONS) - 1}")
    out_dir = Path(out_dir)
    per = int(frames_per_video or max(1, len(faces)))
    anno_root = out_dir / annotations
    anno_root.mkdir(parents=True, exist_ok=True)
    to_affwild2 = np.asarray(MELD_TO_AFFWILD2, dtype=np.int64)
    for v, start in enumerate(range(0, len(faces), per)):
        video = f"demo_{v:03d}"
        frame_dir = out_dir / IMAGE_DIR / video
        frame_dir.mkdir(parents=True, exist_ok=True)
        chunk = slice(start, start + per)
        for j, face in enumerate(faces[chunk], start=1):
            Image.fromarray(np.ascontiguousarray(face)).save(frame_dir / f"{j:05d}.jpg", quality=95,
                                                         subsampling=0)
        lines = [ANNOTATION_HEADER, *(str(int(k)) for k in to_affwild2[labels[chunk]])]
        (anno_root / f"{video}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    logger.info("wrote a demo Aff-Wild2 folder with %d frames to %s", len(faces), out_dir)
    return out_dir
