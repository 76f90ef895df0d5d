"""The embedded demo corpus: determinism, MELD schema, truth vs. video, mouths, audio, shot plans.

A small corpus (1 dialogue x 4 utterances per split, 2.0-2.4 s clips) is generated once per module
through the DVC entry point; the determinism test generates it a second time in-process with a
different worker count and compares every byte.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest
import yaml

from stage1_face_extraction.common.config import from_dict
from stage1_face_extraction.common.labels import EMOTIONS
from stage1_face_extraction.demo.generate import CLIP_DIRS, CSV_NAMES, MELD_HEADER, DemoConfig, generate_corpus
from stage1_face_extraction.demo.script import SENTIMENT_OF, SHOT_KINDS, ScriptConfig, make_script
from stage1_face_extraction.stages import make_demo

SMALL = {
    "seed": 11,
    "dialogues_per_split": {"train": 1, "dev": 1, "test": 1},
    "utterances_min": 4,
    "utterances_max": 4,
    "duration_min_s": 2.0,
    "duration_max_s": 2.4,
    "workers": 2,
}
CAST = ["Rachel", "Monica", "Ross", "Chandler", "Joey", "Phoebe", "Eileen"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    params = root / "params.yaml"
    demo = {k: v for k, v in SMALL.items() if k != "workers"}  # workers: a runner knob (runtime.demo)
    params.write_text(yaml.safe_dump({"demo": demo, "runtime": {"demo": {"workers": SMALL["workers"]}}}),
                      encoding="utf-8")
    out = root / "MELD.Raw"
    assert make_demo.main(["--params", str(params), "--out", str(out), "--no-progress"]) == 0
    assert not [p for p in root.iterdir() if p.name.startswith(".MELD.Raw")], "temp folder left behind"
    return out


@pytest.fixture(scope="module")
def truth(corpus: Path) -> dict:
    return json.loads((corpus / "truth.json").read_text(encoding="utf-8"))


def _decode_video(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _decode_audio(path: Path) -> tuple[np.ndarray, int, str]:
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        name = stream.codec_context.name
        chunks = [f.to_ndarray().astype(np.float32).reshape(-1) for f in c.decode(audio=0)]
        return np.concatenate(chunks), int(stream.rate), name


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _first_clip(truth: dict, kind: str, min_faces: int = 1) -> tuple[str, dict]:
    for key, clip in truth["clips"].items():
        if clip["shot_plan"] == kind and len(clip["frames"][0]["faces"]) >= min_faces:
            return key, clip
    pytest.fail(f"no {kind} clip with >= {min_faces} faces in the small corpus")


# ------------------------------------------------------------------------------------------------


def test_determinism(corpus: Path, tmp_path: Path) -> None:
    cfg = from_dict(DemoConfig, {**SMALL, "workers": 1}, "demo")
    again = tmp_path / "again"
    generate_corpus(cfg, again)
    files_a = sorted(p.relative_to(corpus) for p in corpus.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert files_a == files_b
    different = [str(p) for p in files_a if (corpus / p).read_bytes() != (again / p).read_bytes()]
    assert not different, f"files differ between two runs with the same seed: {different}"


def test_meld_schema(corpus: Path, truth: dict) -> None:
    cfg = from_dict(DemoConfig, SMALL, "demo")
    for split, name in CSV_NAMES.items():
        raw = (corpus / name).read_bytes()
        assert raw.startswith(",".join(MELD_HEADER).encode() + b"\r\n")
        assert raw.count(b"\n") == raw.count(b"\r\n") > 1, "every line must end with CRLF"
        with (corpus / name).open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert tuple(rows[0].keys()) == MELD_HEADER
        per_dialogue = Counter(int(r["Dialogue_ID"]) for r in rows)
        assert len(per_dialogue) >= cfg.dialogues_per_split[split]
        assert all(cfg.utterances_min <= n <= cfg.utterances_max for n in per_dialogue.values())
        assert [int(r["Sr No."]) for r in rows] == list(range(1, len(rows) + 1))
        for r in rows:
            assert r["Emotion"] in EMOTIONS
            assert r["Sentiment"] == SENTIMENT_OF.get(r["Emotion"], r["Sentiment"])
            assert r["Sentiment"] in ("positive", "negative", "neutral")
            clock = []
            for col in ("StartTime", "EndTime"):
                hh, mm, rest = r[col].split(":")
                ss, ms = rest.split(",")
                assert len(hh) == len(mm) == len(ss) == 2 and len(ms) == 3
                clock.append(int(hh) * 3600 + int(mm) * 60 + int(ss) + int(ms) / 1000)
            utt = f"dia{r['Dialogue_ID']}_utt{r['Utterance_ID']}"
            clip = corpus / CLIP_DIRS[split] / f"{utt}.mp4"
            assert clip.is_file(), clip
            assert f"{split}/{utt}" in truth["clips"]
            with av.open(str(clip)) as c:
                v = c.streams.video[0]
                assert (v.codec_context.name, v.width, v.height) == ("h264", 640, 360)
                assert str(v.average_rate) == "24000/1001"
                n = sum(1 for _ in c.decode(video=0))
            assert n == truth["clips"][f"{split}/{utt}"]["n_frames"]
            assert 2.0 <= n * 1001 / 24000 <= 4.0
            assert abs((clock[1] - clock[0]) - n * 1001 / 24000) < 0.002


def test_truth_boxes_match_mtcnn(corpus: Path, truth: dict) -> None:
    from stage1_face_extraction.demo.assets import detect, make_detector

    detector = make_detector()
    key, clip = _first_clip(truth, "normal", min_faces=2)
    frames = _decode_video(corpus / clip["path"])
    n = len(frames)
    for i in sorted({0, n // 3, (2 * n) // 3, n - 1}):
        boxes, probs, _ = detect(detector, frames[i])
        faces = clip["frames"][i]["faces"]
        assert len(faces) >= 2
        for f in faces:
            best = max((_iou(np.array(f["box"]), b) for b in boxes), default=0.0)
            assert best >= 0.5, f"{key} frame {i}: truth face {f['name']} not detected (best IoU {best:.2f})"
        for b, p in zip(boxes, probs, strict=True):
            if p >= 0.9:
                best = max(_iou(np.array(f["box"]), b) for f in faces)
                assert best >= 0.4, f"{key} frame {i}: detection {b.round(1)} (p={p:.2f}) has no truth box"


def _lower_third(image: np.ndarray, box: list[float], size: tuple[int, int]) -> np.ndarray:
    """The ``size`` (w, h) patch at the lower third of ``box`` (integer-snapped top-left)."""
    x = int(math.floor(box[0] + 0.5))
    y = int(math.floor(box[1] + (box[3] - box[1]) * 2.0 / 3.0 + 0.5))
    return image[y : y + size[1], x : x + size[0]]


def test_speaker_mouth_moves_listeners_do_not(corpus: Path, truth: dict) -> None:
    """Mean abs difference of the lower third of each truth box between consecutive frames.

    The patch follows the truth box (the camera drifts by whole pixels and the box moves with it),
    so a listener's patch changes only by coding noise while the speaker's mouth opens and closes.
    """
    key, clip = _first_clip(truth, "normal", min_faces=2)
    frames = [f.astype(np.float32) for f in _decode_video(corpus / clip["path"])]
    motion: dict[str, list[float]] = {}
    for i in range(len(frames) - 1):
        following = {f["name"]: f["box"] for f in clip["frames"][i + 1]["faces"]}
        for f in clip["frames"][i]["faces"]:
            b = f["box"]
            size = (int(round(b[2] - b[0])), int(round((b[3] - b[1]) / 3.0)))
            now = _lower_third(frames[i], b, size)
            nxt = _lower_third(frames[i + 1], following[f["name"]], size)
            motion.setdefault(f["name"], []).append(float(np.abs(nxt - now).mean()))
    speaker = float(np.mean(motion.pop(clip["speaker"])))
    assert motion, "the clip needs a listener"
    for name, values in motion.items():
        listener = float(np.mean(values))
        assert speaker > 3.0 * listener, f"{key}: speaker {speaker:.2f} vs listener {name} {listener:.2f}"


def test_audio_is_aac_with_pauses_and_voice(corpus: Path, truth: dict) -> None:
    key, clip = _first_clip(truth, "normal")
    audio, rate, codec = _decode_audio(corpus / clip["path"])
    assert codec == "aac" and rate == truth["sample_rate"]
    assert abs(audio.shape[0] / rate - clip["duration_s"]) < 0.1
    win = rate // 10  # 100 ms
    rms = np.sqrt((audio[: audio.shape[0] // win * win].reshape(-1, win) ** 2).mean(axis=1))
    peak = float(rms.max())
    assert peak > 0.05, "no voice"
    assert int((rms < 0.05 * peak).sum()) >= 2, f"{key}: no pauses (100 ms windows near silence)"
    assert int((rms > 0.3 * peak).sum()) >= 5, f"{key}: too little voiced sound"
    assert clip["speech"] and all(0.0 <= s < e <= clip["duration_s"] for s, e in clip["speech"])


def test_shot_plans_hide_the_speaker(truth: dict) -> None:
    kinds = Counter(c["shot_plan"] for c in truth["clips"].values())
    assert set(kinds) == set(SHOT_KINDS), kinds
    for key, clip in truth["clips"].items():
        speaker = clip["speaker"]
        names_per_frame = [[f["name"] for f in fr["faces"]] for fr in clip["frames"]]
        assert len(names_per_frame) == clip["n_frames"]
        if clip["shot_plan"] == "cut_to_listener":
            cut = clip["cut_frame"]
            assert 0 < cut < clip["n_frames"]
            assert speaker in names_per_frame[cut - 1]
            for names, fr in zip(names_per_frame[cut:], clip["frames"][cut:], strict=True):
                assert names == [clip["cut_to"]] and not any(f["speaker"] for f in fr["faces"]), key
            assert clip["speaker_visible_frames"] == cut
        elif clip["shot_plan"] == "speaker_off_screen":
            assert all(speaker not in names and names for names in names_per_frame), key
            assert clip["speaker_visible_frames"] == 0
        else:
            assert all(speaker in names for names in names_per_frame), key
            assert clip["speaker_visible_frames"] == clip["n_frames"]
        for fr in clip["frames"]:
            for f in fr["faces"]:
                if not f["speaker"]:
                    assert f["mouth_open"] == 0.0, f"{key}: a listener's mouth moves"


def test_default_script_covers_emotions_and_shots() -> None:
    script = make_script(np.random.default_rng(0), ScriptConfig(), CAST)
    for split, dialogues in script.items():
        utts = [u for d in dialogues for u in d.utterances]
        emotions = Counter(u.emotion for u in utts)
        assert emotions.most_common(1)[0][0] == "neutral"
        assert set(Counter(u.shot_plan for u in utts)) == set(SHOT_KINDS), split
        assert [d.dialogue_id for d in dialogues] == list(range(len(dialogues)))
        for d in dialogues:
            assert 2 <= len(d.characters) <= 3
            starts = [u.start_s for u in d.utterances]
            assert starts == sorted(starts)
            assert all(u.speaker in d.characters for u in d.utterances)
        if split == "train":
            assert set(emotions) == set(EMOTIONS)
    texts = [u.text for ds in script.values() for d in ds for u in d.utterances]
    assert any("’" in t for t in texts)


def test_config_rejects_unknown_split() -> None:
    with pytest.raises(ValueError, match="unknown split"):
        from_dict(DemoConfig, {"dialogues_per_split": {"validation": 2}}, "demo")
