"""Repository rules: no module named after a standard-library module, lint wired into `make test`."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

PACKAGES = ("stage1_face_extraction", "stage2_mer", "benchmarks", "tests")


def shadowing_modules(root: Path) -> list[str]:
    """Project modules / packages whose name is a standard-library top-level module (``types.py``...)."""
    out = []
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            name = path.parent.name if path.name == "__init__.py" else path.stem
            if name in sys.stdlib_module_names:
                out.append(str(path.relative_to(root)))
    return out


def test_no_module_shadows_the_standard_library(repo_root: Path) -> None:
    assert shadowing_modules(repo_root) == []


def test_the_shadow_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "stage2_mer" / "data").mkdir(parents=True)
    (tmp_path / "stage2_mer" / "data" / "select.py").write_text("", encoding="utf-8")
    (tmp_path / "stage2_mer" / "records.py").write_text("", encoding="utf-8")
    assert shadowing_modules(tmp_path) == ["stage2_mer/data/select.py"]


def test_ruff_is_configured_and_runs_before_the_tests(repo_root: Path) -> None:
    ruff = tomllib.loads((repo_root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["ruff"]
    assert ruff["line-length"] == 120
    assert {".venv", "data", ".dvc"} <= set(ruff["extend-exclude"])
    assert {"E", "F"} <= set(ruff["lint"]["select"])
    make = (repo_root / "Makefile").read_text(encoding="utf-8")
    recipe = make.split("\ntest: ", 1)[1].split("\n\n", 1)[0]
    assert recipe.index("ruff check .") < recipe.index("pytest")
    pins = (repo_root / "requirements" / "extra.txt").read_text(encoding="utf-8").splitlines()
    assert any(line.startswith("ruff==") for line in pins)  # `make venv` installs the pinned linter
