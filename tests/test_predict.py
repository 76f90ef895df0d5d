"""``facialmmt predict`` (stage2_mer.predict) on demo clips with a tiny checkpoint.

The checkpoint is built here: a tiny random RoBERTa text encoder saved as a local folder with a
word-level tokenizer (as a real ``model.text_encoder`` folder), fbank audio (16 bins) and dlib
visual features, the FER branch on a random 32x32 Swin. Stage 1 runs once per clip (the CLI
tests reuse its results). The prediction is checked against the ``evaluate`` stage run on the same
utterance written as a corpus by the features stage's own functions. Files go under tmp_path only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from argparse import Namespace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from stage1_face_extraction.common.labels import EMOTIONS
from stage1_face_extraction.video import iter_frames
from stage2_mer.predict import (
    Predictor,
    cli,
    draw_prediction,
    parse_turn,
    write_annotated,
)
from stage2_mer.predict.render import EMOTION_COLOURS

WORDS = ("oh", "my", "god", "i", "can", "not", "believe", "it", "you", "are", "so", "great", "the", "what", "is",
         "that", "rachel", "ross", "joey")
TEXT, SPEAKER = "oh my god i can not believe it", "Rachel"
CONTEXT = [("Ross", "what is that")]
INPUTS = {  # what the train stage records (data.assemble.input_record)
    "text": {"max_tokens": 120, "speaker_names": True},
    "audio": {"extractor": "fbank", "options": {"num_mel_bins": 16}, "dtype": "float16", "dim": 16, "max_len": 40},
    "visual": {"extractor": "dlib_resnet", "options": {}, "dtype": "float16", "dim": 128, "max_len": 6},
    "fer_filter": {"tau": 1.0, "threshold": 0.2, "samples": 0},
}

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _model_config(text_dir: Path):
    from stage2_mer.model import ModelConfig

    return ModelConfig(modalities="T+A+V", text_encoder=str(text_dir), hidden=16, heads=2, ffn=32, audio_layers=1,
                       visual_layers=1, cross_layers=1, cross_heads=2, audio_dim=16, visual_dim=128, fer_dim=7,
                       max_audio_len=64, max_visual_len=8, max_text_len=64, dropout=0.1, attn_dropout=0.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, repo_root: Path, save_tiny_roberta) -> dict:
    """A tiny T+A+V checkpoint with the FER branch, and a params file (stage1 and train sections)."""
    from stage2_mer.fer import FERConfig, build_fer
    from stage2_mer.model import create_model
    from stage2_mer.train import save_checkpoint

    root = tmp_path_factory.mktemp("predict")
    text = save_tiny_roberta(root / "text_encoder", WORDS)
    cfg = _model_config(text)
    model = create_model(cfg)
    fcfg = FERConfig(random_init=True, image_size=32, drop_path=0.0)
    with pytest.warns(UserWarning):
        fer = build_fer(fcfg)
    ckpt = save_checkpoint(root / "ckpt", model, cfg.to_dict(), fer=fer, fer_config=dataclasses.asdict(fcfg),
                           inputs=INPUTS)
    repo = yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))
    stage1 = {**repo["stage1"], "max_frames": 8}
    # the caps equal to the recorded ones, so that evaluate (which reads them from here) cuts alike
    train = {"cpu": True, "max_tokens": 120, "speaker_names": True, "max_audio_len": 40, "max_visual_len": 6,
             "batch_dialogues": 2, "fer_threshold": 0.2}
    params = {"stage1": stage1, "train": train}
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return {"root": root, "ckpt": ckpt, "params": params, "params_file": root / "params.yaml", "model_cfg": cfg}


@pytest.fixture(scope="module")
def clips(small_demo: Path) -> dict[str, dict]:
    """shot plan -> {"path", "truth"} of the first train clip with that plan."""
    truth = json.loads((small_demo / "truth.json").read_text(encoding="utf-8"))
    out: dict[str, dict] = {}
    for clip in truth["clips"].values():
        if clip["split"] == "train":
            out.setdefault(clip["shot_plan"], {"path": small_demo / clip["path"], "truth": clip})
    return out


@pytest.fixture(scope="module")
def predictor(tiny: dict) -> Predictor:
    return Predictor(tiny["ckpt"], tiny["params"])


@pytest.fixture(scope="module")
def stage1(predictor: Predictor, clips: dict) -> dict[str, object]:
    """Stage 1 once per clip (path -> ClipResult), reused by the CLI tests."""
    return {str(clips[k]["path"]): predictor.find_speaker(clips[k]["path"], SPEAKER)
            for k in ("normal", "speaker_off_screen")}


@pytest.fixture
def cached_stage1(monkeypatch, stage1: dict):
    monkeypatch.setattr(Predictor, "find_speaker", lambda self, video, speaker=None: stage1[str(video)])


@pytest.fixture(scope="module")
def pred(predictor: Predictor, clips: dict, stage1: dict):
    mp = pytest.MonkeyPatch()
    mp.setattr(predictor, "find_speaker", lambda video, speaker=None: stage1[str(video)])
    try:
        return predictor.predict(clips["normal"]["path"], TEXT, speaker=SPEAKER, context=CONTEXT)
    finally:
        mp.undo()


# ------------------------------------------------------------------------------------ prediction


def test_prediction(pred, clips: dict) -> None:
    assert pred.probs.shape == (7,) and abs(float(pred.probs.sum()) - 1.0) < 1e-5
    assert pred.label == EMOTIONS[int(np.argmax(pred.probs))]
    assert pred.stage1.record["status"] == "ok" and len(pred.stage1.record["frames"]) == 8
    assert pred.inputs["visual"]["rows"] == 6 and pred.inputs["visual"]["faces_found"] == 8  # the recorded cap
    assert pred.inputs["audio"]["rows"] == 40 and pred.inputs["text"]["context_turns"] == 1
    assert not pred.notes
    boxes = pred.boxes()
    for fr in pred.stage1.record["frames"]:  # the track rows give the manifest frames' boxes
        assert boxes[fr["frame"]] == pytest.approx(tuple(fr["box"]))
    assert len(boxes) > len(pred.stage1.record["frames"])  # every frame of the speaker's track


def test_prediction_equals_evaluate(pred, predictor: Predictor, tiny: dict, clips: dict, tmp_path: Path) -> None:
    """The same utterance (and its context turn) written as a corpus the pipeline's way (stage-1
    shards, the features stage's functions, an utterance table) and run through the evaluate stage."""
    from stage1_face_extraction.store import FaceShardWriter
    from stage2_mer.data.assemble import build_data, input_record
    from stage2_mer.features.extract import (
        FeatureStageConfig,
        extract_audio_split,
        extract_visual_split,
    )
    from stage2_mer.stages import evaluate
    from stage2_mer.train import TrainConfig, Trainer, load_models

    key = Path(pred.video).stem
    ids = [f"{key}-context0", key]
    rows = []
    for split in ("train", "dev", "test"):
        for u, (spk, text) in enumerate([*CONTEXT, (SPEAKER, TEXT)]):
            rows.append({"split": split, "sr_no": u + 1, "dialogue_id": 0, "utterance_id": u, "utt_id": ids[u],
                         "speaker": spk, "text": text, "emotion": "joy", "label": 4, "sentiment": "positive",
                         "season": 1, "episode": 1, "start_s": 0.0, "end_s": 1.0, "clip": f"{ids[u]}.mp4",
                         "clip_exists": u == 1})
    table = pd.DataFrame(rows)
    table.to_parquet(tmp_path / "utterances.parquet")
    crops = pred.stage1.crops
    with FaceShardWriter(tmp_path / "faces" / "test") as w:
        w.add(ids[0], np.zeros((0, 160, 160, 3), np.uint8))
        w.add(key, crops)
    for m in ("visual", "audio"):
        cfg = FeatureStageConfig(name=INPUTS[m]["extractor"], extractors={INPUTS[m]["extractor"]: INPUTS[m]["options"]},
                                 workers=0)
        info = {"extractor": cfg.name, "options": cfg.options}
        out = tmp_path / "features" / m / "test"
        if m == "visual":
            extract_visual_split(predictor.extractors[m], tmp_path / "faces" / "test", out, cfg, info=info)
        else:
            items = [(ids[0], tmp_path / "no_clip.mp4"), (key, Path(pred.video))]
            extract_audio_split(predictor.extractors[m], items, out, cfg, info=info)
    for split in ("train", "dev"):  # the same dialogue in every split (build_data reads all three)
        for folder in (tmp_path / "faces", tmp_path / "features" / "visual", tmp_path / "features" / "audio"):
            shutil.copytree(folder / "test", folder / split)
    args = Namespace(audio=str(tmp_path / "features" / "audio"), visual=str(tmp_path / "features" / "visual"),
                     faces=str(tmp_path / "faces"))
    # the train stage records what predict reads
    train_cfg = TrainConfig(**tiny["params"]["train"])
    model_cfg = _model_config(Path(tiny["model_cfg"].text_encoder))
    data, pad = build_data(args, model_cfg, train_cfg, table)
    assert input_record(args, model_cfg, train_cfg, data["train"]) == INPUTS
    # evaluate's own path, in memory (tight tolerance) ...
    model, _, fer, fer_cfg, info = load_models(tiny["ckpt"])
    tr = Trainer(model, train_cfg, fer=fer, fer_cfg=fer_cfg, model_config=info["model"], pad_id=pad)
    got = tr.predict(data["test"])
    assert got["utt_ids"] == ids
    np.testing.assert_allclose(got["probs"][1], pred.probs, atol=2e-5)
    # ... and the evaluate command's predictions.csv (4 decimals)
    rc = evaluate.main(["--params", str(tiny["params_file"]), "--checkpoint", str(tiny["ckpt"]), "--utterances",
                        str(tmp_path / "utterances.parquet"), "--audio", args.audio, "--visual", args.visual,
                        "--faces", args.faces, "--out", str(tmp_path / "eval")])
    assert rc == 0
    csv = pd.read_csv(tmp_path / "eval" / "predictions.csv").set_index("utt_id")
    np.testing.assert_allclose(csv.loc[key, [f"p_{e}" for e in EMOTIONS]].to_numpy(float), pred.probs, atol=1e-4)
    assert csv.loc[key, "predicted"] == pred.label


# -------------------------------------------------------------------------------------- rendering


def test_draw_prediction_pixels() -> None:
    img = np.zeros((360, 640, 3), np.uint8)
    probs = np.array([0.05, 0.1, 0.05, 0.1, 0.5, 0.1, 0.1], np.float32)
    box = (100.0, 150.0, 180.0, 250.0)
    out = draw_prediction(img, probs, box=box, t=0.5, caption="Rachel: oh my god", name="Rachel")
    joy = np.array(EMOTION_COLOURS["joy"])
    assert (out[200, 100] == joy).all() and (out[200, 180] == joy).all() and (out[250, 140] == joy).all()
    assert (out[200, 140] == 0).all()  # the box is not filled
    assert not np.array_equal(draw_prediction(img, probs, t=0.5), draw_prediction(img, probs, t=0.54))
    assert (draw_prediction(img, probs, box=None)[200, 100] == 0).all()


def _frames(path: Path) -> list[np.ndarray]:
    return [f.image for f in iter_frames(path)]


@pytest.mark.usefixtures("cached_stage1")
def test_cli_mp4(tiny: dict, clips: dict, stage1: dict, tmp_path: Path, capsys) -> None:
    clip = clips["normal"]
    out = tmp_path / "out"
    rc = cli.main([str(clip["path"]), "--text", TEXT, "--speaker", SPEAKER, "--context", "Ross: what is that",
                   "--checkpoint", str(tiny["ckpt"]), "--params", str(tiny["params_file"]), "--out", str(out), "-q"])
    assert rc == 0
    printed = capsys.readouterr().out
    stem = clip["path"].stem
    rec = json.loads((out / f"{stem}.prediction.json").read_text(encoding="utf-8"))
    probs = np.array([rec["probabilities"][e] for e in EMOTIONS])
    assert abs(probs.sum() - 1.0) < 1e-4 and rec["predicted"] == EMOTIONS[int(probs.argmax())]
    assert f"predicted: {rec['predicted']}" in printed
    lines = [ln.split() for ln in printed.splitlines() if ln.startswith("  ")]  # sorted, highest first
    assert [ln[0] for ln in lines] == sorted(EMOTIONS, key=lambda e: -rec["probabilities"][e])
    assert rec["checkpoint"] == str(tiny["ckpt"].resolve()) and rec["context"] == [
        {"speaker": "Ross", "text": "what is that"}
    ]
    track = rec["speaker_track"]
    assert track["status"] == "ok" and track["face_frames"] == 8 and track["tracks"] and track["tracks"][0]["selected"]
    video = Path(rec["annotated"])
    assert video == out / f"{stem}.annotated.mp4" and video.is_file()
    frames = _frames(video)
    assert len(frames) == clip["truth"]["n_frames"] == track["n_frames"]
    # the box is drawn where stage 1 found the face (H.264 is lossy: colour within a tolerance)
    colour = np.array(EMOTION_COLOURS[rec["predicted"]], float)
    src = _frames(clip["path"])
    manifest_frames = stage1[str(clip["path"])].record["frames"]
    rec_frames = manifest_frames[len(manifest_frames) // 2]
    mid = rec_frames["frame"]
    x1, y1, _, y2 = (round(v) for v in rec_frames["box"])
    ym = (y1 + y2) // 2
    edge = frames[mid][ym - 3 : ym + 4, x1 - 1 : x1 + 2].reshape(-1, 3).astype(float)
    assert np.abs(edge - colour).mean() < 40, (edge.mean(0), colour)
    before = src[mid][ym - 3 : ym + 4, x1 - 1 : x1 + 2].reshape(-1, 3).astype(float)
    assert np.abs(before - colour).mean() > np.abs(edge - colour).mean() + 30  # it was not there before


def test_gif(pred, clips: dict, tmp_path: Path) -> None:
    from PIL import Image

    out = write_annotated(pred.video, tmp_path / "a.gif", pred.probs, pred.boxes(), caption=TEXT, fmt="gif",
                          gif_width=320)
    with Image.open(out) as im:
        assert im.n_frames == clips["normal"]["truth"]["n_frames"] and im.size[0] == 320


@pytest.mark.usefixtures("cached_stage1")
def test_cli_no_speaker_face(tiny: dict, clips: dict, tmp_path: Path, capsys) -> None:
    clip = clips["speaker_off_screen"]
    rc = cli.main([str(clip["path"]), "--text", TEXT, "--checkpoint", str(tiny["ckpt"]), "--params",
                   str(tiny["params_file"]), "--out", str(tmp_path), "--format", "none", "-q"])
    assert rc == 0
    rec = json.loads((tmp_path / f"{clip['path'].stem}.prediction.json").read_text(encoding="utf-8"))
    assert rec["speaker_track"]["status"] == "no_speaker" and rec["speaker_track"]["face_frames"] == 0
    assert rec["inputs"]["visual"]["rows"] == 0 and rec["annotated"] is None
    assert abs(sum(rec["probabilities"].values()) - 1.0) < 1e-4
    notes = " ".join(rec["notes"])
    assert "no speaker face found" in notes and "text and audio" in notes and "no --speaker" in notes
    assert "note: no speaker face found" in capsys.readouterr().out


# ----------------------------------------------------------------------------------- errors, misc


def test_missing_checkpoint_names_the_file(tiny: dict, clips: dict, tmp_path: Path, caplog) -> None:
    video = str(clips["normal"]["path"])
    base = ["--text", TEXT, "--params", str(tiny["params_file"]), "--out", str(tmp_path / "o"), "-q"]
    with caplog.at_level(logging.ERROR):
        assert cli.main([video, *base, "--checkpoint", str(tmp_path / "nowhere")]) == 2
    assert "checkpoint folder not found" in caplog.text and "dvc repro train" in caplog.text
    partial = tmp_path / "partial"
    partial.mkdir()
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert cli.main([video, *base, "--checkpoint", str(partial)]) == 2
    assert str(partial / "checkpoint.json") in caplog.text and "dvc repro train" in caplog.text
    (partial / "checkpoint.json").write_text((tiny["ckpt"] / "checkpoint.json").read_text())
    (partial / "model.safetensors").write_bytes((tiny["ckpt"] / "model.safetensors").read_bytes())
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert cli.main([video, *base, "--checkpoint", str(partial)]) == 2
    assert str(partial / "fer.safetensors") in caplog.text and "--checkpoint" in caplog.text
    assert not (tmp_path / "o").exists()


def test_missing_video(tiny: dict, tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.ERROR):
        rc = cli.main([str(tmp_path / "ghost.mp4"), "--text", TEXT, "--checkpoint", str(tiny["ckpt"]), "--out",
                       str(tmp_path / "o")])
    assert rc == 2 and f"video not found: {tmp_path / 'ghost.mp4'}" in caplog.text


def test_checkpoint_without_inputs_record_uses_params(tiny: dict, tmp_path: Path) -> None:
    """Older checkpoints: extractors from features.<modality>, caps from train.max_*_len."""
    old = tmp_path / "old"
    shutil.copytree(tiny["ckpt"], old)
    info = json.loads((old / "checkpoint.json").read_text())
    del info["inputs"]
    (old / "checkpoint.json").write_text(json.dumps(info))
    features = {"visual": {"name": "dlib_resnet", "extractors": {"dlib_resnet": {}}},
                "audio": {"name": "fbank", "extractors": {"fbank": {"num_mel_bins": 16}}, "dtype": "float32"}}
    p = Predictor(old, {**tiny["params"], "train": {**tiny["params"]["train"], "max_audio_len": "mean+3std"},
                        "features": features}, features_root=tmp_path / "none")
    assert {k: (s.extractor, s.source, s.dtype, s.max_len) for k, s in p.specs.items()} == {
        "visual": ("dlib_resnet", "params", "float16", 6), "audio": ("fbank", "params", "float32", 64)}
    bad = {**features, "audio": {"name": "fbank", "extractors": {"fbank": {"num_mel_bins": 80}}}}
    from stage2_mer.predict import PredictError

    with pytest.raises(PredictError, match="80-d features but the model was trained on 16-d"):
        Predictor(old, {**tiny["params"], "features": bad})


@pytest.mark.parametrize("line, expected", [
    ("Ross: what is that", ("Ross", "what is that")),
    ("what: is that", ("what", "is that")),
    ("no name here", (None, "no name here")),
    ("Time is 10:30 now", (None, "Time is 10:30 now")),
])
def test_parse_turn(line: str, expected) -> None:
    assert parse_turn(line) == expected


def test_dispatcher_knows_predict(capsys) -> None:
    from stage2_mer import cli as top

    assert top.main(["predict", "--help"]) == 0
    assert "--checkpoint" in capsys.readouterr().out
