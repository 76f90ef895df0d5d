"""5-point similarity alignment of faces to fixed-size crops (FacSeqs-160 style).

Reference template
------------------
The template is the mean position of the five MTCNN landmarks *inside the MTCNN box*, measured
with facenet-pytorch's MTCNN on 22 real faces (the scikit-image astronaut, the photos in
``shared/data/faces`` and insightface's ``t1.jpg``; detector score >= 0.95) and made
left/right symmetric. In box-relative units ``(u, v)`` (0 = left/top edge, 1 = right/bottom edge):

    ============  =======  =======
    point          u        v
    ============  =======  =======
    left eye       0.286    0.399
    right eye      0.714    0.399
    nose           0.500    0.599
    left mouth     0.301    0.747
    right mouth    0.699    0.747
    ============  =======  =======

MTCNN boxes are taller than wide (mean height/width 1.31 over the same faces, ``BOX_ASPECT``).
facenet-pytorch's ``MTCNN(image_size=160, margin=m)`` crops the box grown by ``m`` output pixels in
total (``m / 2`` per side) and resizes it to a 160x160 square, so its faces are squeezed vertically
by that aspect. :func:`align_face` reproduces this look with a proper 5-point fit:

1. the template in output pixels is ``T = m/2 + (u, v) * (size - m)``;
2. a least-squares similarity (rotation + isotropic scale + shift, Umeyama) maps the detected
   landmarks onto ``T`` measured in an *isotropic* frame (``y`` multiplied by ``box_aspect``);
3. the fixed vertical squeeze ``y / box_aspect`` is applied on top.

So a frontal, upright face comes out like a facenet-pytorch 160 crop with the same margin, while
head roll and detector box jitter are removed. ``box_aspect=1.0`` gives undistorted faces.

Without landmarks (detectors that give none, interpolated track rows, or landmarks that disagree
with the box by more than a factor 2 in scale) the crop is the box region re-centred to the same
aspect (area kept), grown by the margin and resized: for an MTCNN box this is exactly the
facenet-pytorch crop; with ``box_aspect=1.0`` it is a square margin box crop. Pixels outside the
frame are black (``border="constant"``) or repeat the edge (``border="replicate"``).

Large downscales are pre-filtered with ``cv2.INTER_AREA`` on the needed region only, so crops do
not alias and the cost does not depend on the frame size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import numpy as np

logger = logging.getLogger(__name__)

#: Mean MTCNN landmarks in box-relative units (u, v), order: left eye, right eye, nose,
#: left mouth corner, right mouth corner (as seen in the image).
TEMPLATE_UV = np.array(
    [
        [0.286, 0.399],
        [0.714, 0.399],
        [0.500, 0.599],
        [0.301, 0.747],
        [0.699, 0.747],
    ],
    dtype=np.float64,
)

#: Mean height / width of an MTCNN face box (see module docstring).
BOX_ASPECT = 1.31

_BORDERS = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}


def reference_landmarks(size: int = 160, margin: float = 0.0) -> np.ndarray:
    """Template landmarks in output pixels of a ``size`` x ``size`` crop -> (5, 2) float64."""
    if size <= 0 or not 0 <= margin < size:
        raise ValueError(f"need size > 0 and 0 <= margin < size, got size={size}, margin={margin}")
    return margin / 2.0 + TEMPLATE_UV * (size - margin)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity ``dst ~ s R src + t`` (Umeyama 1991, no reflection) -> (2, 3).

    src, dst: (K, 2) point sets, K >= 2.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need two (K>=2, 2) point sets of equal shape, got {src.shape}, {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    var_s = (xs**2).sum() / len(src)
    if var_s <= 1e-12:
        raise ValueError("degenerate source points (all equal)")
    cov = xd.T @ xs / len(src)  # (2, 2)
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    scale = float((d * sign).sum() / var_s)
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def _valid_landmarks(landmarks: np.ndarray | None) -> bool:
    if landmarks is None:
        return False
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (5, 2) or not np.isfinite(lm).all():
        return False
    return float(np.linalg.norm(lm[1] - lm[0])) > 1.0


def box_matrix(
    box: np.ndarray, size: int = 160, margin: float = 0.0, box_aspect: float = BOX_ASPECT
) -> np.ndarray:
    """Affine (2, 3) taking the aspect-normalised, margin-grown box to the ``size`` square."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, np.float64)[:4])
    bw, bh = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    w0 = np.sqrt(bw * bh / box_aspect)  # region width with the reference aspect, same area
    sx = (size - margin) / w0
    sy = (size - margin) / (w0 * box_aspect)
    return np.array([[sx, 0.0, size / 2.0 - sx * cx], [0.0, sy, size / 2.0 - sy * cy]])


def alignment_matrix(
    landmarks: np.ndarray | None,
    box: np.ndarray,
    size: int = 160,
    margin: float = 0.0,
    box_aspect: float = BOX_ASPECT,
) -> tuple[np.ndarray, bool]:
    """Source->crop affine (2, 3) and whether the landmarks were used (see module docstring)."""
    fallback = box_matrix(box, size, margin, box_aspect)
    if not _valid_landmarks(landmarks):
        return fallback, False
    lm = np.asarray(landmarks, np.float64)
    iso = reference_landmarks(size, margin)
    iso[:, 1] *= box_aspect  # isotropic frame
    sim = similarity_transform(lm, iso)
    m = sim.copy()
    m[1] /= box_aspect  # the fixed facenet-style vertical squeeze
    # landmarks that disagree with the box (wrong face, swapped points) -> trust the box
    s_sim = float(np.sqrt(abs(np.linalg.det(sim[:, :2]))))
    s_box = float(np.sqrt(abs(np.linalg.det(fallback[:, :2])) * box_aspect))
    if not 0.5 < s_sim / max(s_box, 1e-9) < 2.0 or sim[0, 0] <= 0:
        logger.debug("landmarks inconsistent with box (scale %.3f vs %.3f): box crop", s_sim, s_box)
        return fallback, False
    return m, True


def warp_crop(
    image: np.ndarray,
    matrix: np.ndarray,
    out_hw: tuple[int, int],
    border: str = "constant",
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Apply source->output affine ``matrix`` (2, 3) to ``image`` (H, W[, C]) -> (h, w[, C]).

    Only the source region that the output needs is touched; downscales by more than 1.25x are
    pre-filtered with ``INTER_AREA`` so thin structures do not alias.
    """
    if border not in _BORDERS:
        raise ValueError(f"border must be one of {sorted(_BORDERS)}, got {border!r}")
    h_out, w_out = int(out_hw[0]), int(out_hw[1])
    img_h, img_w = image.shape[:2]
    m = np.asarray(matrix, np.float64).reshape(2, 3)
    a, b = m[:, :2], m[:, 2]
    inv = np.linalg.inv(a)
    corners = np.array([[0, 0], [w_out, 0], [0, h_out], [w_out, h_out]], np.float64)
    src = (corners - b) @ inv.T  # (4, 2) where the output corners come from
    x0 = int(np.clip(np.floor(src[:, 0].min()) - 2, 0, img_w - 1))
    y0 = int(np.clip(np.floor(src[:, 1].min()) - 2, 0, img_h - 1))
    x1 = int(np.clip(np.ceil(src[:, 0].max()) + 3, x0 + 1, img_w))
    y1 = int(np.clip(np.ceil(src[:, 1].max()) + 3, y0 + 1, img_h))
    roi = image[y0:y1, x0:x1]
    b = b + a @ np.array([x0, y0], np.float64)  # ROI coordinates
    scale = float(np.sqrt(abs(np.linalg.det(a))))
    if scale < 0.8 and min(roi.shape[:2]) > 4:
        rw = max(1, int(round(roi.shape[1] * scale)))
        rh = max(1, int(round(roi.shape[0] * scale)))
        fx, fy = rw / roi.shape[1], rh / roi.shape[0]
        roi = cv2.resize(roi, (rw, rh), interpolation=cv2.INTER_AREA)
        # resized pixel p2 <- original (p2 + 0.5) / f - 0.5
        pre = np.diag([1.0 / fx, 1.0 / fy])
        b = b + a @ np.array([0.5 / fx - 0.5, 0.5 / fy - 0.5])
        a = a @ pre
    m2 = np.hstack([a, b[:, None]]).astype(np.float64)
    return cv2.warpAffine(
        np.ascontiguousarray(roi),
        m2,
        (w_out, h_out),
        flags=interpolation,
        borderMode=_BORDERS[border],
        borderValue=0,
    )


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray | None,
    box: np.ndarray,
    size: int = 160,
    margin: float = 0.0,
    box_aspect: float = BOX_ASPECT,
    border: str = "constant",
) -> np.ndarray:
    """One aligned face crop.

    image: (H, W, 3) uint8 RGB; landmarks: (5, 2) source pixels or None (NaN rows count as None);
    box: (4,) x1, y1, x2, y2. Returns (size, size, 3) uint8.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    m, _ = alignment_matrix(landmarks, box, size, margin, box_aspect)
    out = warp_crop(image, m, (size, size), border=border)
    return out.astype(np.uint8, copy=False)


def align_faces(
    images: Sequence[np.ndarray] | np.ndarray,
    landmarks: np.ndarray | Sequence[np.ndarray | None] | None,
    boxes: np.ndarray,
    size: int = 160,
    margin: float = 0.0,
    box_aspect: float = BOX_ASPECT,
    border: str = "constant",
) -> np.ndarray:
    """Batched :func:`align_face`: N images (or one image per box) -> (N, size, size, 3) uint8.

    landmarks: (N, 5, 2) (NaN rows fall back to the box), a list with None entries, or None.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(boxes)
    if len(images) != n:
        raise ValueError(f"{len(images)} images for {n} boxes")
    out = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        lm = None if landmarks is None else landmarks[i]
        out[i] = align_face(images[i], lm, boxes[i], size, margin, box_aspect, border)
    return out
