"""``facialmmt faces`` (stage1_face_extraction.cli.main) on two demo clips and a missing file."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import yaml

from stage1_face_extraction import cli
from stage1_face_extraction.preview import SPEAKER
from stage1_face_extraction.store import FaceShardReader, read_manifest


@pytest.fixture(scope="module")
def truth(small_demo: Path) -> dict:
    return json.loads((small_demo / "truth.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def picked(truth: dict) -> dict[str, str]:
    """shot plan -> truth key of the first train clip with that plan."""
    out: dict[str, str] = {}
    for key, clip in truth["clips"].items():
        if clip["split"] == "train":
            out.setdefault(clip["shot_plan"], key)
    assert {"normal", "speaker_off_screen"} <= set(out)
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, small_demo: Path, truth: dict, picked: dict, repo_root: Path):
    root = tmp_path_factory.mktemp("cli")
    videos = [
        small_demo / truth["clips"][picked["normal"]]["path"],
        small_demo / truth["clips"][picked["speaker_off_screen"]]["path"],
        root / "ghost.mp4",
    ]
    out = root / "out"
    argv = [*map(str, videos), "--out", str(out), "--preview", "--params", str(repo_root / "params.yaml"), "-q"]
    rc = cli.main(argv)
    return {"rc": rc, "out": out, "videos": videos}


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_exit_status_and_manifest(run: dict, truth: dict, picked: dict) -> None:
    assert run["rc"] == 0
    records = read_manifest(run["out"] / "manifest.jsonl")
    assert len(records) == 3
    by_clip = {r["clip"]: r for r in records}
    normal, off, ghost = (str(v) for v in run["videos"])
    assert set(by_clip) == {normal, off, ghost}
    assert by_clip[normal]["status"] == "ok" and by_clip[normal]["frames"]
    assert by_clip[off]["status"] == "no_speaker" and not by_clip[off]["frames"]
    assert by_clip[ghost]["status"] == "missing" and not by_clip[ghost]["frames"]
    assert by_clip[normal]["n_frames"] == truth["clips"][picked["normal"]]["n_frames"]
    # keys are the file stems; the shards hold exactly the manifest's crops
    reader = FaceShardReader(run["out"])
    assert sorted(reader.utt_ids()) == sorted(r["utt_id"] for r in records)
    for r in records:
        assert r["utt_id"] == Path(r["clip"]).stem
        crops = reader.read(r["utt_id"])
        assert len(crops) == len(r["frames"])
        if len(crops):
            assert crops.shape[1:] == (160, 160, 3)
    assert (run["out"] / "timings.jsonl").is_file()


def test_contact_sheet_per_video(run: dict) -> None:
    records = {r["utt_id"]: r for r in read_manifest(run["out"] / "manifest.jsonl")}
    sheets = sorted(run["out"].glob("*.faces.png"))
    assert sorted(p.name.removesuffix(".faces.png") for p in sheets) == sorted(records)
    for p in sheets:
        img = cv2.imread(str(p))
        assert img is not None and img.size > 0 and img.max() > 0, p
        if records[p.name.removesuffix(".faces.png")]["frames"]:
            assert img.shape[0] >= 160 and img.shape[1] >= 160 and img.std() > 10


def test_preview_videos(run: dict, truth: dict, picked: dict) -> None:
    records = {r["clip"]: r for r in read_manifest(run["out"] / "manifest.jsonl")}
    normal, off, ghost = run["videos"]
    assert not (run["out"] / f"{ghost.stem}.preview.mp4").exists()
    for video, plan in ((normal, "normal"), (off, "speaker_off_screen")):
        preview = run["out"] / f"{video.stem}.preview.mp4"
        assert preview.is_file(), preview
        frames = _decode(preview)
        assert len(frames) == len(_decode(video)) == truth["clips"][picked[plan]]["n_frames"]
        assert frames[0].shape == (360, 640, 3)
    # the speaker's box is drawn in the speaker colour on a selected frame of the ok clip
    rec = records[str(normal)]
    f = rec["frames"][len(rec["frames"]) // 2]
    img = _decode(run["out"] / f"{normal.stem}.preview.mp4")[f["frame"]]
    x1, y1, x2, y2 = (int(round(v)) for v in f["box"])
    band = img[max(0, y1 - 3) : y1 + 4, x1:x2].reshape(-1, 3).astype(int)
    near = np.abs(band - np.array(SPEAKER)).max(axis=1) < 60
    assert near.mean() > 0.3, "no speaker-coloured box edge where the speaker was picked"


def test_no_out_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([str(tmp_path / "a.mp4")])
    assert exc.value.code == 2


def test_no_video_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--out", str(tmp_path / "out")])
    assert exc.value.code == 2


@pytest.mark.parametrize("where, key", [("stage1", "bogus_knob"), ("stage1.detector", "bogus_scale")])
def test_bad_params_key_exits_2(
    tmp_path: Path, repo_root: Path, caplog: pytest.LogCaptureFixture, where: str, key: str
) -> None:
    params = yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))
    node = params
    for part in where.split("."):
        node = node[part]
    node[key] = 3
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    out = tmp_path / "out"
    with caplog.at_level("ERROR"):
        assert cli.main([str(tmp_path / "a.mp4"), "--out", str(out), "--params", str(path)]) == 2
    assert key in caplog.text
    assert not out.exists() or not any(out.iterdir())


def test_missing_params_file_exits_2(tmp_path: Path) -> None:
    assert (
        cli.main([str(tmp_path / "a.mp4"), "--out", str(tmp_path / "out"), "--params", str(tmp_path / "nope.yaml")])
        == 2
    )


def test_out_is_a_file_exits_2(tmp_path: Path) -> None:
    f = tmp_path / "taken"
    f.write_text("x")
    assert cli.main([str(tmp_path / "a.mp4"), "--out", str(f)]) == 2
