"""5-point face alignment: landmarks land on the template, fallbacks, frame borders."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stage1_face_extraction.align import (
    BOX_ASPECT,
    align_face,
    align_faces,
    alignment_matrix,
    reference_landmarks,
    similarity_transform,
)

ASTRO_BOX = np.array([181.05, 62.16, 267.75, 172.05])
ASTRO_LM = np.array([[205.01, 101.73], [246.76, 103.71], [224.67, 128.96], [201.72, 139.25], [245.27, 141.86]])


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:2, :2].T + m[:, 2]


def _face_in_frame(angle_deg: float, scale: float, centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks of a template-shaped face rotated/scaled/placed in a frame -> (landmarks, box)."""
    tpl = reference_landmarks(160, 0.0)
    tpl[:, 1] *= BOX_ASPECT  # isotropic face geometry
    c = tpl.mean(0)
    a = np.radians(angle_deg)
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    lm = (tpl - c) @ rot.T + np.asarray(centre)
    half = 0.5 * 160 * scale
    box = np.array([centre[0] - half, centre[1] - half * BOX_ASPECT, centre[0] + half, centre[1] + half * BOX_ASPECT])
    return lm, box


def _dot_image(lm: np.ndarray, shape=(480, 640)) -> np.ndarray:
    img = np.zeros(shape + (3,), np.uint8)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    for (x, y), col in zip(lm, colours):
        cv2.circle(img, (int(round(x * 16)), int(round(y * 16))), 5 * 16, col, -1, cv2.LINE_AA, 4)
    return img


def _centroids(crop: np.ndarray) -> np.ndarray:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    out = []
    ys, xs = np.mgrid[0 : crop.shape[0], 0 : crop.shape[1]]
    for col in colours:
        w = np.ones(crop.shape[:2])
        for ch in range(3):
            w *= crop[..., ch] / 255.0 if col[ch] else 1.0 - crop[..., ch] / 255.0
        w = np.where(w > 0.3, w, 0.0)
        out.append([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])
    return np.array(out)


def test_similarity_transform_recovers_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    a = np.radians(17.0)
    m = np.array([[1.3 * np.cos(a), -1.3 * np.sin(a), 12.0], [1.3 * np.sin(a), 1.3 * np.cos(a), -7.0]])
    np.testing.assert_allclose(similarity_transform(src, _apply(m, src)), m, atol=1e-9)


@pytest.mark.parametrize("angle,scale,margin", [(0.0, 1.0, 0), (20.0, 0.6, 20), (-25.0, 1.7, 32)])
def test_landmarks_map_onto_template(angle, scale, margin):
    lm, box = _face_in_frame(angle, scale, (320.0, 240.0))
    m, used = alignment_matrix(lm, box, 160, margin)
    assert used
    ref = reference_landmarks(160, margin)
    assert np.abs(_apply(m, lm) - ref).max() < 1e-6
    # and in pixels: dots drawn at the landmarks end up on the template (< 2 px)
    crop = align_face(_dot_image(lm), lm, box, size=160, margin=margin)
    assert crop.shape == (160, 160, 3) and crop.dtype == np.uint8
    err = np.linalg.norm(_centroids(crop) - ref, axis=1)
    assert err.max() < 2.0, err


def test_real_face_matches_facenet_style_crop():
    """Aligned astronaut vs. the facenet-pytorch way (box + margin, resized): same face, same place."""
    import skimage.data

    img = skimage.data.astronaut()
    aligned = align_face(img, ASTRO_LM, ASTRO_BOX, size=160, margin=20)
    m = 20
    bw, bh = ASTRO_BOX[2] - ASTRO_BOX[0], ASTRO_BOX[3] - ASTRO_BOX[1]
    mx, my = m * bw / (160 - m), m * bh / (160 - m)
    x1, y1 = int(ASTRO_BOX[0] - mx / 2), int(ASTRO_BOX[1] - my / 2)
    x2, y2 = int(ASTRO_BOX[2] + mx / 2), int(ASTRO_BOX[3] + my / 2)
    facenet = cv2.resize(img[y1:y2, x1:x2], (160, 160), interpolation=cv2.INTER_AREA)
    g1 = cv2.GaussianBlur(cv2.cvtColor(aligned, cv2.COLOR_RGB2GRAY).astype(float), (0, 0), 3.0)
    g2 = cv2.GaussianBlur(cv2.cvtColor(facenet, cv2.COLOR_RGB2GRAY).astype(float), (0, 0), 3.0)
    assert np.corrcoef(g1.ravel(), g2.ravel())[0, 1] > 0.8
    # the landmarks land within a few pixels of the template on a real face
    mat, used = alignment_matrix(ASTRO_LM, ASTRO_BOX, 160, 20)
    assert used and np.abs(_apply(mat, ASTRO_LM) - reference_landmarks(160, 20)).max() < 6.0


def test_no_landmarks_fallback_is_box_crop():
    import skimage.data

    img = skimage.data.astronaut()
    for lm in (None, np.full((5, 2), np.nan), np.zeros((5, 2))):
        m, used = alignment_matrix(lm, ASTRO_BOX, 160, 0)
        assert not used
        # the box centre goes to the crop centre
        c = np.array([(ASTRO_BOX[0] + ASTRO_BOX[2]) / 2, (ASTRO_BOX[1] + ASTRO_BOX[3]) / 2])
        np.testing.assert_allclose(_apply(m, c[None])[0], [80.0, 80.0], atol=1e-6)
        crop = align_face(img, lm, ASTRO_BOX, size=160)
        assert crop.shape == (160, 160, 3) and crop.dtype == np.uint8
    # square box + box_aspect 1: a plain square margin crop
    m, _ = alignment_matrix(None, np.array([10.0, 20.0, 110.0, 120.0]), 160, 32, box_aspect=1.0)
    np.testing.assert_allclose(_apply(m, np.array([[10.0, 20.0], [110.0, 120.0]])), [[16, 16], [144, 144]], atol=1e-6)


def test_landmarks_inconsistent_with_box_fall_back():
    lm, box = _face_in_frame(0.0, 1.0, (320.0, 240.0))
    _, used = alignment_matrix(lm * 0.2, box, 160, 0)  # landmarks of a much smaller face
    assert not used


def test_box_outside_frame():
    img = np.full((100, 120, 3), 200, np.uint8)
    box = np.array([80.0, 60.0, 160.0, 160.0])  # bottom-right quarter outside the frame
    black = align_face(img, None, box, size=64, margin=0, box_aspect=1.0)
    edge = align_face(img, None, box, size=64, margin=0, box_aspect=1.0, border="replicate")
    assert black.shape == (64, 64, 3)
    assert black[5, 5].tolist() == [200, 200, 200]  # inside the frame
    assert black[60, 60].tolist() == [0, 0, 0]  # outside: black
    assert edge[60, 60].tolist() == [200, 200, 200]  # outside: edge repeated
    far = align_face(img, None, np.array([500.0, 500.0, 600.0, 600.0]), size=32)
    assert far.shape == (32, 32, 3) and far.max() == 0


def test_batched_and_downscale_without_aliasing():
    lm, box = _face_in_frame(10.0, 4.0, (700.0, 600.0))  # a 640 px face into 160 px
    img = np.zeros((1400, 1400, 3), np.uint8)
    img[::2] = 255  # 1-px stripes alias badly without a low-pass
    crops = align_faces([img, img], np.stack([lm, lm]), np.stack([box, box]), size=160)
    assert crops.shape == (2, 160, 160, 3)
    assert abs(float(crops[0].mean()) - 127.5) < 10 and float(crops[0].std()) < 20
    one = align_faces([img], [None], box[None], size=96)
    assert one.shape == (1, 96, 96, 3)
