"""Character library of the demo corpus, built only from images that ship inside installed packages.

Sources (nothing is downloaded, nothing is read from ``../shared``):

* ``insightface/data/images/t1.jpg`` (1280x886): a photo of six people around a poker table, the
  six main characters of the sitcom MELD comes from. The file is located with
  :func:`importlib.util.find_spec`, so insightface itself is never imported.
* ``skimage.data.astronaut()`` (512x512): one face, used for a seventh character ("Eileen").

MTCNN (facenet-pytorch, CPU) runs once on each source photo to find the faces and their five
landmarks (left eye, right eye, nose, left mouth corner, right mouth corner). Each face becomes a
:class:`Character`: a head-and-shoulders cut-out, rotated so the eyes are level and scaled to a
canonical face height, with a soft alpha mask that keeps the head, neck and shoulders and removes
every OTHER face of the source photo. MTCNN then runs once more on each cut-out (composited over
flat grey) so the face box and landmarks stored in the character are exactly what MTCNN reports in
the cut-out's own pixels. Everything is deterministic (no randomness; MTCNN on CPU).
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

logger = logging.getLogger(__name__)

# Canonical cut-out geometry, in units of the MTCNN face-box height ``fh``.
CANON_FACE_H = 160  # px: face-box height inside every cut-out
CUTOUT_W = 2.6  # cut-out width / fh
CUTOUT_H = 2.3  # cut-out height / fh
FACE_CY = 0.82  # face-box centre y / fh (x is centred)
MIN_SOURCE_SCORE = 0.95  # MTCNN probability for a source face to count
MIN_SOURCE_FACE_H = 60.0  # px: smaller source detections are background clutter

# t1.jpg faces, left to right by face-box centre x, and their voice pitch (Hz).
T1_CAST: tuple[tuple[str, float], ...] = (
    ("Rachel", 215.0),
    ("Monica", 200.0),
    ("Ross", 115.0),
    ("Chandler", 125.0),
    ("Joey", 105.0),
    ("Phoebe", 230.0),
)
ASTRONAUT_CAST: tuple[str, float] = ("Eileen", 190.0)


class AssetError(RuntimeError):
    """A packaged asset is missing or MTCNN did not find the expected faces in it."""


@dataclass(frozen=True)
class Character:
    """One person of the demo cast: a head-and-shoulders cut-out with its MTCNN face geometry."""

    name: str
    rgb: np.ndarray  # (H, W, 3) uint8 cut-out pixels
    alpha: np.ndarray  # (H, W) float32 in [0, 1], soft mask of head, neck and shoulders
    box: np.ndarray  # (4,) float32 MTCNN face box x1, y1, x2, y2 in cut-out pixels
    landmarks: np.ndarray  # (5, 2) float32 MTCNN landmarks in cut-out pixels
    score: float  # MTCNN probability on the cut-out
    pitch_hz: float  # mean voice f0 used by the speech synthesiser
    source: str  # e.g. "insightface:data/images/t1.jpg#2"

    @property
    def face_h(self) -> float:
        return float(self.box[3] - self.box[1])


# --------------------------------------------------------------------------------------------
# Package assets
# --------------------------------------------------------------------------------------------


def package_file(package: str, *parts: str) -> Path:
    """Path of a data file inside an installed package, found WITHOUT importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(f"package '{package}' is not installed (needed for the demo corpus assets)")
    for root in spec.submodule_search_locations:
        path = Path(root).joinpath(*parts)
        if path.is_file():
            return path
    raise AssetError(f"asset {'/'.join(parts)} not found inside package '{package}'")


def load_t1() -> np.ndarray:
    """insightface's six-person photo as (886, 1280, 3) uint8 RGB."""
    path = package_file("insightface", "data", "images", "t1.jpg")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise AssetError(f"cannot decode {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_astronaut() -> np.ndarray:
    """scikit-image's astronaut photo as (512, 512, 3) uint8 RGB."""
    from skimage import data  # local import: scikit-image is slowish to import

    return np.ascontiguousarray(data.astronaut()[..., :3], dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# MTCNN
# --------------------------------------------------------------------------------------------


def make_detector() -> Any:
    """facenet-pytorch MTCNN on the CPU, keeping every face, in float64 (:func:`portable`)."""
    from facenet_pytorch import MTCNN  # local import: pulls in torch

    return MTCNN(keep_all=True, device="cpu").double()


@contextmanager
def portable() -> Iterator[None]:
    """Numerics that do not depend on the CPU inside the block, so that the demo corpus has the same
    bytes on every x86-64 machine: OpenCV's CPU-dispatched code paths off (``cv2.setUseOptimized``:
    its AVX2 / AVX-512 float kernels round differently from the baseline ones), and the MTCNN
    detectors run in float64 (facenet-pytorch runs in its weights' dtype; float64 convolutions do
    not go through oneDNN's ISA-specific float32 kernels, and :func:`detect` rounds the results to
    float32, which hides the remaining last-bit differences)."""
    import cv2

    with _temporarily(cv2.useOptimized, cv2.setUseOptimized, False):
        yield


@contextmanager
def _temporarily(get: Any, put: Any, value: Any) -> Iterator[None]:
    """``put(value)`` inside the block, the value ``get()`` gave before it afterwards."""
    before = get()
    put(value)
    try:
        yield
    finally:
        put(before)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch with ``n`` intra-op threads inside the block (results then do not depend on the
    machine's core count, and a busy machine does not make the thread pool spin)."""
    import torch

    with _temporarily(torch.get_num_threads, torch.set_num_threads, n):
        yield


def detect(detector: Any, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run MTCNN (one torch thread) on one (H, W, 3) uint8 RGB image.

    Returns boxes (N, 4) float32, scores (N,) float32, landmarks (N, 5, 2) float32 (N may be 0).
    facenet-pytorch returns object-dtype arrays (or None) under numpy 2; both are normalised here.
    """
    with torch_threads(1):
        boxes, probs, points = detector.detect(np.ascontiguousarray(rgb), landmarks=True)
    if boxes is None:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32)
    boxes = np.asarray(boxes.tolist() if hasattr(boxes, "tolist") else boxes, dtype=np.float32).reshape(-1, 4)
    probs = np.asarray(probs.tolist() if hasattr(probs, "tolist") else probs, dtype=np.float32).reshape(-1)
    points = np.asarray(points.tolist() if hasattr(points, "tolist") else points, dtype=np.float32).reshape(-1, 5, 2)
    return boxes, probs, points


def _source_faces(detector: Any, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confident, big-enough faces of a source photo, sorted left to right."""
    boxes, probs, points = detect(detector, rgb)
    keep = (probs >= MIN_SOURCE_SCORE) & ((boxes[:, 3] - boxes[:, 1]) >= MIN_SOURCE_FACE_H)
    boxes, probs, points = boxes[keep], probs[keep], points[keep]
    order = np.argsort((boxes[:, 0] + boxes[:, 2]) / 2.0, kind="stable")
    return boxes[order], probs[order], points[order]


# --------------------------------------------------------------------------------------------
# Cut-outs
# --------------------------------------------------------------------------------------------


def _alignment(box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(2, 3) affine from source pixels to canonical cut-out pixels (eyes level, fixed face size)."""
    left_eye, right_eye = landmarks[0], landmarks[1]
    angle = math.atan2(float(right_eye[1] - left_eye[1]), float(right_eye[0] - left_eye[0]))
    scale = CANON_FACE_H / float(box[3] - box[1])
    cos, sin = math.cos(-angle) * scale, math.sin(-angle) * scale
    src_c = np.array([(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0], np.float64)
    dst_c = np.array([CUTOUT_W * CANON_FACE_H / 2.0, FACE_CY * CANON_FACE_H], np.float64)
    rot = np.array([[cos, -sin], [sin, cos]], np.float64)
    return np.concatenate([rot, (dst_c - rot @ src_c)[:, None]], axis=1)


def _cutout_mask(size: tuple[int, int], excluded: list[np.ndarray]) -> np.ndarray:
    """Soft head + neck + shoulders alpha (H, W) float32 without the ``excluded`` face regions.

    ``excluded`` holds (4, 2) quadrilaterals (other faces' boxes, enlarged, in cut-out pixels).
    """
    w, h = size
    fh = float(CANON_FACE_H)
    cx, cy = w / 2.0, FACE_CY * fh
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (round(cx), round(cy - 0.10 * fh)), (round(0.56 * fh), round(0.76 * fh)), 0, 0, 360, 255, -1)
    cv2.rectangle(mask, (round(cx - 0.30 * fh), round(cy)), (round(cx + 0.30 * fh), h), 255, -1)
    cv2.ellipse(mask, (round(cx), round(cy + 1.60 * fh)), (round(1.22 * fh), round(0.95 * fh)), 0, 0, 360, 255, -1)
    for quad in excluded:
        cv2.fillConvexPoly(mask, np.round(quad).astype(np.int32), 0)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), sigmaX=3.0)
    return alpha


def _enlarged_quad(box: np.ndarray, factor: float) -> np.ndarray:
    """(4, 2) corners of ``box`` grown by ``factor`` around its centre."""
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    hw, hh = (box[2] - box[0]) * factor / 2.0, (box[3] - box[1]) * factor / 2.0
    return np.array([[cx - hw, cy - hh], [cx + hw, cy - hh], [cx + hw, cy + hh], [cx - hw, cy + hh]], np.float64)


def make_cutout(
    rgb: np.ndarray, box: np.ndarray, landmarks: np.ndarray, others: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Head-and-shoulders cut-out of one face of a source photo.

    rgb: (H, W, 3) uint8 source; box (4,), landmarks (5, 2): that face; others: (K, 4) boxes of the
    other faces in the photo, masked out. Returns the canonical cut-out (h, w, 3) uint8 and its
    alpha (h, w) float32.
    """
    w, h = round(CUTOUT_W * CANON_FACE_H), round(CUTOUT_H * CANON_FACE_H)
    m = _alignment(box, landmarks)
    cut = cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpAffine(np.full(rgb.shape[:2], 255, np.uint8), m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
    excluded = []
    for other in others:
        quad = _enlarged_quad(other, 1.35)
        excluded.append(quad @ m[:, :2].T + m[:, 2])
    alpha = _cutout_mask((w, h), excluded) * (inside.astype(np.float32) / 255.0)
    return cut, alpha.astype(np.float32)


def composite_on_grey(rgb: np.ndarray, alpha: np.ndarray, grey: int = 128) -> np.ndarray:
    """(H, W, 3) uint8 of the cut-out over a flat grey background."""
    a = alpha[..., None]
    return np.clip(rgb.astype(np.float32) * a + grey * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)


def _character_from_source(
    detector: Any,
    name: str,
    pitch_hz: float,
    source: str,
    rgb: np.ndarray,
    box: np.ndarray,
    landmarks: np.ndarray,
    others: np.ndarray,
) -> Character:
    cut, alpha = make_cutout(rgb, box, landmarks, others)
    boxes, probs, points = detect(detector, composite_on_grey(cut, alpha))
    if len(boxes) == 0:
        raise AssetError(f"MTCNN finds no face in the cut-out of {name} ({source})")
    if len(boxes) > 1:
        logger.warning("cut-out of %s has %d MTCNN detections; keeping the most confident", name, len(boxes))
    best = int(np.argmax(probs))
    return Character(
        name=name,
        rgb=cut,
        alpha=alpha,
        box=np.round(boxes[best], 2).astype(np.float32),
        landmarks=np.round(points[best], 2).astype(np.float32),
        score=float(probs[best]),
        pitch_hz=pitch_hz,
        source=source,
    )


@lru_cache(maxsize=1)
def build_library() -> tuple[Character, ...]:
    """The seven demo characters (six from t1.jpg, left to right, then the astronaut).

    Cached per process; takes about 2 s on 2 CPU cores (MTCNN load + 9 detections).
    """
    with portable():
        return _build_library()


def _build_library() -> tuple[Character, ...]:
    detector = make_detector()
    chars: list[Character] = []

    t1 = load_t1()
    boxes, _, points = _source_faces(detector, t1)
    if len(boxes) != len(T1_CAST):
        raise AssetError(f"expected {len(T1_CAST)} confident faces in t1.jpg, MTCNN found {len(boxes)}")
    for i, (name, pitch) in enumerate(T1_CAST):
        others = np.delete(boxes, i, axis=0)
        chars.append(
            _character_from_source(
                detector, name, pitch, f"insightface:data/images/t1.jpg#{i}", t1, boxes[i], points[i], others
            )
        )

    astro = load_astronaut()
    boxes, _, points = _source_faces(detector, astro)
    if len(boxes) != 1:
        raise AssetError(f"expected 1 confident face in skimage astronaut, MTCNN found {len(boxes)}")
    name, pitch = ASTRONAUT_CAST
    chars.append(
        _character_from_source(
            detector, name, pitch, "skimage:data.astronaut", astro, boxes[0], points[0], np.zeros((0, 4), np.float32)
        )
    )
    logger.info("demo character library: %s", ", ".join(f"{c.name} (p={c.score:.3f})" for c in chars))
    return tuple(chars)


def character_by_name(library: tuple[Character, ...] | list[Character]) -> dict[str, Character]:
    """Name -> character."""
    return {c.name: c for c in library}
