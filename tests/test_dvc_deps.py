"""Stage dependencies that cannot drift (issue 17, item 2).

Every ``dvc.yaml`` stage runs ``python -m <module>``. This test walks that module's imports
statically (``import``/``from ... import`` anywhere in the file, lazy imports in functions
included, and ``importlib.import_module("<project module>")`` string constants), follows every
project module it reaches (and the packages' ``__init__`` files that Python runs on the way), and
fails when one of them is not covered by the stage's ``deps:`` (the file itself or a folder above
it). So an edit to any project code a stage runs changes a DVC dependency of that stage and
``dvc repro`` re-runs it. The stages are read through DVC's own API (``foreach`` expanded,
``${...}`` interpolated), from a copy of ``dvc.yaml`` and ``params.yaml`` under tmp_path.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

from conftest import imported_from

PACKAGES = ("stage1_face_extraction", "stage2_mer")
_MODULE_STRING = re.compile(r"^(?:%s)(?:\.\w+)*$" % "|".join(PACKAGES))


def module_file(root: Path, name: str) -> Path | None:
    """The file of project module ``name`` (``pkg/__init__.py`` or ``pkg/mod.py``), else None."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for cand in (base / "__init__.py", base.with_suffix(".py")):
        if cand.is_file():
            return cand
    return None


def _imports_of(node: ast.AST, package: str) -> tuple[set[str], set[tuple[str, str]]]:
    """Module names imported under ``node`` (absolute, relative, ``from X import sub`` as ``X.sub``
    in case it is a submodule, module-path string constants), and the ``(module, name)`` pairs of
    its ``from module import name`` statements."""
    mods: set[str] = set()
    pairs: set[tuple[str, str]] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Import):
            mods.update(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom):
            mod = imported_from(n, package)
            mods.add(mod)
            mods.update(f"{mod}.{a.name}" for a in n.names)
            pairs.update((mod, a.name) for a in n.names)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and _MODULE_STRING.match(n.value):
            mods.add(n.value)
    return mods, pairs


class _Module:
    """One project file's imports. A plain module: every import in it (lazy ones in functions
    included: the walk is conservative). A package ``__init__.py``: its top-level imports (they run
    whenever a submodule is imported), and per top-level function the imports in its body, which
    count only when some module of the closure does ``from <package> import <function>``."""

    def __init__(self, path: Path, name: str) -> None:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_pkg = path.name == "__init__.py"
        package = name if is_pkg else name.rpartition(".")[0]
        self.functions: dict[str, tuple[set[str], set[tuple[str, str]]]] = {}
        if is_pkg:
            body = []
            for stmt in tree.body:
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    self.functions[stmt.name] = _imports_of(stmt, package)
                else:
                    body.append(stmt)
            tree = ast.Module(body=body, type_ignores=[])
        self.mods, self.pairs = _imports_of(tree, package)


def import_closure(root: Path, entry: str) -> set[Path]:
    """Every project file that ``python -m entry`` can run (statically, see :class:`_Module`)."""
    parsed: dict[str, _Module] = {}
    requested: set[tuple[str, str]] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        # importing a.b.c runs a/__init__.py and a/b/__init__.py first
        for i in range(1, len(parts) + 1):
            sub = ".".join(parts[:i])
            path = module_file(root, sub)
            if path is None or sub in parsed:
                continue
            parsed[sub] = m = _Module(path, sub)
            todo.extend(m.mods)
            requested |= m.pairs
        for mod, fn in list(requested):  # functions of package __init__s that something imports
            m = parsed.get(mod)
            if m is not None and fn in m.functions:
                mods, pairs = m.functions.pop(fn)
                todo.extend(mods)
                requested |= pairs
    return {module_file(root, n) for n in parsed}


def uncovered(root: Path, files: set[Path], deps: list[str]) -> list[str]:
    """The files (relative to ``root``) that no dep path (a file, or a folder above the file) covers."""
    dep_paths = [(root / d).resolve() for d in deps]
    out = []
    for f in sorted(files):
        f = f.resolve()
        if not any(f == d or d in f.parents for d in dep_paths):
            out.append(str(f.relative_to(root.resolve())))
    return out


def entry_module(cmd: str) -> str:
    m = re.search(r"\bpython -m ([\w.]+)", cmd)
    assert m, f"a stage command that is not `python -m <module>`: {cmd}"
    return m.group(1)


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> dict[str, tuple[str, list[str]]]:
    """``{stage name: (cmd, [dep paths relative to the root])}`` of the real dvc.yaml, via DVC's API."""
    from dvc.repo import Repo

    d = tmp_path_factory.mktemp("dvc_spec")
    for f in ("dvc.yaml", "params.yaml"):
        shutil.copy2(repo_root / f, d / f)
    repo = Repo.init(str(d), no_scm=True)
    try:
        out = {}
        for stage in repo.index.stages:
            deps = [str(Path(dep.fs_path).relative_to(d)) for dep in stage.deps]
            out[stage.name] = (stage.cmd, deps)
        return out
    finally:
        repo.close()


def test_every_stage_is_read(stages) -> None:
    assert {"make_demo", "prepare", "extract_faces", "features@visual", "features@audio", "make_affwild2",
            "train", "evaluate"} <= set(stages)


def test_the_walker_sees_lazy_relative_and_string_imports(repo_root: Path) -> None:
    # the walker itself must be able to fail: known edges of the real code
    ef = import_closure(repo_root, "stage1_face_extraction.stages.extract_faces")
    rel = {str(p.relative_to(repo_root)) for p in ef}
    assert "stage1_face_extraction/preview.py" in rel  # a plain import
    assert "stage1_face_extraction/asd/av_sync.py" in rel  # `from . import av_sync` in asd/__init__.py
    assert "stage1_face_extraction/__init__.py" in rel  # a parent package runs first
    cli = {str(p.relative_to(repo_root)) for p in import_closure(repo_root, "stage2_mer.cli")}
    assert "stage2_mer/doctor/cli.py" in cli  # importlib.import_module(VERBS[...].module) names it as a string
    assert uncovered(repo_root, ef, ["stage1_face_extraction/stages"]), "a narrow dep list must show gaps"
    assert not uncovered(repo_root, ef, ["stage1_face_extraction"])


@pytest.mark.parametrize("name", ["make_demo", "prepare", "extract_faces", "features@visual", "features@audio",
                                  "make_affwild2", "train", "evaluate"])
def test_stage_deps_cover_every_module_the_stage_runs(stages, repo_root: Path, name: str) -> None:
    cmd, deps = stages[name]
    files = import_closure(repo_root, entry_module(cmd))
    assert files, cmd
    missing = uncovered(repo_root, files, deps)
    assert not missing, (f"dvc.yaml stage {name!r} runs project code its deps do not list (an edit there would "
                         f"not re-run it): {missing}")


def test_evaluate_depends_on_the_metrics_code(stages, repo_root: Path) -> None:
    # the case found in review: editing stage2_mer/train/metrics.py must re-run evaluate
    # (test_dvc_pipeline checks the same with `dvc status` on a real run)
    _, deps = stages["evaluate"]
    assert not uncovered(repo_root, {repo_root / "stage2_mer/train/metrics.py"}, deps)


def test_deps_name_existing_paths(stages, repo_root: Path) -> None:
    for name, (_, deps) in stages.items():
        code = [d for d in deps if d.split("/")[0] in PACKAGES]
        assert code, f"{name}: no code dependency"
        missing = [d for d in code if not (repo_root / d).exists()]
        assert not missing, f"{name}: deps that do not exist: {missing}"
