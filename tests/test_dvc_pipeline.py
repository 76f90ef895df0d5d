"""`dvc repro` end to end on a small demo corpus, in a copy of the project under tmp_path.

This is what `make demo` runs (with the full demo size); here the demo section is shrunk so the
whole pipeline that exists today runs in about a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

PACKAGES = ("stage1_face_extraction", "stage2_mer")


def _copy_project(repo: Path, dst: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pkg in PACKAGES:
        shutil.copytree(repo / pkg, dst / pkg, ignore=ignore)
    for f in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy2(repo / f, dst / f)


def _dvc(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ, "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(cwd),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # `python` in dvc.yaml
    }
    dvc = [sys.executable, "-m", "dvc"]
    return subprocess.run(dvc + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def repro_dir(tmp_path_factory, repo_root):
    d = tmp_path_factory.mktemp("dvc_demo")
    _copy_project(repo_root, d)
    params = yaml.safe_load((d / "params.yaml").read_text())
    params["demo"].update(
        dialogues_per_split={"train": 1, "dev": 1, "test": 1}, utterances_min=4, utterances_max=4,
        duration_min_s=2.0, duration_max_s=2.5,
    )
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    r = _dvc(["init", "--no-scm", "-q"], d)
    assert r.returncode == 0, r.stderr
    r = _dvc(["repro"], d)
    assert r.returncode == 0, f"dvc repro failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return d


def test_repro_produces_every_stage_output(repro_dir):
    spec = yaml.safe_load((repro_dir / "dvc.yaml").read_text())
    for name, stage in spec["stages"].items():
        for out in stage.get("outs", []) + stage.get("metrics", []):
            path = next(iter(out)) if isinstance(out, dict) else out
            assert (repro_dir / path).exists(), f"stage {name} did not produce {path}"
    table = pd.read_parquet(repro_dir / "data/prepared/utterances.parquet")
    assert set(table["split"]) == {"train", "dev", "test"} and len(table) == 12
    assert table["clip_exists"].all()
    summary = json.loads((repro_dir / "data/prepared/summary.json").read_text())
    assert summary["train"]["utterances"] == 4
    faces = json.loads((repro_dir / "data/faces_summary.json").read_text())
    assert sum(v["clips"] for v in faces.values()) == 12
    assert sum(v.get("ok", 0) for v in faces.values()) >= 8


def test_second_repro_is_a_no_op_and_status_clean(repro_dir):
    r = _dvc(["repro"], repro_dir)
    assert r.returncode == 0, r.stderr
    assert "didn't change, skipping" in r.stdout or "is cached" in r.stdout
    assert "Running stage" not in r.stdout
    r = _dvc(["status"], repro_dir)
    assert r.returncode == 0 and "up to date" in r.stdout.lower(), r.stdout


def test_changing_stage1_params_reruns_only_extract_faces(repro_dir):
    params = yaml.safe_load((repro_dir / "params.yaml").read_text())
    params["stage1"]["max_frames"] = 40
    (repro_dir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    r = _dvc(["status"], repro_dir)
    assert "extract_faces" in r.stdout
    assert "prepare" not in r.stdout and "make_demo" not in r.stdout
