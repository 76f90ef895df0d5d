"""Library below scripts: which project modules may import which (read with ``ast``, nothing is run).

* no module outside a ``stages`` package and the command-line files (``cli.py`` anywhere) imports a
  ``stages`` module or a command-line module: stage scripts and commands sit on top of the library;
* ``stage1_face_extraction`` never imports ``stage2_mer``;
* ``stage2_mer/model/`` never imports ``stage2_mer.train`` nor a ``stages`` module: the model
  knows nothing of how it is trained.

Every import counts, lazy ones inside functions included. The checks are also run on a planted bad
import, so the test is known to be able to fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import imported_from

PACKAGES = ("stage1_face_extraction", "stage2_mer")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(root: Path, name: str) -> bool:
    base = root.joinpath(*name.split("."))
    return (base / "__init__.py").is_file() or base.with_suffix(".py").is_file()


def imported_modules(root: Path, path: Path) -> set[str]:
    """The project modules ``path`` imports: ``import X``, ``from X import Y`` (as ``X.Y`` too when
    ``Y`` is a submodule), relative imports resolved."""
    name = module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            mods = {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            mod = imported_from(node, package)
            mods = {mod} | {f"{mod}.{a.name}" for a in node.names if is_module(root, f"{mod}.{a.name}")}
        else:
            continue
        out |= {m for m in mods if m.split(".")[0] in PACKAGES}
    return out


def _is_stages(name: str) -> bool:
    return "stages" in name.split(".")


def _is_cli(name: str) -> bool:
    return name.split(".")[-1] == "cli"


def violations(root: Path) -> list[str]:
    """Every import that breaks a rule of the module docstring, as ``module -> imported (rule)``."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            name = module_name(root, path)
            for imp in sorted(imported_modules(root, path)):
                if not (_is_stages(name) or _is_cli(name)) and (_is_stages(imp) or _is_cli(imp)):
                    found.append(f"{name} -> {imp} (a library module imports a stage script or a command line)")
                if name.startswith("stage1_face_extraction") and imp.startswith("stage2_mer"):
                    found.append(f"{name} -> {imp} (stage 1 imports stage 2)")
                if name.startswith("stage2_mer.model") and (imp.startswith("stage2_mer.train") or _is_stages(imp)):
                    found.append(f"{name} -> {imp} (the model imports its training)")
    return found


def test_library_never_imports_scripts(repo_root: Path) -> None:
    assert not violations(repo_root), "\n".join(violations(repo_root))


def _copy_packages(repo_root: Path, dst: Path) -> None:
    for package in PACKAGES:
        for path in (repo_root / package).rglob("*.py"):
            out = dst / path.relative_to(repo_root)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")


def test_the_layering_check_can_fail(repo_root: Path, tmp_path: Path) -> None:
    """A copy of the packages with one bad import planted per rule: each is found."""
    _copy_packages(repo_root, tmp_path)
    bad = {
        "stage2_mer/predict/core.py": "from stage2_mer.stages.evaluate import main\n",
        "stage2_mer/data/dialogues.py": "from stage2_mer.predict import cli\n",
        "stage1_face_extraction/meld.py": "def f():\n    import stage2_mer.features\n",
        "stage2_mer/model/layers.py": "from ..train import Trainer\n",
    }
    for rel, line in bad.items():
        path = tmp_path / rel
        path.write_text(path.read_text(encoding="utf-8") + "\n" + line, encoding="utf-8")
    found = "\n".join(violations(tmp_path))
    assert "stage2_mer.predict.core -> stage2_mer.stages.evaluate" in found
    assert "stage2_mer.data.dialogues -> stage2_mer.predict.cli" in found
    assert "stage1_face_extraction.meld -> stage2_mer.features (stage 1 imports stage 2)" in found
    assert "stage2_mer.model.layers -> stage2_mer.train (the model imports its training)" in found
