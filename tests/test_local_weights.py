"""Every component locates its own weights (``local_weights``), and the doctor asks them: it has no
rule of its own per component name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from stage1_face_extraction.common.local_weights import LocalWeights, path_keys


class _Place:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, value) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.root / p

    def show(self, value) -> str:
        return str(value)


def _registries():
    from stage1_face_extraction.asd.base import _REGISTRY as scorers
    from stage1_face_extraction.detectors.base import _REGISTRY as detectors
    from stage1_face_extraction.identity.base import _REGISTRY as embedders
    from stage2_mer.features.registry import _REGISTRY as extractors

    return {"detector": detectors, "scorer": scorers, "embedder": embedders, "extractor": extractors}


def test_every_component_answers(tmp_path: Path) -> None:
    for kind, registry in _registries().items():
        for name in registry.names():
            cls = registry.get(name)
            assert cls.weights_fix, (kind, name)
            try:
                found = cls.local_weights({}, _Place(tmp_path), f"{kind}.{name}")
            except (FileNotFoundError, OSError, ValueError):
                continue  # its files are not on this machine: an answer too
            assert isinstance(found, LocalWeights) and found.checks, (kind, name)
            assert all(c.status in ("OK", "WARN", "FAIL") for c in found.checks), (kind, name)


def test_default_answer_checks_path_keys(tmp_path: Path) -> None:
    (tmp_path / "here.onnx").write_bytes(b"x")
    ok = path_keys("x", {"model": "here.onnx", "other": "absent"}, _Place(tmp_path)).checks
    assert [c.status for c in ok] == ["OK"] and "model: here.onnx" in ok[0].message
    bad = path_keys("x", {"weights": "absent.pt"}, _Place(tmp_path)).checks
    assert [c.status for c in bad] == ["FAIL"] and "absent.pt" in bad[0].message


@pytest.mark.parametrize("module", ["weights.py", "training.py", "params.py"])
def test_doctor_names_no_component(repo_root: Path, module: str) -> None:
    names = set().union(*(r.names() for r in _registries().values()))
    tree = ast.parse((repo_root / "stage2_mer" / "doctor" / module).read_text(encoding="utf-8"))
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert not strings & names, f"stage2_mer/doctor/{module} switches on component names: {strings & names}"
