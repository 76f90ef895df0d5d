"""Face detector registry, shared pre/post-processing, MTCNN / Haar on real faces, SCRFD decoding."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from conftest import SHARED
from stage1_face_extraction.common.config import ConfigError
from stage1_face_extraction.demo.assets import load_t1 as _t1
from stage1_face_extraction.detectors import (
    DEFAULT_DETECTOR,
    FaceDetector,
    create_detector,
    list_detectors,
    register_detector,
)
from stage1_face_extraction.detectors import base as det_base
from stage1_face_extraction.detectors.scrfd import (
    decode_outputs,
    nms,
    resolve_model_file,
)
from stage1_face_extraction.records import Detections
from stage1_face_extraction.tracking import iou_matrix


@pytest.fixture(scope="module")
def mtcnn():
    return create_detector("mtcnn", device="cpu")


# ------------------------------------------------------------------------------------ registry


def test_registry_lists_and_rejects():
    assert {"mtcnn", "scrfd", "opencv_haar"} <= set(list_detectors())
    assert DEFAULT_DETECTOR == "mtcnn"
    with pytest.raises(ValueError, match="opencv_haar.*scrfd|mtcnn"):
        create_detector("retinafac")
    with pytest.raises(ConfigError, match="min_face_sise.*valid keys.*min_face_size"):
        create_detector("mtcnn", min_face_sise=40)
    with pytest.raises(ConfigError):
        create_detector("opencv_haar", downscale=1.5)


class _Fake(FaceDetector):
    """Reports one face at a fixed place of the frame it is given (in ITS pixels)."""

    gives_landmarks = True
    calls: list[tuple[int, ...]] = []

    def __init__(self, *, rel_box=(0.25, 0.25, 0.75, 0.75), score=0.8, **base):
        super().__init__(**base)
        self.rel_box = np.array(rel_box, np.float32)
        self.score = score

    def _detect_batch(self, images):
        type(self).calls.append(images.shape)
        h, w = images.shape[1:3]
        box = self.rel_box * np.array([w, h, w, h], np.float32)
        lm = np.tile(box[None, :2], (5, 1))
        return [Detections(box[None], np.array([self.score], np.float32), lm[None]) for _ in images]


@pytest.fixture()
def fake_registered():
    register_detector("fake_for_test")(_Fake)
    yield
    det_base._REGISTRY.unregister("fake_for_test")


def test_custom_detector_downscale_batching_and_filters(fake_registered):
    assert "fake_for_test" in list_detectors()
    det = create_detector("fake_for_test", downscale=0.5, batch_size=2, device="cpu")
    _Fake.calls.clear()
    frames = [np.zeros((100, 200, 3), np.uint8)] * 3 + [np.zeros((60, 60, 3), np.uint8), np.zeros((0, 0, 3), np.uint8)]
    out = det.detect(frames)
    assert len(out) == 5
    # batches of equal size only, at most batch_size, on the half-size frames
    assert sorted(_Fake.calls) == sorted([(2, 50, 100, 3), (1, 50, 100, 3), (1, 30, 30, 3)])
    np.testing.assert_allclose(out[0].boxes, [[50, 25, 150, 75]], atol=1e-4)  # back in input pixels
    np.testing.assert_allclose(out[0].landmarks[0, 0], [50, 25], atol=1e-4)
    np.testing.assert_allclose(out[3].boxes, [[15, 15, 45, 45]], atol=1e-4)
    assert len(out[4]) == 0 and out[4].landmarks.shape == (0, 5, 2)
    # filters: score and face size in INPUT pixels
    assert len(create_detector("fake_for_test", min_score=0.9).detect_one(frames[0])) == 0
    assert len(create_detector("fake_for_test", min_face_size=40).detect_one(frames[3])) == 0
    assert len(create_detector("fake_for_test", min_face_size=30).detect_one(frames[3])) == 1
    with pytest.raises(ValueError, match="uint8"):
        det.detect([np.zeros((10, 10, 3), np.float32)])
    assert det.detect([]) == []


# --------------------------------------------------------------------------------------- MTCNN


def test_mtcnn_astronaut(mtcnn):
    det = mtcnn.detect_one(data.astronaut())
    assert len(det) == 1 and det.scores[0] > 0.99
    x1, y1, x2, y2 = det.boxes[0]
    assert 160 < x1 < 200 and 40 < y1 < 80 and 250 < x2 < 290 and 150 < y2 < 190
    lm = det.landmarks[0]  # eyes above nose above mouth, all inside the box
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]
    assert lm[0, 1] < lm[2, 1] < lm[3, 1]
    assert ((lm >= [x1, y1]) & (lm <= [x2, y2])).all()


def test_mtcnn_finds_the_six_in_t1(mtcnn):
    det = mtcnn.detect_one(_t1())
    assert len(det) == 6
    assert (det.scores > 0.95).all()
    assert det.boxes.dtype == np.float32 and det.landmarks.shape == (6, 5, 2)
    assert iou_matrix(det.boxes, det.boxes)[~np.eye(6, dtype=bool)].max() < 0.05


def test_mtcnn_fast_engine_matches_facenet_pytorch():
    img = cv2.resize(_t1(), (640, 442), interpolation=cv2.INTER_AREA)
    fast = create_detector("mtcnn", device="cpu").detect_one(img)
    ref = create_detector("mtcnn", device="cpu", engine="facenet").detect_one(img)
    assert len(fast) == len(ref) == 6
    iou = iou_matrix(fast.boxes, ref.boxes)
    assert (iou.max(axis=1) > 0.8).all()
    j = iou.argmax(axis=1)
    assert np.abs(fast.landmarks - ref.landmarks[j]).max() < 6.0


def test_mtcnn_batched_equals_single_and_downscale_agrees(mtcnn):
    img = cv2.resize(_t1(), (640, 442), interpolation=cv2.INTER_AREA)
    flipped = np.ascontiguousarray(img[:, ::-1])
    batch = mtcnn.detect([img, flipped, img])
    single = [mtcnn.detect_one(img), mtcnn.detect_one(flipped)]
    for got, want in zip(batch[:2], single):
        np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-2)
    np.testing.assert_allclose(batch[2].boxes, batch[0].boxes, atol=1e-2)
    half = create_detector("mtcnn", device="cpu", downscale=0.5).detect_one(img)
    assert len(half) == 6
    assert (iou_matrix(half.boxes, batch[0].boxes).max(axis=1) > 0.7).all()


def test_mtcnn_blank_and_tiny_frames(mtcnn):
    out = mtcnn.detect([np.zeros((120, 160, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)])
    assert [len(d) for d in out] == [0, 0]
    assert out[0].landmarks.shape == (0, 5, 2)


@pytest.mark.shared
def test_mtcnn_on_shared_photos(shared_faces_dir, mtcnn):
    for path in sorted(shared_faces_dir.glob("*.jpg")):
        img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        scale = 800 / max(img.shape[:2])
        if scale < 1:
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        n = len(mtcnn.detect_one(img))
        two = "_and_" in path.stem or "two_people" in path.stem
        assert n >= (2 if two else 1), f"{path.name}: {n} face(s)"


# ---------------------------------------------------------------------------------------- Haar


def test_haar_astronaut():
    det = create_detector("opencv_haar")
    assert det.gives_landmarks is False
    out = det.detect([data.astronaut()])[0]
    assert len(out) == 1 and out.landmarks is None
    assert 0.5 < out.scores[0] <= 1.0
    ref = create_detector("mtcnn", device="cpu").detect_one(data.astronaut())
    assert iou_matrix(out.boxes, ref.boxes)[0, 0] > 0.5
    with pytest.raises(ConfigError, match="CPU"):
        create_detector("opencv_haar", device="cuda")


# --------------------------------------------------------------------------------------- SCRFD


def test_scrfd_missing_weights_message(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*buffalo_l"):
        create_detector("scrfd", model=str(tmp_path / "nowhere"))
    (tmp_path / "pack").mkdir()
    with pytest.raises(FileNotFoundError, match=r"det_10g\.onnx.*buffalo_l"):
        resolve_model_file(tmp_path / "pack")


def _scrfd_outputs(n_anchor_rows: dict[int, int]) -> dict[str, np.ndarray]:
    """Hand-made SCRFD outputs for a 64x64 input: two faces and a weak and a duplicate candidate."""
    out = {}
    for s, n in n_anchor_rows.items():
        out[f"score_{s}"] = np.zeros((n, 1), np.float32)
        out[f"bbox_{s}"] = np.zeros((n, 4), np.float32)
        out[f"kps_{s}"] = np.zeros((n, 10), np.float32)
    # stride 8, cell (x=3, y=2), anchor 1 -> row (2*8+3)*2+1 = 39, centre (24, 16)
    out["score_8"][39] = 0.9
    out["bbox_8"][39] = [1, 1, 2, 2]  # -> box (16, 8, 40, 32)
    out["kps_8"][39] = [0, 0, 1, 0, 0.5, 0.5, 0, 1, 1, 1]
    out["score_8"][38] = 0.8  # anchor 0 of the same cell, same box: removed by NMS
    out["bbox_8"][38] = [1, 1, 2, 2]
    out["score_8"][0] = 0.3  # below min_score
    out["bbox_8"][0] = [1, 1, 1, 1]
    # stride 32, cell (1, 1), anchor 0 -> row (1*2+1)*2 = 6, centre (32, 32) -> box (16, 16, 48, 48)
    out["score_32"][6] = 0.7
    out["bbox_32"][6] = [0.5, 0.5, 0.5, 0.5]
    return out


def test_scrfd_decode_outputs():
    rows = {8: 128, 16: 32, 32: 8}
    o = _scrfd_outputs(rows)
    raw = [o[f"{k}_{s}"] for k in ("score", "bbox", "kps") for s in (8, 16, 32)]
    boxes, scores, kps = decode_outputs(raw, (64, 64), score_threshold=0.5)
    np.testing.assert_allclose(scores, [0.9, 0.7], atol=1e-6)
    np.testing.assert_allclose(boxes, [[16, 8, 40, 32], [16, 16, 48, 48]], atol=1e-4)
    np.testing.assert_allclose(kps[0], [[24, 16], [32, 16], [28, 20], [24, 24], [32, 24]], atol=1e-4)
    # a leading batch dim of 1 decodes the same; a layout without landmarks gives None
    b2, _, _ = decode_outputs([r[None] for r in raw], (64, 64), 0.5)
    np.testing.assert_allclose(b2, boxes)
    assert decode_outputs(raw[:6], (64, 64), 0.5)[2] is None
    with pytest.raises(ValueError, match="SCRFD"):
        decode_outputs(raw[:5], (64, 64), 0.5)
    assert list(
        nms(np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], float), np.array([0.5, 0.9, 0.7]), 0.4)
    ) == [1, 2]


def test_scrfd_detector_runs_an_onnx_graph(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    o = _scrfd_outputs({8: 128, 16: 32, 32: 8})
    names = [f"{k}_{s}" for k in ("score", "bbox", "kps") for s in (8, 16, 32)]
    nodes, outputs = [], []
    for name in names:
        # output = constant + 0 * mean(input), so the graph really consumes the image
        nodes.append(
            helper.make_node("Constant", [], [f"{name}_c"], value=numpy_helper.from_array(o[name], f"{name}_v"))
        )
        nodes.append(helper.make_node("Add", [f"{name}_c", "zero"], [name]))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(o[name].shape)))
    zero_f = numpy_helper.from_array(np.zeros((), np.float32), "zf")
    nodes = [
        helper.make_node("Constant", [], ["zero_f"], value=zero_f),
        helper.make_node("ReduceMean", ["input.1"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero_f"], ["zero"]),
    ] + nodes
    graph = helper.make_graph(
        nodes, "tiny_scrfd", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 64, 64])], outputs
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    pack = tmp_path / "buffalo_tiny"
    pack.mkdir()
    onnx.save(model, str(pack / "det_10g.onnx"))

    det = create_detector("scrfd", model=str(pack), device="cpu", min_face_size=10)
    assert det.input_size == (64, 64)  # fixed-size graph wins over the input_size option
    out = det.detect([np.zeros((128, 128, 3), np.uint8), np.zeros((32, 64, 3), np.uint8)])
    # 128x128 is letterboxed at scale 0.5: boxes come back doubled, in input pixels
    np.testing.assert_allclose(out[0].boxes, [[32, 16, 80, 64], [32, 32, 96, 96]], atol=1e-3)
    np.testing.assert_allclose(out[0].scores, [0.9, 0.7], atol=1e-6)
    np.testing.assert_allclose(out[0].landmarks[0, 1], [64, 32], atol=1e-3)
    # 64x32 fits at scale 1; boxes are clipped to the frame
    np.testing.assert_allclose(out[1].boxes[0], [16, 8, 40, 32], atol=1e-3)
    assert out[1].boxes[:, 3].max() <= 32


def test_mtcnn_roi_align_crops_agree_with_opencv_crops():
    # the accelerator path cuts R/O-Net crops with roi_align: check it on the CPU
    img = cv2.resize(_t1(), (640, 442), interpolation=cv2.INTER_AREA)
    det = create_detector("mtcnn", device="cpu")
    ref = det.detect_one(img)
    det._cascade.crop_backend = "roi_align"
    got = det.detect_one(img)
    assert len(got) == len(ref) == 6
    assert (iou_matrix(got.boxes, ref.boxes).max(axis=1) > 0.8).all()


# ------------------------------------------------------------------------------------------ yunet

YUNET = SHARED / "models" / "yunet"


def _real_frames(name: str, indices: tuple[int, ...]) -> list[np.ndarray]:
    from stage1_face_extraction.video import iter_frames

    path = SHARED / "data" / "talking_heads" / f"{name}.mp4"
    if not path.is_file():
        pytest.skip(f"real talking head not found: {path} (../shared)")
    return [fr.image for fr in iter_frames(path) if fr.index in indices]


def test_yunet_missing_model_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.onnx"):
        create_detector("yunet", model=str(tmp_path / "nowhere.onnx"))
    assert "yunet" in list_detectors()


@pytest.mark.parametrize("model", ["yunet_n_640_640.onnx", "yunet_s_640_640.onnx"])
def test_yunet_agrees_with_mtcnn_on_real_faces(model):
    """The published YuNet weights on real talking heads: one face per frame, box IoU with MTCNN's
    > 0.7, the five landmarks in MTCNN's order (each within 20 % of the eye distance, where a left /
    right swap would be ~100 %; the nose's tip vs MTCNN's nose point within 40 %), at any downscale."""
    if not (YUNET / model).is_file():
        pytest.skip(f"YuNet weights not found at {YUNET} (../shared/models)")
    frames = _real_frames("sadtalker_WDA_KatieHill_000", (10, 60, 120)) + _real_frames("retalking_face_2", (20, 80))
    mtcnn = create_detector("mtcnn", device="cpu", min_score=0.9)
    for downscale in (1.0, 0.5):
        yunet = create_detector("yunet", model=str(YUNET / model), min_score=0.6, downscale=downscale)
        for frame, y, m in zip(frames, yunet.detect(frames), mtcnn.detect(frames)):
            assert len(y) == 1 and len(m) == 1, (len(y), len(m))
            assert iou_matrix(y.boxes, m.boxes)[0, 0] > 0.7
            eye = np.linalg.norm(m.landmarks[0, 1] - m.landmarks[0, 0])
            err = np.linalg.norm(y.landmarks[0] - m.landmarks[0], axis=1) / eye  # (5,)
            assert (err[[0, 1, 3, 4]] < 0.2).all() and err[2] < 0.4, err.round(3)  # a swap would be ~1
            assert y.landmarks[0, 0, 0] < y.landmarks[0, 1, 0] and y.landmarks[0, 3, 0] < y.landmarks[0, 4, 0]


def test_yunet_finds_two_faces_in_a_composed_two_shot():
    """Two real faces side by side (as in a MELD two-shot) at 640x360: two boxes, left to right."""
    a = _real_frames("sadtalker_WDA_KatieHill_000", (40,))[0]
    b = _real_frames("retalking_face_2", (40,))[0]
    if not (YUNET / "yunet_n_640_640.onnx").is_file():
        pytest.skip(f"YuNet weights not found at {YUNET}")
    canvas = np.zeros((360, 640, 3), np.uint8)
    canvas[40:320, 20:300] = cv2.resize(a, (280, 280))
    canvas[40:320, 340:620] = cv2.resize(b, (280, 280))
    det = create_detector("yunet", model=str(YUNET / "yunet_n_640_640.onnx"), min_score=0.6)
    found = det.detect([canvas])[0]
    assert len(found) == 2
    xs = sorted(float(bx[0]) for bx in found.boxes)
    assert xs[0] < 300 < xs[1]
