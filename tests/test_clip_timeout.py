"""``stage1.max_clip_seconds`` (issue 20): a clip whose processing takes longer is recorded with status
``error`` and a reason saying it exceeded the limit, and the run goes on with the next clip; the
per-step timings the same clock records (``clock.py``).

The slow clip is real slowness, not a mock of the code under test: ``slow_mtcnn`` (MTCNN registered
under another name) sleeps on frames carrying a red corner square. The limit is set from a timing
of the good clip on this machine (so the good clips stay well under it however loaded the machine
is), the sleep from the limit (so the slow clip is always over it).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import face_frame, is_marked
from stage1_face_extraction.clock import STEPS, ClipClock, ClipTimeout, check_limit
from stage1_face_extraction.common.config import ConfigError, from_dict
from stage1_face_extraction.detectors import MTCNNDetector, register_detector
from stage1_face_extraction.executors import ClipJob, run_jobs
from stage1_face_extraction.pipeline import FacePipeline
from stage1_face_extraction.section import Stage1Config
from stage1_face_extraction.stages import extract_faces, prepare
from stage1_face_extraction.store import read_manifest
from stage1_face_extraction.video import write_video

SLOW = {"seconds": 0.0}  # the sleep on a marked frame batch (set by the test)
HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime"
EXCEEDED = "ClipTimeout: processing exceeded stage1.max_clip_seconds"


@register_detector("slow_mtcnn")
class SlowMTCNN(MTCNNDetector):
    """MTCNN, except that a batch holding a frame whose top-left corner is red takes ``SLOW['seconds']`` longer."""

    def detect(self, frames):
        frames = list(frames)
        if any(is_marked(f) for f in frames):
            time.sleep(SLOW["seconds"])
        return super().detect(frames)


def _clip(path: Path, marked: bool) -> Path:
    t = np.arange(16000) / 16000
    speech = (0.3 * (np.sin(2 * np.pi * 4 * t) > 0) * np.sign(np.sin(2 * np.pi * 150 * t))).astype(np.float32)
    frames = (face_frame(i % 3, marked) for i in range(24))
    return write_video(path, frames, 24, audio=speech, sr=16000, preset="ultrafast")


def _cfg(**kw) -> Stage1Config:
    cfg = Stage1Config(previews=0, contact_sheets=0, utts_per_shard=2, **kw)
    cfg.detector["name"] = "slow_mtcnn"
    cfg.identity.scope = "none"
    cfg.select.min_speaking, cfg.select.min_margin = 0.0, 0.0  # a still photo: take its face anyway
    return cfg


# ------------------------------------------------------------------------------------------------
# the clock


def test_clock_limit_and_message() -> None:
    now = [0.0]
    clock = ClipClock(limit=2.0, spent=0.5, clock=lambda: now[0])
    clock.check("detect")  # 0.5 s: under
    now[0] = 1.6
    with pytest.raises(
        ClipTimeout, match=r"exceeded stage1\.max_clip_seconds \(2 s\): stopped after 2\.1 s, in detect"
    ):
        clock.check("detect")
    ClipClock(limit=None, spent=1e9, clock=lambda: now[0]).check("x")  # no limit: never
    tiny = ClipClock(limit=1e-6)  # the real clock: a tiny limit is over at the first check after any work
    time.sleep(0.001)
    with pytest.raises(ClipTimeout):
        tiny.check("anything")


def test_clock_steps_exclude_nested_steps_and_frames_check_each_frame() -> None:
    now = [0.0]
    clock = ClipClock(limit=10.0, clock=lambda: now[0])

    def frames():
        for i in range(3):
            now[0] += 1.0  # decoding one frame: 1 s
            yield i

    with clock.step("detect_s"):
        for _ in clock.frames(frames()):
            now[0] += 0.5  # detecting it: 0.5 s
    assert clock.timings == {"decode_s": 3.0, "detect_s": 1.5}

    def shots(items):  # a frame stream over the decoded frames: 0.25 s of its own per frame
        for i in items:
            now[0] += 0.25
            yield i

    clock = ClipClock(limit=None, clock=lambda: now[0])
    with clock.step("detect_s"):
        for _ in clock.frames(shots(clock.frames(frames())), key="shots_s"):
            now[0] += 0.5
    assert clock.timings == {"decode_s": 3.0, "shots_s": 0.75, "detect_s": 1.5}
    clock = ClipClock(limit=2.5, clock=lambda: now[0])
    seen = []
    with pytest.raises(ClipTimeout, match="in decoding"):
        for i in clock.frames(frames()):
            seen.append(i)
    assert seen == [0, 1], "the third frame comes after the limit: not handed out"


def test_limit_param_validation() -> None:
    assert check_limit(None) is None and check_limit(0) is None and check_limit(300) == 300.0
    for bad in (-1, "300", True):
        with pytest.raises(ValueError, match="max_clip_seconds"):
            check_limit(bad)
    assert from_dict(Stage1Config, {"max_clip_seconds": 0}).max_clip_seconds is None
    assert Stage1Config().max_clip_seconds == 1800.0
    with pytest.raises(ConfigError, match="max_clip_second"):
        from_dict(Stage1Config, {"max_clip_second": 5})


# ------------------------------------------------------------------------------------------------
# the pipeline and the runner


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("timeout_clips")
    return {"good": _clip(root / "good.mp4", False), "slow": _clip(root / "slow.mp4", True)}


def _limit_for(good: Path) -> float:
    """A limit 5x the good clip's processing time here (at least 2 s), and the slow clip's sleep over it."""
    SLOW["seconds"] = 0.0
    pipe = FacePipeline(_cfg(max_clip_seconds=None))
    pipe.process(good)  # warm-up
    t0 = time.perf_counter()
    res = pipe.process(good)
    took = time.perf_counter() - t0
    assert res.record["status"] == "ok", res.record
    limit = max(2.0, 5 * took)
    SLOW["seconds"] = 1.5 * limit
    return limit


def test_timings_profile_every_step(clips: dict[str, Path]) -> None:
    res = FacePipeline(_cfg(max_clip_seconds=None)).process(clips["good"])
    t = res.record["timings"]
    assert set(STEPS) <= set(t) and all(t[k] >= 0 for k in STEPS)
    assert t["decode_s"] > 0 and t["detect_s"] > 0 and t["crop_s"] > 0
    assert t["total_s"] == pytest.approx(sum(t[k] for k in STEPS))
    assert t["video_s"] == pytest.approx(1.0, abs=0.05)


def test_tiny_limit_every_clip_is_an_error_and_the_run_goes_on(clips: dict[str, Path], tmp_path: Path) -> None:
    SLOW["seconds"] = 0.0
    jobs = [ClipJob(str(clips["good"]), utt_id="a"), ClipJob(str(tmp_path / "absent.mp4"), utt_id="b"),
            ClipJob(str(clips["good"]), utt_id="c")]
    out = {job.utt_id: res.record for job, res in run_jobs(_cfg(max_clip_seconds=1e-6), jobs, workers=1)}
    assert out["a"]["status"] == out["c"]["status"] == "error"
    assert out["a"]["reason"].startswith(EXCEEDED + " (1e-06 s)"), out["a"]["reason"]
    assert out["b"]["status"] == "missing", "a missing file is not processed: no limit to exceed"


def test_slow_clip_between_good_clips(clips: dict[str, Path]) -> None:
    limit = _limit_for(clips["good"])
    jobs = [ClipJob(str(clips[k]), utt_id=f"{i}_{k}") for i, k in enumerate(("good", "slow", "good"))]
    t0 = time.perf_counter()
    out = [res.record for _, res in run_jobs(_cfg(max_clip_seconds=limit), jobs, workers=1)]
    wall = time.perf_counter() - t0
    assert [r["status"] for r in out] == ["ok", "error", "ok"], [(r["status"], r.get("reason")) for r in out]
    assert out[1]["reason"].startswith(f"{EXCEEDED} ({limit:g} s)"), out[1]["reason"]
    assert "in detect" in out[1]["reason"] or "in decoding" in out[1]["reason"]
    assert out[1]["frames"] == [] and out[1]["n_frames"] == 0
    # stopped at the check after the slow batch, not after the whole clip's (its 24 frames hold 3+ batches)
    assert wall < 3 * SLOW["seconds"], wall


def test_extract_faces_records_the_slow_clip_and_goes_on(clips: dict[str, Path], tmp_path: Path,
                                                         repo_root: Path) -> None:
    limit = _limit_for(clips["good"])
    meld = tmp_path / "MELD.Raw"
    (meld / "train_splits").mkdir(parents=True)
    rows = [HEADER]
    for u, kind in enumerate(("good", "slow", "good")):
        (meld / "train_splits" / f"dia0_utt{u}.mp4").write_bytes(clips[kind].read_bytes())
        rows.append(f'{u + 1},Line {u},Joey,neutral,neutral,0,{u},1,1,"00:00:0{u},000","00:00:0{u},900"')
    (meld / "train_sent_emo.csv").write_text("\r\n".join(rows) + "\r\n", encoding="utf-8")
    p = yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))
    p["data"].update(meld_root=str(meld), splits={"train": {"csv": "train_sent_emo.csv", "clips": "train_splits"}})
    p["stage1"].update(utts_per_shard=2, previews=0, contact_sheets=0, max_clip_seconds=limit)
    p["runtime"]["stage1"]["workers"] = 1
    p["stage1"]["detector"]["name"] = "slow_mtcnn"
    p["stage1"]["identity"]["scope"] = "none"
    p["stage1"]["select"].update(min_speaking=0.0, min_margin=0.0)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(p, sort_keys=False), encoding="utf-8")
    table = tmp_path / "utterances.parquet"
    assert prepare.main(["--params", str(params), "--out", str(table)]) == 0
    out = tmp_path / "faces"
    rc = extract_faces.main(["--params", str(params), "--utterances", str(table), "--meld-root", str(meld),
                             "--out", str(out), "--summary", str(tmp_path / "summary.json")])
    assert rc == 1, "a clip with status error: exit status 1"
    records = {r["utt_id"]: r for r in read_manifest(out / "train" / "manifest.jsonl")}
    assert [records[u]["status"] for u in ("dia0_utt0", "dia0_utt1", "dia0_utt2")] == ["ok", "error", "ok"]
    assert records["dia0_utt1"]["reason"].startswith(EXCEEDED)
    assert json.loads((tmp_path / "summary.json").read_text()) == {"train": {"clips": 3, "error": 1, "ok": 2}}
    timed = {r["utt_id"]: r["timings"] for r in read_manifest(out / "train" / "manifest.jsonl", with_timings=True)}
    assert set(STEPS) <= set(timed["dia0_utt0"]), "timings.jsonl holds the per-step profile"
