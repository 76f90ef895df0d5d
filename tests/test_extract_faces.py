"""The DVC stage ``extract_faces`` on the small demo corpus (``small_demo`` in conftest.py).

One reference run (prepare -> extract_faces, 2 workers replaced every ``WORKER_MAX_TASKS`` clip
steps, ``utts_per_shard: 3``) over the whole corpus; then: the output layout, byte-determinism
across worker counts, resuming after a simulated kill and after a real SIGKILL (byte-identical
outputs, finished clips not redone), a bad params key, and (``slow``) the same bytes from
``stage1.executor: ray`` on a local Ray instance.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from stage1_face_extraction import executors
from stage1_face_extraction.common.config import RUNTIME_KEYS, load_section
from stage1_face_extraction.common.runstate import MARKER, OWNER
from stage1_face_extraction.executors import steps
from stage1_face_extraction.extraction import run_fingerprint
from stage1_face_extraction.journal import JOURNAL, load_journal
from stage1_face_extraction.meld import read_utterance_table
from stage1_face_extraction.section import Stage1Config
from stage1_face_extraction.stages import extract_faces, prepare
from stage1_face_extraction.store import FaceShardReader, read_manifest

UTTS_PER_SHARD = 3
WORKER_MAX_TASKS = 7  # the reference run's workers are replaced a few times (stage1.worker_max_tasks)
SPLITS = ("train", "dev", "test")


def _write_params(repo_root: Path, path: Path, meld_root: Path, **stage1) -> Path:
    params = yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))
    params["data"]["meld_root"] = str(meld_root)
    runner = {k: stage1.pop(k) for k in list(stage1) if k in RUNTIME_KEYS["stage1"]}  # runtime.stage1 (not hashed)
    params["stage1"].update(stage1)
    params["runtime"]["stage1"].update(runner)
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every output file of a split folder (relative path -> bytes), minus the wall-time sidecar."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "timings.jsonl"
    }


def _fingerprint_of(stage: "Stage") -> str:
    """The run fingerprint extract_faces writes in its marker for the stage's inputs."""
    cfg = load_section(stage.params, "stage1", Stage1Config)
    table = read_utterance_table(stage.table)
    return run_fingerprint(cfg, stage.table, table, stage.meld)


def _assert_same(a: dict[str, bytes], b: dict[str, bytes]) -> None:
    assert sorted(a) == sorted(b), (sorted(a), sorted(b))
    different = [k for k in a if a[k] != b[k]]
    assert not different, f"files differ: {different}"


class Stage:
    """Paths of the prepared inputs and of the reference run."""

    def __init__(self, root: Path, meld: Path, params: Path, table: Path, ref: Path, summary: Path) -> None:
        self.root, self.meld, self.params, self.table, self.ref, self.summary = root, meld, params, table, ref, summary
        self.log: list[str] = []  # the reference run's messages of stage1_face_extraction.executors

    def argv(self, out: Path, *extra: str) -> list[str]:
        return [
            "--params", str(self.params), "--utterances", str(self.table),
            "--meld-root", str(self.meld), "--out", str(out), *extra,
        ]  # fmt: skip

    @property
    def pictures(self) -> Path:
        """The reference run's pictures (extract_faces' default --pictures: <out>_pictures)."""
        return self.ref.with_name(self.ref.name + "_pictures")

    @property
    def stage1(self) -> dict:
        return yaml.safe_load(self.params.read_text(encoding="utf-8"))["stage1"]

    def plan(self, split: str) -> list[str]:
        table = read_utterance_table(self.table)
        return sorted(table.loc[table["split"] == split, "utt_id"])


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory, small_demo: Path, repo_root: Path) -> Stage:
    root = tmp_path_factory.mktemp("extract_faces")
    params = _write_params(repo_root, root / "params.yaml", small_demo, workers=2, utts_per_shard=UTTS_PER_SHARD,
                           contact_sheets=4, worker_max_tasks=WORKER_MAX_TASKS)
    table = root / "prepared" / "utterances.parquet"
    assert prepare.main(["--params", str(params), "--out", str(table)]) == 0
    st = Stage(root, small_demo, params, table, root / "faces", root / "faces_summary.json")
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: st.log.append(record.getMessage())
    logger = logging.getLogger(executors.__name__)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        assert extract_faces.main(st.argv(st.ref, "--summary", str(st.summary))) == 0
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return st


@pytest.fixture
def processed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """utt_ids the in-process runner (workers=1) actually ran the pipeline on."""
    seen: list[str] = []
    real = steps.safe_finish

    def counting(pipe, job, analysis, identities):
        seen.append(job.utt_id)
        return real(pipe, job, analysis, identities)

    monkeypatch.setattr(steps, "safe_finish", counting)
    return seen


# ------------------------------------------------------------------------------------------------


def test_stage_outputs(stage: Stage, small_demo: Path) -> None:
    truth = json.loads((small_demo / "truth.json").read_text(encoding="utf-8"))
    table = read_utterance_table(stage.table)
    summary = json.loads(stage.summary.read_text(encoding="utf-8"))
    assert sorted(p.name for p in stage.ref.iterdir()) == sorted([*SPLITS, OWNER])  # OWNER: the stage's folder
    assert sorted(summary) == sorted(SPLITS)
    limit = stage.stage1["contact_sheets"]
    truncated = False
    for split in SPLITS:
        out = stage.ref / split
        plan = stage.plan(split)
        assert len(plan) == (table["split"] == split).sum() > 0
        # shards: at most ceil(n / utts_per_shard) files, every utterance indexed exactly once
        shards = sorted(p.name for p in out.glob("shard-*.tar"))
        assert 1 <= len(shards) <= math.ceil(len(plan) / UTTS_PER_SHARD), shards
        index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
        assert sorted(r["utt_id"] for r in index) == plan
        assert {r["shard"] for r in index} == set(shards)
        assert all(sum(r["shard"] == s for r in index) <= UTTS_PER_SHARD for s in shards)
        # manifest: one record per utterance, sorted, statuses and crops consistent with the shards
        records = read_manifest(out / "manifest.jsonl")
        assert [r["utt_id"] for r in records] == plan
        reader = FaceShardReader(out)
        for rec in records:
            crops = reader.read(rec["utt_id"])
            assert crops.shape == (len(rec["frames"]), 160, 160, 3) if rec["frames"] else crops.shape[0] == 0
            assert rec["status"] in ("ok", "no_speaker"), rec
            assert (rec["status"] == "ok") == bool(rec["frames"])
            shot_plan = truth["clips"][f"{split}/{rec['utt_id']}"]["shot_plan"]
            assert (rec["status"] == "no_speaker") == (shot_plan == "speaker_off_screen"), (rec["utt_id"], shot_plan)
        # sheets: one PNG for each of the first `contact_sheets` clips with faces
        with_faces = sorted(r["utt_id"] for r in records if r["frames"])
        assert not (out / "sheets").exists() and not (out / "previews").exists()  # pictures: in <out>_pictures
        sheets = sorted((stage.pictures / split).glob("sheets/*.png"))
        assert [p.stem for p in sheets] == with_faces[:limit]
        truncated |= len(with_faces) > limit
        for p in sheets:
            img = cv2.imread(str(p))
            assert img is not None and img.shape[0] >= 160 and img.shape[1] >= 160 and img.std() > 5
        # summary: the status counts of the manifest
        counts: dict[str, int] = {}
        for r in records:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        assert summary[split] == {"clips": len(plan), **dict(sorted(counts.items()))}
        # nothing left behind by the resumable writer
        assert not list(out.glob("*.tmp")) and not (out / JOURNAL).exists()
        assert (out / "timings.jsonl").is_file()
    assert truncated, "some split should have more clips with faces than contact sheets"


def test_workers_1_and_2_give_identical_bytes(stage: Stage, tmp_path: Path) -> None:
    """The reference (2 workers, each replaced by a fresh process every WORKER_MAX_TASKS steps) and one
    process give the same bytes."""
    replaced = [m for m in stage.log if "worker processes replaced" in m]
    assert replaced and int(replaced[0].split()[0]) >= 2, f"the reference run replaced no worker: {stage.log}"
    out = tmp_path / "faces"
    assert extract_faces.main(stage.argv(out, "--splits", "dev", "--workers", "1")) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(["dev", OWNER])
    _assert_same(_snapshot(stage.ref / "dev"), _snapshot(out / "dev"))


def test_resume_after_simulated_kill(stage: Stage, tmp_path: Path, processed: list[str]) -> None:
    """Rebuild what a kill leaves (the last shard and its index lines gone, a half-written
    ``.tmp`` shard, the journal with a line cut short, no manifest or sheets yet, the previews of
    the finished clips but one), rerun: same bytes as the uninterrupted run, and only the clips of
    the lost shard are processed again, plus the stored clip whose preview is missing."""
    split = "train"
    ref = stage.ref / split
    out = tmp_path / "faces" / split
    out.mkdir(parents=True)
    index = [json.loads(line) for line in (ref / "index.jsonl").read_text().splitlines()]
    shards = sorted({r["shard"] for r in index})
    assert len(shards) >= 2
    kept, lost = shards[:-1], shards[-1]
    for name in kept:
        shutil.copy2(ref / name, out / name)
    (out / "index.jsonl").write_text(
        "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in index if r["shard"] != lost)
    )
    (out / (lost + ".tmp")).write_bytes((ref / lost).read_bytes()[:700])  # half-written shard
    records = {r["utt_id"]: r for r in read_manifest(ref / "manifest.jsonl")}
    redo = sorted(r["utt_id"] for r in index if r["shard"] == lost)
    done = sorted(r["utt_id"] for r in index if r["shard"] != lost)
    journal = [json.dumps(records[u]) for u in done]
    journal.append(json.dumps(records[redo[0]]))  # finished clip whose shard was never written
    cut = json.dumps(records[redo[-1]])
    (out / JOURNAL).write_text("\n".join(journal) + "\n" + cut[: len(cut) // 2])
    ref_previews = stage.pictures / split / "previews"
    out_previews = tmp_path / "faces_pictures" / split / "previews"
    previews = sorted(p.stem for p in ref_previews.glob("*.mp4"))
    stored_previews = [u for u in previews if u in done]
    assert stored_previews, "the first clips of the split should have previews"
    out_previews.mkdir(parents=True)
    for u in stored_previews[1:]:  # the kill came before the first one's preview was drawn
        shutil.copy2(ref_previews / f"{u}.mp4", out_previews / f"{u}.mp4")
    (out.parent / MARKER).write_text(  # the killed run's marker: same inputs, so the rerun resumes
        json.dumps({"fingerprint": _fingerprint_of(stage)}) + "\n")

    assert extract_faces.main(stage.argv(out.parent, "--splits", split, "--workers", "1")) == 0
    assert sorted(processed) == sorted(redo + stored_previews[:1]), \
        "only the clips of the unfinished shard (and the missing preview) must be redone"
    _assert_same(_snapshot(ref), _snapshot(out))
    _assert_same(_snapshot(stage.pictures / split), _snapshot(out_previews.parent))


def test_resume_after_sigkill(stage: Stage, tmp_path: Path, processed: list[str]) -> None:
    """A real kill: run the stage in a subprocess, SIGKILL it as soon as its first shard is
    finished (listed in index.jsonl), rerun in-process, compare with the reference bytes."""
    split = "train"
    out = tmp_path / "faces"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "killed.log"
    cmd = [sys.executable, "-m", "stage1_face_extraction.stages.extract_faces",
           *stage.argv(out, "--splits", split, "--workers", "1")]  # fmt: skip
    index_path = out / split / "index.jsonl"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and proc.poll() is None:
                if index_path.is_file() and index_path.read_text().strip():
                    break
                time.sleep(0.02)
            else:
                pytest.fail(f"no finished shard before exit/timeout (rc {proc.poll()}):\n{log.read_text()[-3000:]}")
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert (out / split / JOURNAL).exists(), "the run finished before it was killed"
    stored = {json.loads(line)["utt_id"] for line in index_path.read_text().splitlines() if line.strip()}
    plan = stage.plan(split)
    assert 0 < len(stored) < len(plan)
    # the manifest rows of the clips finished before the kill are on disk (each appended once its clip
    # is journaled and handed to the shard writer: only the clip whose shard the kill followed may lack it)
    lines = (out / split / "manifest.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines[:-1]]
    try:
        rows.append(json.loads(lines[-1]))
    except (IndexError, json.JSONDecodeError):  # the last line may be cut short by the kill
        pass
    journaled = set(load_journal(out / split / JOURNAL))
    ids = {r["utt_id"] for r in rows}
    assert len(stored - ids) <= 1 and ids <= journaled, (stored, ids, journaled)

    assert extract_faces.main(stage.argv(out, "--splits", split, "--workers", "1")) == 0
    assert sorted(processed) == sorted(set(plan) - stored), "finished clips must not be processed again"
    _assert_same(_snapshot(stage.ref / split), _snapshot(out / split))


@pytest.mark.slow
def test_ray_executor_gives_identical_bytes(stage: Stage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``stage1.executor: ray`` on a new local Ray instance (``address: local``, 2 actors) that the
    runner starts and shuts down: every split byte-identical to the reference (local pool)."""
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized()
    # Ray's unix sockets live under its temp dir and their paths must stay under ~107 bytes:
    # tmp_path is too deep, so a short folder under /tmp, removed at the end.
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    monkeypatch.setenv("RAY_TMPDIR", str(ray_tmp))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a local test instance: no token file in ~/.ray
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    params = yaml.safe_load(stage.params.read_text(encoding="utf-8"))
    params["runtime"]["stage1"].update(executor="ray", ray={"address": "local", "actors": 2})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    out = tmp_path / "faces"
    argv = ["--params", str(path), "--utterances", str(stage.table), "--meld-root", str(stage.meld), "--out", str(out)]
    try:
        t0 = time.monotonic()
        assert extract_faces.main(argv) == 0
        print(f"extract_faces on Ray (2 actors, {len(SPLITS)} splits): {time.monotonic() - t0:.1f} s")
        assert not ray.is_initialized(), "the runner shuts down the Ray instance it started"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    for split in SPLITS:
        _assert_same(_snapshot(stage.ref / split), _snapshot(out / split))


@pytest.mark.parametrize("section, key", [("stage1", "bogus_knob"), ("stage1.tracking", "bogus_gap"),
                                          ("stage1.detector", "bogus_scale")])  # fmt: skip
def test_bad_params_key_exits_2(
    stage: Stage, tmp_path: Path, repo_root: Path, caplog: pytest.LogCaptureFixture, section: str, key: str
) -> None:
    params = yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))
    node = params
    for part in section.split("."):
        node = node[part]
    node[key] = 1
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    out = tmp_path / "faces"
    argv = ["--params", str(path), "--utterances", str(stage.table), "--meld-root", str(stage.meld), "--out", str(out)]
    with caplog.at_level("ERROR"):
        assert extract_faces.main(argv) == 2
    assert key in caplog.text, caplog.text
    assert not list(out.rglob("shard-*.tar")), "no work may start with a bad params file"


def test_missing_utterance_table_exits_2(stage: Stage, tmp_path: Path) -> None:
    argv = ["--params", str(stage.params), "--utterances", str(tmp_path / "nope.parquet"),
            "--meld-root", str(stage.meld), "--out", str(tmp_path / "faces")]  # fmt: skip
    assert extract_faces.main(argv) == 2


def test_reference_crops_are_the_speakers(stage: Stage, small_demo: Path) -> None:
    """The stored crops decode to real faces (not blank) for each ok clip of every split."""
    for split in SPLITS:
        reader = FaceShardReader(stage.ref / split)
        for rec in read_manifest(stage.ref / split / "manifest.jsonl"):
            crops = reader.read(rec["utt_id"])
            if rec["status"] == "ok":
                assert crops.dtype == np.uint8 and len(crops) == len(rec["frames"]) > 0
                assert float(crops.std()) > 10
