"""``arcface_onnx`` visual extractor on a tiny ONNX graph built here (no real weights)."""

from __future__ import annotations

import numpy as np
import pytest

from stage1_face_extraction.common.config import ConfigError
from stage1_face_extraction.identity.arcface import arcface_crop
from stage2_mer.features import PER_FACE_FRAME, create_extractor, list_extractors

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def tiny_recognition_onnx(path, dim: int = 512, batch: int | str = "N", seed: int = 0) -> np.ndarray:
    """Save a graph ``(batch, 3, 112, 112) -> mean over H, W -> @ W (3, dim)``; returns W."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(seed).normal(size=(3, dim)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["data"], ["avg"], axes=[2, 3], keepdims=0),  # (B, 3)
         helper.make_node("MatMul", ["avg", "W"], ["embedding"])],
        "tiny_recognition",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [batch, 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, dim])],
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return w


def _faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 160, 160, 3), dtype=np.uint8)


def _expected(faces: np.ndarray, w: np.ndarray) -> np.ndarray:
    """What the graph should give: ArcFace-aligned crop, (x - 127.5) / 127.5, mean, @ W, L2-normalised."""
    box = np.array([0, 0, faces.shape[2], faces.shape[1]], np.float32)
    crops = np.stack([arcface_crop(f, None, box) for f in faces]).astype(np.float64)  # (N, 112, 112, 3)
    y = ((crops - 127.5) / 127.5).mean(axis=(1, 2)) @ w
    return y / np.linalg.norm(y, axis=1, keepdims=True)


@pytest.fixture
def pack(tmp_path):
    folder = tmp_path / "buffalo_tiny"
    folder.mkdir()
    (folder / "det_10g.onnx").write_bytes(b"detector, never read")
    w = tiny_recognition_onnx(folder / "w600k_r50.onnx")
    return folder, w


def test_registered_with_contract(pack):
    assert "arcface_onnx" in list_extractors("visual")
    ext = create_extractor("arcface_onnx", model=str(pack[0]), device="cpu")
    c = ext.contract
    assert (c.modality, c.dim, c.frame_rate, c.image_size) == ("visual", 512, PER_FACE_FRAME, (112, 112))
    np.testing.assert_allclose(c.mean, (127.5 / 255,) * 3)
    np.testing.assert_allclose(c.std, (127.5 / 255,) * 3)
    assert "(x - 127.5) / 127.5" in c.normalization
    assert ext.dim == 512 and ext.model_file.endswith("w600k_r50.onnx")


def test_output_shape_values_and_determinism(pack):
    folder, w = pack
    ext = create_extractor("arcface_onnx", model=str(folder), device="cpu", batch_size=2)
    faces = _faces(5)
    out = ext.extract(faces)
    assert out.shape == (5, 512) and out.dtype == np.float32
    np.testing.assert_allclose(out, _expected(faces, w), atol=1e-4)
    np.testing.assert_array_equal(ext.extract(faces), out)  # same rows on a rerun
    np.testing.assert_allclose(ext.extract(faces[3:4]), out[3:4], atol=1e-6)  # batch-independent
    assert ext.extract(faces[:0]).shape == (0, 512)
    with pytest.raises(ValueError, match="uint8"):
        ext.extract(faces.astype(np.float32))


def test_dim_read_from_graph_and_fixed_batch(tmp_path):
    w = tiny_recognition_onnx(tmp_path / "r.onnx", dim=24, batch=1, seed=3)
    ext = create_extractor("arcface_onnx", model=tmp_path / "r.onnx", device="cpu", batch_size=8)
    assert ext.dim == ext.contract.dim == 24 and ext.batch_size == 1  # the graph's fixed batch wins
    faces = _faces(3, seed=1)
    np.testing.assert_allclose(ext.extract(faces), _expected(faces, w), atol=1e-4)


def test_missing_model_names_the_file(tmp_path):
    missing = tmp_path / "models" / "w600k_r50.onnx"
    with pytest.raises(FileNotFoundError, match=r"ArcFace model not found: .*models/w600k_r50\.onnx.*buffalo_l"):
        create_extractor("arcface_onnx", model=str(missing), device="cpu")
    (tmp_path / "det_10g.onnx").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match=r"no ArcFace recognition \.onnx .*w600k_r50\.onnx.*in folder"):
        create_extractor("arcface_onnx", model=str(tmp_path), device="cpu")
    with pytest.raises(ConfigError, match="unknown config key"):
        create_extractor("arcface_onnx", weights="x")
