"""A bad-input corpus (issue 8, item 1), generated here, through the real stages.

One MELD-shaped folder whose train split holds every kind of broken or unusual clip real MELD
has or could have: a truncated mp4, a zero-byte file, a text file named .mp4, an mp4 without audio,
an audio-only mp4, a clip without faces, a missing clip, 25 fps at 384x496, an odd resolution
(385x497), variable frame rate, rotation metadata; its CSV has a BOM, mojibake, an empty utterance
and a speaker name made of path characters. ``prepare`` -> ``extract_faces`` -> ``features``
(audio: fbank, visual: dlib_resnet) must run to the end, give every clip its status (the reason
naming the file), and write nothing outside their output folders.

Malformed CSVs (missing column, duplicate utterance, unknown emotion, ``../`` as Dialogue_ID, not
UTF-8, too many fields) stop ``prepare`` with exit status 2 and one error naming file and line,
before anything is written. The reader-level cases are in ``test_meld.py``; decoding of each kind
of file in ``test_video.py``.

``slow``: a 10-minute clip through the whole per-clip pipeline keeps its peak memory bounded (a
separate process per clip length; the frames are never all held).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import yaml

from stage1_face_extraction.stages import extract_faces, prepare
from stage1_face_extraction.store import FaceShardReader, read_manifest
from stage1_face_extraction.video import write_video
from stage2_mer.features.store import FeatureReader

HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime"
FPS = 24000 / 1001


# ------------------------------------------------------------------------------------------------
# media


def _face_frame(width: int, height: int, shift: int = 0) -> np.ndarray:
    """The scikit-image astronaut's head (one real face), fit into a (height, width) grey frame."""
    import cv2
    from skimage import data

    img = data.astronaut()[0:300, 75:375]  # the head and shoulders (face box ~ 87x110 px)
    s = min(width / img.shape[1], height / img.shape[0])
    small = cv2.resize(img, (int(img.shape[1] * s), int(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
    out = np.full((height, width, 3), 90, np.uint8)
    y0 = (height - small.shape[0]) // 2
    x0 = max(0, min(width - small.shape[1], (width - small.shape[1]) // 2 + shift))
    out[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    return out


def _speech(seconds: float, sr: int = 16000) -> np.ndarray:
    """Speech-like audio: a 150 Hz buzz gated at ~4 syllables per second."""
    t = np.arange(int(seconds * sr)) / sr
    gate = (np.sin(2 * np.pi * 4 * t) > 0).astype(np.float32)
    return (0.3 * gate * np.sign(np.sin(2 * np.pi * 150 * t))).astype(np.float32)


def _face_clip(path: Path, width: int = 320, height: int = 240, fps: float = FPS, seconds: float = 1.2,
               audio: bool = True, **kw) -> Path:
    n = int(round(seconds * fps))
    frames = (_face_frame(width, height, shift=i % 3) for i in range(n))
    return write_video(path, frames, fps, audio=_speech(seconds) if audio else None, sr=16000,
                       preset="ultrafast", **kw)


def _odd_size_clip(path: Path, width: int, height: int, fps: float = 25.0, seconds: float = 1.2) -> Path:
    """H.264 4:4:4 (odd sides are legal there, unlike 4:2:0) with AAC audio."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        vs.pix_fmt, vs.width, vs.height = "yuv444p", width, height
        vs.options = {"preset": "ultrafast"}
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
        for i in range(int(round(seconds * fps))):
            f = av.VideoFrame.from_ndarray(_face_frame(width, height, shift=i % 3), format="rgb24")
            f.pts = i
            for p in vs.encode(f):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        _mux_audio(c, a, _speech(seconds))
    return path


def _mux_audio(container, stream, wave: np.ndarray, sr: int = 16000) -> None:
    for start in range(0, len(wave), 1024):
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[None, start : start + 1024]), format="flt",
                                        layout="mono")
        af.sample_rate, af.pts, af.time_base = sr, start, Fraction(1, sr)
        for p in stream.encode(af):
            container.mux(p)
    for p in stream.encode():
        container.mux(p)


def _audio_only(path: Path, seconds: float = 1.5) -> Path:
    with av.open(str(path), "w") as c:
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
        _mux_audio(c, a, _speech(seconds))
    return path


def _no_face_clip(path: Path) -> Path:
    yy, xx = np.mgrid[0:240, 0:320].astype(np.float32)
    frames = (np.stack([(xx / 320 * 255).astype(np.uint8), (yy / 240 * 255).astype(np.uint8),
                        np.full((240, 320), (i * 6) % 256, np.uint8)], -1) for i in range(30))
    return write_video(path, frames, 25, audio=_speech(1.2), sr=16000, preset="ultrafast")


# what each train clip is, and the status it must get ("ran": ok or no_speaker, the clip was analysed)
CASES: dict[str, tuple[str, str]] = {
    "dia0_utt0": ("a normal clip", "ran"),
    "dia0_utt1": ("a truncated mp4", "decode_error"),
    "dia0_utt2": ("a zero-byte file", "decode_error"),
    "dia0_utt3": ("a text file named .mp4", "decode_error"),
    "dia0_utt4": ("an mp4 without audio", "no_audio"),
    "dia0_utt5": ("an audio-only mp4", "decode_error"),
    "dia0_utt6": ("a clip without faces", "no_face"),
    "dia0_utt7": ("a missing clip", "missing"),
    "dia1_utt0": ("25 fps at 384x496", "ran"),
    "dia1_utt1": ("odd resolution 385x497", "ran"),
    "dia1_utt2": ("variable frame rate", "ran"),
    "dia1_utt3": ("rotation metadata (90 degrees)", "ran"),
    "dia1_utt4": ("empty utterance text, speaker named ../../evil", "ran"),
}


def _make_clips(clips: Path) -> None:
    clips.mkdir(parents=True)
    _face_clip(clips / "dia0_utt0.mp4")
    full = _face_clip(clips / "full.mp4", seconds=2.0)  # moov at the end: cut in half = no index
    data = full.read_bytes()
    full.unlink()
    (clips / "dia0_utt1.mp4").write_bytes(data[: len(data) // 2])
    (clips / "dia0_utt2.mp4").write_bytes(b"")
    (clips / "dia0_utt3.mp4").write_text("Sr No.,Utterance\n1,this is not a video\n" * 40, encoding="utf-8")
    _face_clip(clips / "dia0_utt4.mp4", audio=False)
    _audio_only(clips / "dia0_utt5.mp4")
    _no_face_clip(clips / "dia0_utt6.mp4")
    _face_clip(clips / "dia1_utt0.mp4", width=384, height=496, fps=25.0)
    _odd_size_clip(clips / "dia1_utt1.mp4", 385, 497)
    times = np.cumsum([0.0] + [0.03 if i % 2 else 0.055 for i in range(27)])
    write_video(clips / "dia1_utt2.mp4", (_face_frame(320, 240, i % 3) for i in range(len(times))), 30,
                times=[round(float(t), 3) for t in times], audio=_speech(1.3), sr=16000, preset="ultrafast")
    # stored turned clockwise, displayed upright thanks to the rotation metadata
    n = 28
    write_video(clips / "dia1_utt3.mp4", (np.ascontiguousarray(np.rot90(_face_frame(320, 240, i % 3), k=-1))
                                          for i in range(n)), FPS, rotation=90, audio=_speech(1.2), sr=16000,
                preset="ultrafast")
    _face_clip(clips / "dia1_utt4.mp4")


def _csv(root: Path) -> Path:
    mojibake = "He’s lost it.".encode().decode("cp1252")
    lines = [HEADER]
    for k, utt in enumerate(CASES):
        dia, u = (int(x) for x in utt[3:].split("_utt"))
        text, speaker = f"Line {k}, about {CASES[utt][0]}.", "Joey"
        if utt == "dia0_utt0":
            text = mojibake
        if utt == "dia1_utt4":
            text, speaker = "", "../../evil"
        lines.append(f'{k + 1},"{text}",{speaker},neutral,neutral,{dia},{u},1,1,"00:00:0{u},000","00:00:0{u},900"')
    path = root / "train_sent_emo.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(lines) + "\r\n").encode("utf-8"))
    return path


def _params(repo_root: Path, path: Path, meld: Path) -> Path:
    p = yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))
    p["data"].update(meld_root=str(meld), splits={"train": {"csv": "train_sent_emo.csv", "clips": "train_splits"}})
    p["stage1"].update(previews=len(CASES), contact_sheets=len(CASES), utts_per_shard=4)
    p["runtime"]["stage1"]["workers"] = 1
    p["features"]["audio"]["name"] = "fbank"
    p["features"]["visual"]["name"] = "dlib_resnet"
    for modality in ("audio", "visual"):
        p["runtime"]["features"][modality]["workers"] = 0
    path.write_text(yaml.safe_dump(p, sort_keys=False), encoding="utf-8")
    return path


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> dict:
    """Build the corpus, run prepare -> extract_faces -> features (audio, visual) from an empty
    working folder; return paths, logs and the trees before and after."""
    root = tmp_path_factory.mktemp("bad_inputs")
    meld = root / "MELD.Raw"
    _make_clips(meld / "train_splits")
    (meld / "train_splits" / "dia0_utt7.mp4").unlink(missing_ok=True)  # listed in the CSV, absent
    _csv(meld)
    params = _params(repo_root, root / "params.yaml", meld)
    cwd = root / "cwd"
    cwd.mkdir()
    before = _tree(root)
    out = {"root": root, "meld": meld, "table": root / "out" / "utterances.parquet", "faces": root / "out" / "faces",
           "features": root / "out" / "features", "cwd": cwd}
    handler = _Collect()
    logging.getLogger().addHandler(handler)
    old = os.getcwd()
    os.chdir(cwd)
    try:
        out["prepare"] = prepare.main(["--params", str(params), "--out", str(out["table"]),
                                       "--summary", str(root / "out" / "summary.json")])
        out["extract"] = extract_faces.main([
            "--params", str(params), "--utterances", str(out["table"]), "--meld-root", str(meld),
            "--out", str(out["faces"]), "--summary", str(root / "out" / "faces_summary.json")])
        out["audio"] = _features(params, "audio", "--utterances", str(out["table"]), "--meld-root", str(meld),
                                 "--out", str(out["features"] / "audio"))
        out["visual"] = _features(params, "visual", "--faces", str(out["faces"]),
                                  "--out", str(out["features"] / "visual"))
    finally:
        os.chdir(old)
        logging.getLogger().removeHandler(handler)
    out["log"] = "\n".join(handler.lines)
    out["before"], out["after"] = before, _tree(root)
    return out


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


def _features(params: Path, modality: str, *args: str) -> int:
    from stage2_mer.stages import features

    return features.main(["--params", str(params), "--modality", modality, *args])


def test_every_stage_runs_to_the_end(run: dict) -> None:
    assert (run["prepare"], run["extract"], run["audio"], run["visual"]) == (0, 0, 0, 0), run["log"][-3000:]


def test_csv_oddities_are_accepted_with_warnings_naming_the_line(run: dict) -> None:
    import pandas as pd

    table = pd.read_parquet(run["table"])
    assert table["utt_id"].tolist() == list(CASES)
    assert table.loc[0, "text"] == "He’s lost it."  # BOM accepted, mojibake repaired
    assert table.loc[12, "speaker"] == "../../evil" and table.loc[12, "text"] == ""
    csv = run["meld"] / "train_sent_emo.csv"
    assert f"{csv}:14: empty utterance text for dia1_utt4" in run["log"]
    assert f"{csv}: repaired mojibake" in run["log"]
    assert "1 of 13 clips missing" in run["log"]


def test_every_clip_gets_its_status(run: dict) -> None:
    records = {r["utt_id"]: r for r in read_manifest(run["faces"] / "train" / "manifest.jsonl")}
    assert list(records) == sorted(CASES)
    got = {}
    for utt, (what, want) in CASES.items():
        rec = records[utt]
        got[utt] = rec["status"]
        if want == "ran":
            assert rec["status"] in ("ok", "no_speaker"), (what, rec["status"], rec.get("reason"))
            assert rec["n_frames"] > 20 and rec["tracks"], (what, rec)
        else:
            assert rec["status"] == want, (what, rec["status"], rec.get("reason"))
        if want == "decode_error":  # the reason names the file
            assert f"{utt}.mp4" in rec["reason"], (what, rec["reason"])
    assert "empty file" in records["dia0_utt2"]["reason"]
    assert "no video stream" in records["dia0_utt5"]["reason"]
    assert records["dia1_utt0"]["fps"] == 25.0
    summary = json.loads((run["root"] / "out" / "faces_summary.json").read_text())
    assert summary["train"]["clips"] == len(CASES), summary


def test_unusual_clips_give_upright_crops_and_previews(run: dict) -> None:
    """Odd sizes, VFR and rotation decode to faces; each analysed clip got a preview."""
    reader = FaceShardReader(run["faces"] / "train")
    records = {r["utt_id"]: r for r in read_manifest(run["faces"] / "train" / "manifest.jsonl")}
    assert sorted(reader.utt_ids()) == sorted(CASES)
    for utt in ("dia1_utt1", "dia1_utt3"):  # odd size; rotated: the track box is upright-shaped
        box = records[utt]["tracks"][0]["mid_box"]
        assert box[3] - box[1] > 0.8 * (box[2] - box[0]), (utt, box)
    pictures = run["faces"].with_name(run["faces"].name + "_pictures")  # extract_faces' default --pictures
    previews = sorted(p.stem for p in (pictures / "train" / "previews").glob("*"))
    ran = sorted(u for u, (_, want) in CASES.items() if want not in ("decode_error", "missing"))
    assert previews == ran


def test_features_for_every_utterance(run: dict) -> None:
    audio = FeatureReader(run["features"] / "audio" / "fbank" / "train")
    visual = FeatureReader(run["features"] / "visual" / "dlib_resnet" / "train")
    assert audio.utt_ids() == sorted(CASES) and visual.utt_ids() == sorted(CASES)
    for utt in ("dia0_utt1", "dia0_utt2", "dia0_utt3", "dia0_utt4", "dia0_utt7"):  # no readable audio
        assert audio.length(utt) == 0, utt
    assert audio.length("dia0_utt5") > 50  # audio-only: audio features, no faces
    assert visual.length("dia0_utt5") == 0 and visual.length("dia0_utt6") == 0


def test_nothing_is_written_outside_the_output_folders(run: dict) -> None:
    before, after = run["before"], run["after"]
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    outside = [k for k in changed if not k.startswith("out/")]
    assert not outside, f"written outside out/: {outside}"
    assert not any(run["cwd"].iterdir()), "the working folder must stay empty"
    leftovers = [k for k in after if k.endswith(".tmp") or "/.journal" in k or ".run-in-progress" in k]
    assert not leftovers, leftovers


# ------------------------------------------------------------------------------------------------
# malformed CSVs stop `prepare` with one error naming file and line


GOOD = [
    '1,"Oh my God, he’s lost it.",Phoebe,sadness,negative,0,0,4,7,"00:20:57,256","00:21:00,049"',
    '2,What?,Monica,surprise,negative,0,1,4,7,"00:21:01,927","00:21:03,261"',
]


@pytest.mark.parametrize(
    ("header", "row", "message"),
    [
        (HEADER.replace(",Emotion", ""), None, r":1: missing column\(s\) Emotion"),
        (HEADER, '3,Hi,Ross,joy,positive,0,1,4,7,"00:21:05,000","00:21:06,000"',
         r":4: duplicate utterance dia0_utt1 \(first seen on line 3\)"),
        (HEADER, '3,Hi,Ross,bored,neutral,0,2,4,7,"00:21:05,000","00:21:06,000"', r":4: unknown emotion 'bored'"),
        (HEADER, '3,Hi,Ross,joy,positive,../x,2,4,7,"00:21:05,000","00:21:06,000"',
         r":4: Dialogue_ID must be a non-negative integer, got '\.\./x'"),
        (HEADER, '3,Hi,Ross,joy,positive,0,../../2,4,7,"00:21:05,000","00:21:06,000"', r":4: Utterance_ID must be"),
        (HEADER, '3,Hi,Ross,joy,positive,0,2,4,7,"00:21:05,000","00:21:06,000",extra', r":4: 12 fields, header has 11"),
        (HEADER, b'3,caf\xe9,Ross,joy,positive,0,2,4,7,"00:21:05,000","00:21:06,000"', r":4: not valid UTF-8"),
    ],
)
def test_malformed_csv_stops_prepare_naming_file_and_line(
    tmp_path: Path, repo_root: Path, caplog: pytest.LogCaptureFixture, header: str, row, message: str
) -> None:
    meld = tmp_path / "MELD.Raw"
    meld.mkdir()
    rows = [r.replace(",sadness", "").replace(",surprise", "") for r in GOOD] if "Emotion" not in header else GOOD
    data = "\r\n".join([header, *rows]).encode("utf-8") + b"\r\n"
    if row is not None:
        data += (row if isinstance(row, bytes) else row.encode("utf-8")) + b"\r\n"
    (meld / "train_sent_emo.csv").write_bytes(data)
    params = _params(repo_root, tmp_path / "params.yaml", meld)
    out = tmp_path / "out" / "utterances.parquet"
    with caplog.at_level(logging.ERROR):
        assert prepare.main(["--params", str(params), "--out", str(out)]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert errors[0].startswith(str(meld / "train_sent_emo.csv")), errors[0]
    assert re.search(message, errors[0]), errors[0]
    assert not out.parent.exists(), "nothing may be written for a bad CSV"


def test_a_table_with_path_names_stops_extract_faces(tmp_path: Path, repo_root: Path) -> None:
    """A hand-made utterance table (tables travel too) whose utt_id climbs out of the output."""
    import pandas as pd

    from stage1_face_extraction.meld import TABLE_COLUMNS

    row = {"split": "train", "sr_no": 1, "dialogue_id": 0, "utterance_id": 0, "utt_id": "../../../escaped",
           "speaker": "Joey", "text": "Hi", "emotion": "joy", "label": 4, "sentiment": "positive", "season": 1,
           "episode": 1, "start_s": 0.0, "end_s": 1.0, "clip": "train_splits/dia0_utt0.mp4", "clip_exists": True}
    table = tmp_path / "utterances.parquet"
    pd.DataFrame([row], columns=list(TABLE_COLUMNS)).to_parquet(table, index=False)
    meld = tmp_path / "MELD.Raw"
    (meld / "train_splits").mkdir(parents=True)
    _face_clip(meld / "train_splits" / "dia0_utt0.mp4")
    params = _params(repo_root, tmp_path / "params.yaml", meld)
    out = tmp_path / "a" / "b" / "faces"
    argv = ["--params", str(params), "--utterances", str(table), "--meld-root", str(meld), "--out", str(out)]
    assert extract_faces.main(argv) == 2
    assert not (tmp_path / "a").exists() and not list(tmp_path.rglob("escaped*"))


# ------------------------------------------------------------------------------------------------
# a 10-minute clip: memory stays bounded


_PEAK = textwrap.dedent("""
    import json, resource, sys
    from stage1_face_extraction.common.config import load_section
    from stage1_face_extraction.pipeline import FacePipeline
    from stage1_face_extraction.section import Stage1Config
    import torch
    torch.set_num_threads(1)
    cfg = load_section(sys.argv[1], "stage1", Stage1Config)
    pipe = FacePipeline(cfg)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = pipe.process(sys.argv[2], utt_id="long", speaker="Joey")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"status": res.record["status"], "n_frames": res.record["n_frames"],
                      "crops": int(res.crops.shape[0]), "base_mib": base / 1024, "peak_mib": peak / 1024}))
""")


def _long_clip(path: Path, minutes: float, fps: float = 10.0) -> Path:
    n = int(minutes * 60 * fps)
    frames = (_face_frame(320, 240, shift=(i // 5) % 7) for i in range(n))
    return write_video(path, frames, fps, audio=_speech(minutes * 60), sr=16000, preset="ultrafast", crf=32)


@pytest.mark.slow
def test_ten_minute_clip_memory_is_bounded(tmp_path: Path, repo_root: Path) -> None:
    """A mis-cut MELD test clip runs for minutes: 10 minutes (6,000 frames at 10 fps, 320x240, with a
    face and audio throughout) must not cost much more peak memory than 1 minute: frames are
    streamed (holding them would take 1.4 GB); what grows is small per frame."""
    params = _params(repo_root, tmp_path / "params.yaml", tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(repo_root)}
    peaks = {}
    for minutes in (1, 10):
        clip = _long_clip(tmp_path / f"long{minutes}.mp4", minutes)
        r = subprocess.run([sys.executable, "-c", _PEAK, str(params), str(clip)], capture_output=True, text=True,
                           env=env, timeout=1500, cwd=tmp_path, check=False)
        assert r.returncode == 0, r.stderr[-3000:]
        peaks[minutes] = json.loads(r.stdout.strip().splitlines()[-1])
        clip.unlink()
    print(f"peak RSS: 1 min {peaks[1]}, 10 min {peaks[10]}")
    long = peaks[10]
    assert long["n_frames"] == 6000 and long["status"] in ("ok", "no_speaker") and long["crops"] <= 160
    # what processing the clip added to each process (its models loaded: base); the base itself
    # varies by ~200 MiB between processes. Measured (two runs): +198 / +203 MiB for 1 minute, +448 /
    # +316 MiB for 10: per-frame boxes, scores and mouth patches and the clip's audio grow with
    # length, 13-28 MiB a minute, not the frames (1.4 GB here; 4 GB a minute of 1280x720 at 25 fps).
    extra = {m: p["peak_mib"] - p["base_mib"] for m, p in peaks.items()}
    assert extra[10] - extra[1] < 400, f"a 10-minute clip cost {extra[10]:.0f} MiB, 1 minute {extra[1]:.0f} MiB"
