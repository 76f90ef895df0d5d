"""Artefact versioning: the project's default DVC remote (``.dvc/config``: ``../facialmmt-dvc-store``,
next to the checkout) takes ``dvc push`` and gives the outputs, metrics included, back to a fresh
clone with ``dvc pull``.

Runs the ``prepare`` stage alone on a three-line MELD-shaped corpus in a git copy of the project under
tmp_path (the helpers of test_dvc_pipeline), so it takes seconds, not minutes.
"""

from __future__ import annotations

import csv
import shutil
import subprocess

import yaml

from stage1_face_extraction.meld import MELD_COLUMNS
from test_dvc_pipeline import _copy_project, _dvc, _env, _git


def _tiny_corpus(root) -> None:
    for split in ("train", "dev", "test"):
        root.mkdir(parents=True, exist_ok=True)
        with (root / f"{split}_sent_emo.csv").open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(MELD_COLUMNS)
            w.writerow([1, f"Hello from {split}.", "Joey", "joy", "positive", 0, 0, 1, 1, "0:00:01,000", "0:00:02,500"])
            w.writerow([2, "Oh.", "Ross", "surprise", "positive", 0, 1, 1, 1, "0:00:03,000", "0:00:03,900"])


def test_make_targets_use_the_venv_dvc(repo_root):
    r = subprocess.run(["make", "-n", "-C", str(repo_root), "push", "pull"], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert ".venv/bin/dvc push" in r.stdout and ".venv/bin/dvc pull" in r.stdout
    r = subprocess.run(["make", "-C", str(repo_root), "help"], capture_output=True, text=True, timeout=60,
                       check=False)
    assert "make push" in r.stdout and "make pull" in r.stdout


def test_push_to_the_default_remote_and_pull_into_a_fresh_clone(repo_root, tmp_path):
    work = tmp_path / "work"
    repo = work / "repo"
    repo.mkdir(parents=True)
    _copy_project(repo_root, repo)
    _tiny_corpus(repo / "corpus")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["meld_root"] = "corpus"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / ".gitignore").write_text("__pycache__/\n/data/\n")
    _git(["init", "-q", "-b", "main"], repo)
    r = _dvc(["init", "-q"], repo)
    assert r.returncode == 0, r.stderr
    shutil.copy2(repo_root / ".dvc" / "config", repo / ".dvc" / "config")  # the project's remote settings

    store = work / "facialmmt-dvc-store"  # next to the checkout, outside it
    r = _dvc(["remote", "list"], repo)
    flat = "".join(r.stdout.split())  # (the listing wraps long paths)
    assert r.returncode == 0 and f"local{store}(default)" in flat, r.stdout + r.stderr
    _git(["add", "-A"], repo)
    _git(["commit", "-q", "-m", "project"], repo)

    r = _dvc(["repro", "-s", "prepare"], repo)
    assert r.returncode == 0, f"{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    table = repo / "data" / "prepared" / "utterances.parquet"
    assert table.is_file()
    _git(["add", "dvc.lock"], repo)
    _git(["commit", "-q", "-m", "prepare"], repo)
    r = _dvc(["push"], repo)
    assert r.returncode == 0, r.stderr
    assert any(p.is_file() for p in store.rglob("*")), "dvc push wrote nothing to the default remote"

    clone = work / "clone"
    r = subprocess.run(["git", "clone", "-q", str(repo), str(clone)], env=_env(work), capture_output=True, text=True,
                       timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert not (clone / "data").exists()
    r = _dvc(["pull", "prepare"], clone)  # (`make pull` pulls every stage; only prepare ran here)
    assert r.returncode == 0, f"{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    assert (clone / "data" / "prepared" / "utterances.parquet").read_bytes() == table.read_bytes()
    # metrics are cached outputs too (dvc.yaml has no `cache: false`): they travel with push / pull
    summary = repo / "data" / "prepared" / "summary.json"
    assert (clone / "data" / "prepared" / "summary.json").read_bytes() == summary.read_bytes()
    r = _dvc(["status", "prepare"], clone)  # the pulled outputs match dvc.lock
    assert r.returncode == 0 and "changed outs" not in r.stdout, r.stdout
    r = _dvc(["metrics", "show", "--json"], clone)
    assert r.returncode == 0 and "utterances" in r.stdout, r.stdout
