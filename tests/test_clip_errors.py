"""Nothing lost on an error (issue 16, item 4).

A clip whose processing raises gets manifest status ``error`` with ``"<type>: <message>"`` in
``reason`` (``decode_error`` stays for undecodable files), the other clips go on, the exit status is
1; bad input alone still exits 0. Each clip's row is on disk (appended and flushed) when the clip
finishes, so an abort later keeps it; the final manifest is rewritten sorted. A rerun of
``extract_faces`` with the same inputs retries the ``error`` clips only and ends with the bytes of
an uninterrupted run.

The fault is real code, not a mock of the code under test: ``fault_mtcnn``, the MTCNN detector
registered under another name, raises ``RuntimeError`` on frames carrying a red corner square (the
clip ``dia0_utt2``) unless ``$FACIALMMT_TEST_FAULT`` is ``off``. It is chosen by params; the pool
test runs the stage in a child script that imports this module, so the spawned workers (which
re-import the child's main script) know the detector too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import face_frame, is_marked
from stage1_face_extraction import cli, store
from stage1_face_extraction.common.runstate import MARKER
from stage1_face_extraction.detectors import MTCNNDetector, register_detector
from stage1_face_extraction.executors import runner, steps
from stage1_face_extraction.journal import JOURNAL
from stage1_face_extraction.pipeline import FacePipeline
from stage1_face_extraction.stages import extract_faces, prepare
from stage1_face_extraction.store import FaceShardWriter, ManifestAppender, read_manifest, write_manifest
from stage1_face_extraction.video import write_video

FAULT_ENV = "FACIALMMT_TEST_FAULT"
FAULT_MESSAGE = "injected fault: a frame with the red marker"
BAD = "dia0_utt2"  # the clip with the marker
N_CLIPS = 5
UTTS = [f"dia0_utt{i}" for i in range(N_CLIPS)]
HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime"


@register_detector("fault_mtcnn")
class FaultMTCNN(MTCNNDetector):
    """MTCNN, except that it raises on a frame whose top-left corner is red (unless the fault is off)."""

    def detect(self, frames):
        frames = list(frames)
        if os.environ.get(FAULT_ENV) != "off":
            if any(is_marked(f) for f in frames):
                raise RuntimeError(FAULT_MESSAGE)
        return super().detect(frames)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> dict:
    """Five 1-second face clips (``dia0_utt2`` marked), the CSV, params choosing ``fault_mtcnn``
    (one worker, 2 clips per shard, no pictures, identity off) and the prepared table."""
    root = tmp_path_factory.mktemp("clip_errors")
    meld = root / "MELD.Raw"
    clips = meld / "train_splits"
    clips.mkdir(parents=True)
    t = np.arange(16000) / 16000
    speech = (0.3 * (np.sin(2 * np.pi * 4 * t) > 0) * np.sign(np.sin(2 * np.pi * 150 * t))).astype(np.float32)
    good = write_video(clips / "dia0_utt0.mp4", (face_frame(i % 3, False) for i in range(24)), 24, audio=speech,
                       sr=16000, preset="ultrafast")
    write_video(clips / f"{BAD}.mp4", (face_frame(i % 3, True) for i in range(24)), 24, audio=speech, sr=16000,
                preset="ultrafast")
    rows = [HEADER]
    for u in range(N_CLIPS):
        if u not in (0, 2):
            shutil.copy2(good, clips / f"dia0_utt{u}.mp4")
        rows.append(f'{u + 1},Line {u},Joey,neutral,neutral,0,{u},1,1,"00:00:0{u},000","00:00:0{u},900"')
    (meld / "train_sent_emo.csv").write_text("\r\n".join(rows) + "\r\n", encoding="utf-8")
    p = yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))
    p["data"].update(meld_root=str(meld), splits={"train": {"csv": "train_sent_emo.csv", "clips": "train_splits"}})
    p["stage1"].update(utts_per_shard=2, previews=0, contact_sheets=0)
    p["runtime"]["stage1"]["workers"] = 1
    p["stage1"]["detector"]["name"] = "fault_mtcnn"
    p["stage1"]["identity"]["scope"] = "none"
    p["stage1"]["select"].update(min_speaking=0.0, min_margin=0.0)  # a still photo: take its face anyway
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(p, sort_keys=False), encoding="utf-8")
    table = root / "utterances.parquet"
    assert prepare.main(["--params", str(params), "--out", str(table)]) == 0
    argv = ["--params", str(params), "--utterances", str(table), "--meld-root", str(meld)]
    return {"root": root, "meld": meld, "clips": clips, "params": params, "table": table, "argv": argv}


@pytest.fixture
def processed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """utt_ids the in-process runner (workers=1) finished."""
    seen: list[str] = []
    real = steps.safe_finish
    monkeypatch.setattr(steps, "safe_finish",
                        lambda pipe, job, a, ids: seen.append(job.utt_id) or real(pipe, job, a, ids))
    return seen


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "timings.jsonl"}


def _check_error_row(rec: dict) -> None:
    assert rec["utt_id"] == BAD and rec["status"] == "error", rec
    assert rec["reason"] == f"RuntimeError: {FAULT_MESSAGE}", rec
    assert rec["frames"] == [] and rec["tracks"] == [] and rec["n_frames"] == 0


def _check_good_row(rec: dict) -> None:
    assert rec["status"] == "ok" and rec["frames"] and rec["n_frames"] == 24, rec


# ------------------------------------------------------------------------------------------------
# the store pieces


def _record(u: str, status: str = "ok") -> dict:
    return {"clip": f"c/{u}.mp4", "utt_id": u, "status": status, "fps": 24.0, "n_frames": 3,
            "frames": [{"frame": 1, "t": 0.0416666, "box": [1.0, 2.0, 3.0, 4.0]}], "tracks": [],
            "timings": {"total_s": 0.123456}}


def test_manifest_appender_rows_match_write_manifest(tmp_path: Path) -> None:
    recs = [_record(u) for u in ("u3", "u1", "u2")] + [dict(_record("u0"), status="error", reason="E: x")]
    path = tmp_path / "m" / "manifest.jsonl"
    with ManifestAppender(path, records=recs[:1]) as app:
        for r in recs[1:]:
            app.append(r)
            # flushed at once: another reader sees the row before the appender is closed
            assert _rows(path)[-1]["utt_id"] == r["utt_id"]
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    ref = tmp_path / "ref" / "manifest.jsonl"
    for r, line in zip(recs, lines):  # each row is a write_manifest line
        write_manifest(ref, [r])
        assert ref.read_bytes().decode("utf-8") == line
    assert [json.loads(x)["utt_id"] for x in path.with_name("timings.jsonl").read_text().splitlines()] == \
        ["u3", "u1", "u2", "u0"]
    write_manifest(path, recs)  # the end of a run: sorted, the bytes of a one-shot write
    write_manifest(ref, list(reversed(recs)))
    assert path.read_bytes() == ref.read_bytes()
    assert [r["utt_id"] for r in read_manifest(path)] == ["u0", "u1", "u2", "u3"]


def test_manifest_appender_rejects_a_bad_status(tmp_path: Path) -> None:
    with ManifestAppender(tmp_path / "manifest.jsonl") as app, pytest.raises(ValueError, match="unknown status"):
        app.append(_record("u0", status="boom"))


def test_shard_writer_redo_rewrites_whole_shards(tmp_path: Path) -> None:
    plan = [f"u{i}" for i in range(5)]
    crops = {u: np.random.default_rng(i).integers(0, 255, (2, 16, 16, 3), dtype=np.uint8) for i, u in enumerate(plan)}

    def write(root: Path, skip: set[str] = frozenset()) -> None:
        with FaceShardWriter(root, utts_per_shard=2, plan=plan) as w:
            for u in plan:
                if u not in w:
                    w.add(u, crops[u][:0] if u in skip else crops[u])

    write(tmp_path / "ref")
    out = tmp_path / "out"
    write(out, skip={"u2"})  # u2 stored with no crops, as an error clip is
    w = FaceShardWriter(out, utts_per_shard=2, plan=plan)
    assert w.redo({"u2", "nope"}) == {"u2", "u3"}  # its shard-mate too
    assert "u2" not in w and "u3" not in w and "u0" in w and "u4" in w
    w.close()
    assert _index_ids(out) == ["u0", "u1", "u4"]  # the index says what is finished
    write(out)
    assert _snapshot(out) == _snapshot(tmp_path / "ref")
    with pytest.raises(RuntimeError, match="plan"):
        FaceShardWriter(tmp_path / "noplan").redo({"u0"})


def _index_ids(root: Path) -> list[str]:
    return sorted(json.loads(x)["utt_id"] for x in (root / "index.jsonl").read_text().splitlines())


# ------------------------------------------------------------------------------------------------
# extract_faces in this process (workers=1)


def test_extract_faces_error_clip_abort_then_resume_and_retry(
    corpus: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, processed: list[str]
) -> None:
    out = tmp_path / "faces"
    split = out / "train"
    argv = [*corpus["argv"], "--out", str(out), "--summary", str(tmp_path / "summary.json")]

    # 1. the run is aborted (an exception that nothing catches) while storing dia0_utt3 (its row comes
    #    after its crops), after the error clip: the rows of the clips finished so far are on disk,
    #    read while the run is alive
    real_add = store.FaceShardWriter.add
    seen: dict[str, list[dict]] = {}

    def add(self, utt_id, crops):
        if utt_id == "dia0_utt3":
            seen["rows"] = _rows(split / "manifest.jsonl")
            raise KeyboardInterrupt
        return real_add(self, utt_id, crops)

    monkeypatch.setattr(store.FaceShardWriter, "add", add)
    with pytest.raises(KeyboardInterrupt):
        extract_faces.main(argv)
    monkeypatch.setattr(store.FaceShardWriter, "add", real_add)
    assert [r["utt_id"] for r in seen["rows"]] == UTTS[:3]
    _check_good_row(seen["rows"][0])
    _check_good_row(seen["rows"][1])
    _check_error_row(seen["rows"][2])
    assert _rows(split / "manifest.jsonl") == seen["rows"], "the rows stay on disk after the abort"

    # 2. rerun, the fault still there: it resumes (shard 0 kept), the error clip is an error again,
    #    the other clips are ok, exit status 1; the split keeps its journal and the run its marker
    processed.clear()
    assert extract_faces.main(argv) == 1
    assert processed == ["dia0_utt2", "dia0_utt3", "dia0_utt4"]
    records = read_manifest(split / "manifest.jsonl")
    assert [r["utt_id"] for r in records] == UTTS  # rewritten sorted
    for r in records:
        _check_error_row(r) if r["utt_id"] == BAD else _check_good_row(r)
    assert not any(r["status"] == "decode_error" for r in records)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary == {"train": {"clips": 5, "error": 1, "ok": 4}}
    assert (split / JOURNAL).is_file() and (out / MARKER).is_file()

    # 3. the fault is gone (same inputs: it resumes): only the error clip and its shard-mate are
    #    redone, exit 0, and the bytes are those of an uninterrupted run
    monkeypatch.setenv(FAULT_ENV, "off")
    processed.clear()
    assert extract_faces.main(argv) == 0
    assert processed == ["dia0_utt2", "dia0_utt3"]
    assert not (split / JOURNAL).exists() and not (out / MARKER).exists()
    ref = tmp_path / "ref"
    assert extract_faces.main([*corpus["argv"], "--out", str(ref)]) == 0
    assert _snapshot(split) == _snapshot(ref / "train")
    assert all(r["status"] == "ok" for r in read_manifest(split / "manifest.jsonl"))


def test_extract_faces_identity_step_failure_is_the_groups_clips_error(
    corpus: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the identity step on (scope clip), a group whose identity step raises: its clips get
    status error, the others are stored, exit 1."""
    monkeypatch.setenv(FAULT_ENV, "off")
    p = yaml.safe_load(corpus["params"].read_text())
    p["stage1"]["identity"]["scope"] = "clip"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(p, sort_keys=False))
    real = runner.identify_group

    def identify(group, *a, **kw):
        if group.endswith("dia0_utt1"):
            raise MemoryError("no room for the clusters")
        return real(group, *a, **kw)

    monkeypatch.setattr(runner, "identify_group", identify)
    argv = [*corpus["argv"], "--out", str(tmp_path / "faces")]
    argv[argv.index("--params") + 1] = str(params)
    assert extract_faces.main(argv) == 1
    records = {r["utt_id"]: r for r in read_manifest(tmp_path / "faces" / "train" / "manifest.jsonl")}
    assert sorted(records) == UTTS
    assert records["dia0_utt1"]["status"] == "error"
    assert records["dia0_utt1"]["reason"] == "MemoryError: no room for the clusters"
    assert all(records[u]["status"] == "ok" for u in UTTS if u != "dia0_utt1")


# ------------------------------------------------------------------------------------------------
# extract_faces with the process pool (workers=2) in a child process, killed with SIGKILL

CHILD = """\
import os, signal, sys
sys.path.insert(0, {tests!r})
import test_clip_errors  # registers fault_mtcnn, here and in the spawned workers (they re-import this file)

if __name__ == "__main__":
    from stage1_face_extraction import store
    from stage1_face_extraction.stages import extract_faces

    kill_at = os.environ.get("KILL_AT")
    if kill_at:
        real = store.FaceShardWriter.add

        def add(self, utt_id, crops):
            if utt_id == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, utt_id, crops)

        store.FaceShardWriter.add = add
    sys.exit(extract_faces.main(sys.argv[1:]))
"""


def _run_child(script: Path, argv: list[str], repo_root: Path, **env: str) -> int:
    environ = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(repo_root), **env}
    environ.pop(FAULT_ENV, None)
    log = script.with_name(f"{script.stem}.{len(list(script.parent.glob('*.log')))}.log")
    # a log file, not a pipe: the workers of a killed run would hold a pipe open
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, str(script), *argv], env=environ, cwd=script.parent,
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=fh)
        try:
            proc.wait(timeout=600)
        finally:
            try:  # the pool's worker processes of a killed run: this child's own process group
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if proc.returncode not in (0, 1, -signal.SIGKILL):
        raise AssertionError(f"child exited {proc.returncode}: {log.read_text(errors='replace')[-3000:]}")
    return proc.returncode


def test_extract_faces_pool_error_clip_and_sigkill(corpus: dict, tmp_path: Path, repo_root: Path) -> None:
    script = tmp_path / "run_extract_faces.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent)), encoding="utf-8")
    out = tmp_path / "faces"
    argv = [*corpus["argv"], "--out", str(out), "--workers", "2"]
    # killed with SIGKILL while storing dia0_utt3: the rows of the clips finished before are on disk,
    # the error row (raised in a worker process) among them
    assert _run_child(script, argv, repo_root, KILL_AT="dia0_utt3") == -signal.SIGKILL
    rows = _rows(out / "train" / "manifest.jsonl")
    assert [r["utt_id"] for r in rows] == UTTS[:3]
    for r in rows:
        _check_error_row(r) if r["utt_id"] == BAD else _check_good_row(r)
    # rerun: resumes, ends with every row, sorted, the error clip still an error, exit status 1
    assert _run_child(script, argv, repo_root) == 1
    records = read_manifest(out / "train" / "manifest.jsonl")
    assert [r["utt_id"] for r in records] == UTTS
    for r in records:
        _check_error_row(r) if r["utt_id"] == BAD else _check_good_row(r)


# ------------------------------------------------------------------------------------------------
# facialmmt faces


def test_cli_error_clip_is_recorded_and_exits_1(corpus: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    videos = [corpus["clips"] / f"{u}.mp4" for u in ("dia0_utt0", BAD, "dia0_utt3", "dia0_utt4")]
    out = tmp_path / "out"
    real = FacePipeline.process
    seen: dict[str, list[dict]] = {}

    def process(self, path, utt_id=None, **kw):
        if utt_id == "dia0_utt4":  # a later clip: what is on disk while the run goes on
            seen["rows"] = _rows(out / "manifest.jsonl")
        return real(self, path, utt_id=utt_id, **kw)

    monkeypatch.setattr(FacePipeline, "process", process)
    rc = cli.main([*map(str, videos), "--out", str(out), "--params", str(corpus["params"]), "-q"])
    assert rc == 1
    assert [r["utt_id"] for r in seen["rows"]] == ["dia0_utt0", BAD, "dia0_utt3"]
    records = read_manifest(out / "manifest.jsonl")
    assert [r["utt_id"] for r in records] == ["dia0_utt0", BAD, "dia0_utt3", "dia0_utt4"]
    for r in records:
        _check_error_row(r) if r["utt_id"] == BAD else _check_good_row(r)
    assert records[1]["clip"] == str(videos[1])
    assert sorted(p.name for p in out.glob("*.faces.png")) == sorted(f"{v.stem}.faces.png" for v in videos)
    assert store.FaceShardReader(out).read(BAD).shape[0] == 0


def test_cli_rows_stay_on_disk_when_the_run_is_aborted(
    corpus: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    videos = [corpus["clips"] / f"{u}.mp4" for u in ("dia0_utt0", BAD, "dia0_utt3")]
    out = tmp_path / "out"
    real = FacePipeline.process

    def process(self, path, utt_id=None, **kw):
        if utt_id == "dia0_utt3":
            raise KeyboardInterrupt  # not an error of the clip: the run stops here
        return real(self, path, utt_id=utt_id, **kw)

    monkeypatch.setattr(FacePipeline, "process", process)
    with pytest.raises(KeyboardInterrupt):
        cli.main([*map(str, videos), "--out", str(out), "--params", str(corpus["params"]), "-q"])
    rows = _rows(out / "manifest.jsonl")
    assert [r["utt_id"] for r in rows] == ["dia0_utt0", BAD]
    _check_good_row(rows[0])
    _check_error_row(rows[1])


def test_cli_bad_input_alone_exits_0(corpus: dict, tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n", encoding="utf-8")
    videos = [corpus["clips"] / "dia0_utt0.mp4", tmp_path / "ghost.mp4", text]
    out = tmp_path / "out"
    assert cli.main([*map(str, videos), "--out", str(out), "--params", str(corpus["params"]), "-q"]) == 0
    status = {r["utt_id"]: r["status"] for r in read_manifest(out / "manifest.jsonl")}
    assert status == {"dia0_utt0": "ok", "ghost": "missing", "notes": "decode_error"}
