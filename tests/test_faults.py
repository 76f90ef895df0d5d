"""Faults (issue 8, items 2 and 3): a full disk, ``kill -9`` of ``dvc repro`` mid-stage, and
determinism of whole runs.

Fast:

* a full disk while writing a file, a face shard or a feature shard (simulated: ``os.fsync`` raises
  ENOSPC on the Nth call): the error names the file, no ``.tmp`` / half-written shard is left,
  what was finished is kept and a new writer finishes with the bytes of an uninterrupted one;
* the same on a REAL full file system (a small tmpfs, when this process may mount one, i.e. root):
  ``extract_faces`` and ``features`` exit 1 with the message; after space is freed (the folder
  copied to a roomy disk), the rerun resumes and ends byte-identical to an uninterrupted run.

``slow`` (``dvc repro`` of a tiny demo in copies of the project, ``test_dvc_pipeline``'s helpers):

* two full runs from scratch give identical ``dvc.lock`` files (every stage's output hashes) and
  identical bytes;
* ``kill -9`` of the ``dvc repro`` process group during ``extract_faces``, rerun (it resumes:
  finished shards are kept), ``kill -9`` during ``features@visual``, rerun: the same ``dvc.lock``
  and bytes as the uninterrupted run.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml

from stage1_face_extraction.common.atomic import atomic_write_bytes
from stage1_face_extraction.common.runstate import MARKER
from stage1_face_extraction.journal import JOURNAL
from stage1_face_extraction.stages import extract_faces, prepare
from stage1_face_extraction.store import FaceShardWriter
from stage1_face_extraction.video import write_video
from stage2_mer.features.store import FeatureReader, FeatureWriter
from test_dvc_pipeline import _lock_outs

HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime"


class _FailingFsync:
    """``os.fsync`` that raises ENOSPC on calls number ``fail_on`` (1-based) and later."""

    def __init__(self, fail_on: int) -> None:
        self.fail_on, self.calls, self.real = fail_on, 0, os.fsync

    def __call__(self, fd: int) -> None:
        self.calls += 1
        if self.calls >= self.fail_on:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.real(fd)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "timings.jsonl"}


def _assert_same(a: dict[str, bytes], b: dict[str, bytes]) -> None:
    assert sorted(a) == sorted(b), (sorted(set(a) ^ set(b)))
    different = [k for k in a if a[k] != b[k]]
    assert not different, f"files differ: {different}"


def _crops(seed: int, n: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------
# simulated ENOSPC


def test_atomic_write_on_a_full_disk_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "manifest.jsonl"
    atomic_write_bytes(path, b"old\n")
    monkeypatch.setattr(os, "fsync", _FailingFsync(1))
    with pytest.raises(OSError, match=r"no space left on device writing .*manifest\.jsonl \(4 bytes\)") as e:
        atomic_write_bytes(path, b"new\n")
    assert e.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.jsonl"]


def test_face_shards_on_a_full_disk_then_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = [f"dia0_utt{i}" for i in range(6)]

    def write(root: Path) -> None:
        with FaceShardWriter(root, utts_per_shard=2, plan=plan) as w:
            for i, u in enumerate(plan):
                if u not in w:
                    w.add(u, _crops(i))

    write(tmp_path / "ref")
    out = tmp_path / "out"
    # fsyncs: shard 0, index, shard 1 (fails)
    monkeypatch.setattr(os, "fsync", _FailingFsync(3))
    with pytest.raises(OSError, match=r"no space left on device writing .*shard-00001\.tar") as e:
        write(out)
    assert "free some space and rerun" in str(e.value)
    assert sorted(p.name for p in out.iterdir()) == ["index.jsonl", "shard-00000.tar"]  # no .tmp, no half shard
    assert {json.loads(x)["shard"] for x in (out / "index.jsonl").read_text().splitlines()} == {"shard-00000.tar"}
    monkeypatch.undo()
    write(out)  # space freed: resumes, shard 0 kept
    _assert_same(_snapshot(tmp_path / "ref"), _snapshot(out))


def test_feature_shards_on_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "feats"
    monkeypatch.setattr(os, "fsync", _FailingFsync(2))
    with pytest.raises(OSError, match=r"no space left on device writing .*shard-00001\.safetensors"), \
            FeatureWriter(out, dim=4, rows_per_shard=3) as w:
        for i in range(4):
            w.add(f"dia0_utt{i}", np.ones((2, 4), np.float32) * i)
    # a finished shard, no .tmp, and no index/meta: the folder reads as unfinished
    assert sorted(p.name for p in out.iterdir()) == ["shard-00000.safetensors"]
    with pytest.raises(FileNotFoundError, match="not a finished feature folder"):
        FeatureReader(out)


# ------------------------------------------------------------------------------------------------
# a real full file system: a small tmpfs


@pytest.fixture
def small_fs(tmp_path: Path):
    """Mount a tmpfs of ``size`` bytes at a fresh folder; skipped where mounting is not allowed."""
    mounts: list[Path] = []

    def mount(size: int) -> Path:
        where = tmp_path / f"tmpfs-{len(mounts)}"
        where.mkdir()
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a small tmpfs needs root (the simulated-ENOSPC tests cover the logic)")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                           capture_output=True, text=True, timeout=30, check=False)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounts.append(where)
        return where

    yield mount
    for m in mounts:
        subprocess.run(["umount", "-l", str(m)], capture_output=True, timeout=30, check=False)


def _face_frame(shift: int) -> np.ndarray:
    import cv2
    from skimage import data

    img = cv2.resize(data.astronaut()[0:300, 75:375], (240, 240), interpolation=cv2.INTER_AREA)  # face ~70x88 px
    out = np.full((240, 320, 3), 90, np.uint8)
    out[:, 40 + shift : 280 + shift] = img
    return out


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> dict:
    """Six 1-second face clips (one clip written once, copied) + CSV + params + the prepared table,
    and a reference extract_faces run on a roomy disk."""
    root = tmp_path_factory.mktemp("tiny")
    meld = root / "MELD.Raw"
    clips = meld / "train_splits"
    clips.mkdir(parents=True)
    t = np.arange(16000) / 16000
    speech = (0.3 * (np.sin(2 * np.pi * 4 * t) > 0) * np.sign(np.sin(2 * np.pi * 150 * t))).astype(np.float32)
    first = write_video(clips / "dia0_utt0.mp4", (_face_frame(i % 3) for i in range(24)), 24, audio=speech,
                        sr=16000, preset="ultrafast")
    rows = [HEADER]
    for u in range(6):
        if u:
            shutil.copy2(first, clips / f"dia0_utt{u}.mp4")
        rows.append(f'{u + 1},Line {u},Joey,neutral,neutral,0,{u},1,1,"00:00:0{u},000","00:00:0{u},900"')
    (meld / "train_sent_emo.csv").write_text("\r\n".join(rows) + "\r\n", encoding="utf-8")
    p = yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))
    p["data"].update(meld_root=str(meld), splits={"train": {"csv": "train_sent_emo.csv", "clips": "train_splits"}})
    p["stage1"].update(utts_per_shard=1, previews=0, contact_sheets=0)
    p["runtime"]["stage1"]["workers"] = 1
    p["stage1"]["identity"]["scope"] = "none"
    # a still photo does not move its lips: take its face anyway (this is about files, not about ASD)
    p["stage1"]["select"].update(min_speaking=0.0, min_margin=0.0)
    p["features"]["audio"]["name"] = "fbank"
    p["runtime"]["features"]["audio"]["workers"] = 0
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(p, sort_keys=False), encoding="utf-8")
    table = root / "utterances.parquet"
    assert prepare.main(["--params", str(params), "--out", str(table)]) == 0
    ref = root / "ref"
    argv = ["--params", str(params), "--utterances", str(table), "--meld-root", str(meld)]
    assert extract_faces.main([*argv, "--out", str(ref)]) == 0
    sizes = sorted(p.stat().st_size for p in (ref / "train").glob("shard-*.tar"))
    return {"argv": argv, "ref": ref, "meld": meld, "table": table, "params": params, "shard_sizes": sizes}


def test_extract_faces_on_a_full_disk_then_resume(tiny_corpus: dict, small_fs, tmp_path: Path, caplog) -> None:
    sizes = tiny_corpus["shard_sizes"]
    assert len(sizes) == 6 and min(sizes) > 20_000, sizes
    # room for about two and a half shards (plus the small journal and index files)
    fs = small_fs(int(sum(sizes[:2]) + sizes[2] // 2 + 16_384))
    out = fs / "faces"
    with caplog.at_level("ERROR"):
        rc = extract_faces.main([*tiny_corpus["argv"], "--out", str(out)])
    assert rc == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "no space left on device" in errors[0] and str(out) in errors[0], errors
    split = out / "train"
    assert not list(split.rglob("*.tmp")), "no temp file may be left"
    indexed = {json.loads(x)["shard"] for x in (split / "index.jsonl").read_text().splitlines() if x.strip()}
    shards = sorted(p.name for p in split.glob("shard-*.tar"))
    assert 1 <= len(indexed) < 6 and set(shards) >= indexed
    for name in shards:  # every shard on disk is whole (a finished tar), none half-written
        with tarfile.open(split / name) as tar:
            assert all(m.size > 0 for m in tar.getmembers())
        assert (split / name).stat().st_size in sizes
    # free space: move the folder to a roomy disk and rerun; it resumes and ends identical
    roomy = tmp_path / "faces"
    shutil.copytree(out, roomy)
    caplog.clear()
    with caplog.at_level("INFO"):
        assert extract_faces.main([*tiny_corpus["argv"], "--out", str(roomy)]) == 0
    assert "resuming an interrupted run" in caplog.text
    _assert_same(_snapshot(tiny_corpus["ref"]), _snapshot(roomy))


def test_features_on_a_full_disk(tiny_corpus: dict, small_fs, caplog) -> None:
    from stage2_mer.stages import features

    fs = small_fs(64 * 1024)
    argv = ["--params", str(tiny_corpus["params"]), "--modality", "audio", "--utterances", str(tiny_corpus["table"]),
            "--meld-root", str(tiny_corpus["meld"]), "--out", str(fs / "audio")]
    # 6 utterances x ~100 frames x 80 bins x 2 bytes ~ 100 KB: more than the 64 KB file system holds
    with caplog.at_level("ERROR"):
        assert features.main(argv) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "no space left on device writing" in errors[0], errors
    assert not list(fs.rglob("*.tmp"))
    assert not list(fs.rglob("index.jsonl")) and not list(fs.rglob("meta.json")), "the split must read as unfinished"


def test_run_state_resumes_only_the_same_inputs(tmp_path: Path) -> None:
    from stage1_face_extraction.common.runstate import MARKER, RunState

    out = tmp_path / "out"
    assert RunState(out, "a").begin() == "new" and (out / MARKER).is_file()
    assert RunState(out, "a").begin() == "resume"  # killed, rerun with the same inputs
    assert RunState(out, "b").begin() == "changed"  # killed, rerun after params/data/code changed
    state = RunState(out, "b")
    assert state.begin() == "resume"
    state.finish()
    assert not (out / MARKER).exists()
    assert RunState(out, "b").begin() == "new"  # a finished run is never resumed


def test_extract_faces_interrupted_then_rerun_with_other_params_starts_over(
    tiny_corpus: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    from stage1_face_extraction.executors import steps

    out = tmp_path / "faces"
    monkeypatch.setattr(os, "fsync", _FailingFsync(6))  # a few shards, then the disk is full
    assert extract_faces.main([*tiny_corpus["argv"], "--out", str(out)]) == 1
    monkeypatch.undo()
    assert 0 < len(list((out / "train").glob("shard-*.tar"))) < 6
    p = yaml.safe_load(tiny_corpus["params"].read_text())
    p["stage1"]["jpeg_quality"] = 80
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(p, sort_keys=False))
    seen: list[str] = []
    real = steps.safe_finish
    monkeypatch.setattr(steps, "safe_finish", lambda pipe, job, a, ids: seen.append(job.utt_id) or real(
        pipe, job, a, ids))
    argv = [*tiny_corpus["argv"], "--out", str(out)]
    argv[argv.index("--params") + 1] = str(params)
    with caplog.at_level("WARNING"):
        assert extract_faces.main(argv) == 0
    assert "had other inputs" in caplog.text and "starting over" in caplog.text
    assert sorted(seen) == [f"dia0_utt{i}" for i in range(6)], "nothing of the other run may be reused"
    ref_shard = (tiny_corpus["ref"] / "train" / "shard-00000.tar").read_bytes()
    assert (out / "train" / "shard-00000.tar").read_bytes() != ref_shard  # written at quality 80


def test_features_interrupted_then_resumed(tiny_corpus: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           caplog) -> None:
    """A features run stopped by a fault (a full disk) in its second split, then rerun: it resumes
    (the run marker matches), keeps the finished split, and ends with the bytes of an
    uninterrupted run."""
    import pandas as pd

    from stage2_mer.stages import features

    train = pd.read_parquet(tiny_corpus["table"])
    table = tmp_path / "utterances.parquet"  # a dev split too (the same clips)
    pd.concat([train, train.assign(split="dev")], ignore_index=True).to_parquet(table, index=False)

    def argv(out: Path) -> list[str]:
        return ["--params", str(tiny_corpus["params"]), "--modality", "audio", "--utterances", str(table),
                "--meld-root", str(tiny_corpus["meld"]), "--out", str(out)]

    assert features.main(argv(tmp_path / "ref")) == 0
    out = tmp_path / "out"
    monkeypatch.setattr(
        os, "fsync", _FailingFsync(6)
    )  # ownership file, run marker; train: shard, index, meta; dev shard fails
    assert features.main(argv(out)) == 1
    monkeypatch.undo()
    assert (out / ".run-in-progress.json").is_file() and (out / "fbank" / "train" / "meta.json").is_file()
    assert not (out / "fbank" / "dev" / "meta.json").exists()
    with caplog.at_level("INFO"):
        assert features.main(argv(out)) == 0
    assert "resuming an interrupted run" in caplog.text
    assert "audio train: finished before the interruption, kept" in caplog.text
    _assert_same(_snapshot(tmp_path / "ref"), _snapshot(out))


# ------------------------------------------------------------------------------------------------
# dvc repro: determinism and kill -9 (slow)


TINY_DEMO = {"dialogues_per_split": {"train": 1, "dev": 1, "test": 1}, "utterances_min": 3, "utterances_max": 3,
             "duration_min_s": 1.5, "duration_max_s": 2.0}


def _project(repo_root: Path, dst: Path, runtime: dict | None = None) -> Path:
    from test_dvc_pipeline import _copy_project, _dvc, _git

    dst.mkdir(parents=True)
    _copy_project(repo_root, dst)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    params["demo"].update(TINY_DEMO)
    for section, knobs in (runtime or {}).items():
        params["runtime"][section].update(knobs)
    params["stage1"]["utts_per_shard"] = 1  # a shard per clip: a kill finds finished and unfinished shards
    params["train"]["epochs"] = 1
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (dst / ".gitignore").write_text("__pycache__/\n")
    _git(["init", "-q", "-b", "main"], dst)
    assert _dvc(["init", "-q"], dst).returncode == 0
    _git(["add", "-A"], dst)
    _git(["commit", "-q", "-m", "project"], dst)
    return dst


def _repro(d: Path, *targets: str) -> str:
    from test_dvc_pipeline import _dvc

    r = _dvc(["repro", *targets], d)
    assert r.returncode == 0, f"dvc repro failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


def _outputs(d: Path) -> dict[str, bytes]:
    """Every file the pipeline wrote (data/), minus the wall-time sidecars (not in any DVC hash)."""
    return _snapshot(d / "data")


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Path:
    d = _project(repo_root, tmp_path_factory.mktemp("run_a") / "project")
    t0 = time.monotonic()
    _repro(d)
    print(f"tiny demo dvc repro: {time.monotonic() - t0:.0f} s")
    return d


@pytest.mark.slow
def test_two_full_runs_give_identical_dvc_lock(reference_run: Path, tmp_path: Path, repo_root: Path) -> None:
    b = _project(repo_root, tmp_path / "project")
    _repro(b)
    a_outs, b_outs = _lock_outs(reference_run), _lock_outs(b)
    spec = yaml.safe_load((b / "dvc.yaml").read_text())
    assert len(a_outs) >= len(spec["stages"]), a_outs.keys()
    diff = {k: (a_outs[k], b_outs.get(k)) for k in a_outs if a_outs[k] != b_outs.get(k)}
    assert not diff, f"stages whose outputs differ between two runs: {diff}"
    assert (reference_run / "dvc.lock").read_text() == (b / "dvc.lock").read_text()
    _assert_same(_outputs(reference_run), _outputs(b))


def _repro_killed_when(d: Path, ready, what: str, timeout: float = 900, targets: tuple[str, ...] = ()) -> str:
    """Start ``dvc repro`` in its own process group, SIGKILL the whole group once ``ready()`` is true."""
    from test_dvc_pipeline import _env

    log = d.parent / f"killed-{uuid.uuid4().hex[:6]}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro", *targets], cwd=d, env=_env(d), stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline and not ready():
                time.sleep(0.02)
            assert proc.poll() is None, f"dvc repro ended before {what}:\n{log.read_text()[-3000:]}"
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(timeout=60)
    time.sleep(0.5)  # let the killed group's children go
    return log.read_text(errors="replace")


def _has_finished_shard(d: Path) -> bool:
    for index in (d / "data" / "faces").glob("*/index.jsonl"):
        try:
            if index.read_text().strip():
                return True
        except OSError:
            pass
    return False


@pytest.mark.slow
def test_kill_9_during_extract_faces_and_features_then_rerun(reference_run: Path, tmp_path: Path,
                                                             repo_root: Path) -> None:
    d = _project(repo_root, tmp_path / "project")
    log = _repro_killed_when(d, lambda: _has_finished_shard(d), "a finished shard")
    assert "Running stage 'extract_faces'" in log
    assert not (d / "data" / "faces_summary.json").exists(), "extract_faces finished before the kill"
    kept = {p.name for p in (d / "data" / "faces").glob("*/shard-*.tar")}
    assert kept, "the kill left no finished shard"

    visual = d / "data" / "features" / "visual"
    log = _repro_killed_when(d, lambda: any(visual.glob("*/*")), "features@visual started")
    assert "resuming an interrupted run" in log, log[-3000:]  # the finished shards were not redone
    assert "Running stage 'features@visual'" in log, log[-3000:]
    assert not (d / "data" / "features" / "visual_summary.json").exists(), "features@visual finished before the kill"

    out = _repro(d)
    assert "Running stage 'extract_faces'" not in out, "extract_faces was complete: not run again"
    assert "resuming an interrupted run" in out, out[-3000:]  # features@visual
    assert _lock_outs(d) == _lock_outs(reference_run)
    assert (d / "dvc.lock").read_text() == (reference_run / "dvc.lock").read_text()
    _assert_same(_outputs(reference_run), _outputs(d))
    leftovers = [p for p in (d / "data").rglob("*")
                 if p.name.endswith(".tmp") or (p.name.startswith(".") and p.name != ".gitignore")]  # DVC's
    assert not leftovers, leftovers


# ------------------------------------------------------------------------------------------------
# the same guarantees, reduced to stage 1 (fast: they run in `make test`, a few minutes on 2 cores)

STAGE1 = ("make_demo", "prepare", "extract_faces")
ONE = {"stage1": {"workers": 1}, "demo": {"workers": 1}}
TWO = {"stage1": {"workers": 2, "worker_max_tasks": 3}, "demo": {"workers": 2}}  # stage1.torch_threads is hashed


def _stage1_outputs(d: Path) -> dict[str, bytes]:
    return {k: v for k, v in _outputs(d).items() if not k.startswith(("features", "model", "eval", "affwild2"))}


@pytest.fixture(scope="module")
def stage1_reference(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Path:
    """``dvc repro extract_faces`` of the tiny demo (9 clips), one process and one torch thread."""
    d = _project(repo_root, tmp_path_factory.mktemp("stage1_ref") / "project", runtime=ONE)
    t0 = time.monotonic()
    _repro(d, "extract_faces")
    print(f"tiny demo up to extract_faces: {time.monotonic() - t0:.0f} s")
    return d


def test_two_runs_give_identical_hashes_whatever_the_worker_and_thread_counts(stage1_reference: Path,
                                                                             tmp_path: Path, repo_root: Path) -> None:
    """Reduced form of test_two_full_runs_give_identical_dvc_lock: a second run from scratch with
    2 rendering processes and 2 stage-1 workers recycled every 3 steps gives the same dvc.lock
    outputs and bytes (the runner knobs are not hashed: the same lock, too). Not torch threads:
    with 2 per worker MTCNN's boxes move in the 4th decimal (stage1.torch_threads is hashed)."""
    b = _project(repo_root, tmp_path / "project", runtime=TWO)
    _repro(b, "extract_faces")
    a_outs, b_outs = _lock_outs(stage1_reference), _lock_outs(b)
    assert set(STAGE1) <= set(a_outs), a_outs.keys()
    diff = {k: (a_outs[k], b_outs.get(k)) for k in STAGE1 if a_outs[k] != b_outs.get(k)}
    assert not diff, f"stages whose outputs differ between the two runs: {diff}"
    assert (stage1_reference / "dvc.lock").read_text() == (b / "dvc.lock").read_text()
    _assert_same(_stage1_outputs(stage1_reference), _stage1_outputs(b))


def test_kill_9_during_extract_faces_then_resume(stage1_reference: Path, tmp_path: Path, repo_root: Path) -> None:
    """Reduced form of test_kill_9_during_extract_faces_and_features_then_rerun: ``kill -9`` of the
    ``dvc repro`` process group once extract_faces has a finished shard, rerun: it resumes (the
    finished shards are kept) and ends with the reference's dvc.lock and bytes."""
    d = _project(repo_root, tmp_path / "project", runtime=ONE)
    log = _repro_killed_when(d, lambda: _has_finished_shard(d), "a finished shard", targets=("extract_faces",))
    assert "Running stage 'extract_faces'" in log
    assert not (d / "data" / "faces_summary.json").exists(), "extract_faces finished before the kill"
    assert (d / "data" / "faces" / MARKER).is_file(), "the killed run left no marker"
    out = _repro(d, "extract_faces")
    assert "resuming an interrupted run" in out, out[-3000:]
    assert _lock_outs(d) == _lock_outs(stage1_reference)
    assert (d / "dvc.lock").read_text() == (stage1_reference / "dvc.lock").read_text()
    _assert_same(_stage1_outputs(stage1_reference), _stage1_outputs(d))
    leftovers = [p for p in (d / "data").rglob("*")
                 if p.name.endswith(".tmp") or p.name in (MARKER, JOURNAL)]
    assert not leftovers, leftovers
