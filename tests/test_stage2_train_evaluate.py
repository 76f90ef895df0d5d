"""The train and evaluate stages end to end on a tiny generated corpus (issue 19 items 5, 6, 7):
the demo's Aff-Wild2 stand-in is refused on real MELD, evaluate scores a checkpoint with the data
settings recorded in it (not params.yaml's), and ``train.seeds`` gets every seed scored on test.

Everything is generated under tmp_path: an utterance table, feature folders (random features),
face shards (random crops), a tiny word-level RoBERTa text encoder and a random 32-pixel Swin.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from stage1_face_extraction.common.config import ConfigError
from stage1_face_extraction.common.labels import EMOTIONS

pytestmark = pytest.mark.usefixtures("torch_one_thread")

WORDS = ("oh", "my", "god", "okay", "wow", "no", "yes", "great", "what", "is", "that", "ross", "rachel")
SPEAKERS = ("Ross", "Rachel")
SIZES = {"train": [3, 4, 3, 2], "dev": [3, 3], "test": [4, 2, 3]}
DIM = 8
CROP = 32


def _table(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for split, sizes in SIZES.items():
        for d, n in enumerate(sizes):
            for u in range(n):
                label = int(rng.integers(len(EMOTIONS)))
                rows.append({"split": split, "sr_no": len(rows) + 1, "dialogue_id": d, "utterance_id": u,
                             "utt_id": f"dia{d}_utt{u}", "speaker": SPEAKERS[u % 2],
                             "text": " ".join(rng.choice(WORDS[:11], size=int(rng.integers(2, 6)))),
                             "emotion": EMOTIONS[label], "label": label, "sentiment": "neutral", "season": 1,
                             "episode": 1, "start_s": 0.0, "end_s": 1.0, "clip": f"dia{d}_utt{u}.mp4",
                             "clip_exists": True})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, save_tiny_roberta) -> dict:
    """Table, features, faces, text encoder and a params.yaml (two seeds, no auxiliary task)."""
    from stage1_face_extraction.store import FaceShardWriter
    from stage2_mer.features import FeatureWriter

    root = tmp_path_factory.mktemp("stages")
    table = _table()
    table.to_parquet(root / "utterances.parquet")
    rng = np.random.default_rng(1)
    for split in SIZES:
        ids = sorted(table.loc[table["split"] == split, "utt_id"])
        with FeatureWriter(root / "audio" / split, dim=DIM, info={"extractor": "fbank", "options": {}}) as w:
            for u in ids:
                w.add(u, rng.normal(size=(int(rng.integers(3, 9)), DIM)))
        lengths = {u: int(rng.integers(0, 7)) for u in ids}
        with FeatureWriter(root / "visual" / split, dim=DIM, info={"extractor": "dlib_resnet", "options": {}}) as w:
            for u in ids:
                w.add(u, rng.normal(size=(lengths[u], DIM)))
        with FaceShardWriter(root / "faces" / split) as w:
            for u in ids:
                w.add(u, rng.integers(0, 256, (lengths[u], CROP, CROP, 3), dtype=np.uint8))
    text = save_tiny_roberta(root / "text_encoder", WORDS)
    params = {
        "model": {"modalities": "T+A+V", "text_encoder": str(text), "hidden": 16, "heads": 2, "ffn": 32,
                  "audio_layers": 1, "visual_layers": 1, "cross_layers": 1, "cross_heads": 2, "audio_dim": DIM,
                  "visual_dim": DIM, "fer_dim": 7, "max_audio_len": 32, "max_visual_len": 16, "max_text_len": 128,
                  "attn_dropout": 0.0},
        "fer": {"random_init": True, "image_size": CROP, "drop_path": 0.0},
        "train": {"epochs": 1, "cpu": True, "max_tokens": 120, "speaker_names": True, "max_audio_len": "mean+3std",
                  "max_visual_len": 5, "batch_dialogues": 2, "seeds": [3, 4], "aux_ratio": 0.0, "lr": 1e-3,
                  "fer_threshold": 0.2, "fer_tau": 1.0, "fer_samples": 0, "log_every": 1000},
    }
    return {"root": root, "params": params, "table": table}


def _write_params(folder: Path, params: dict, **train) -> Path:
    p = {**params, "train": {**params["train"], **train}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(p), encoding="utf-8")
    return path


def _train(corpus: dict, params: Path, out: Path, *extra: str) -> int:
    from stage2_mer.stages import train

    r = corpus["root"]
    return train.main(["--params", str(params), "--utterances", str(r / "utterances.parquet"), "--audio",
                       str(r / "audio"), "--visual", str(r / "visual"), "--faces", str(r / "faces"), "--out", str(out),
                       "--metrics", str(out.parent / "train_metrics.json"), *extra])


def _evaluate(corpus: dict, params: Path, checkpoint: Path, out: Path) -> dict:
    from stage2_mer.stages import evaluate

    r = corpus["root"]
    rc = evaluate.main(["--params", str(params), "--checkpoint", str(checkpoint), "--utterances",
                        str(r / "utterances.parquet"), "--audio", str(r / "audio"), "--visual", str(r / "visual"),
                        "--faces", str(r / "faces"), "--out", str(out)])
    assert rc == 0
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def trained(corpus: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("trained")
    params = _write_params(work, corpus["params"])
    with pytest.warns(UserWarning):  # the random Swin
        assert _train(corpus, params, work / "model") == 0
    return {"work": work, "params": params, "model": work / "model"}


def test_seeds_are_scored_on_test(corpus: dict, trained: dict, tmp_path: Path) -> None:
    """Item 7: metrics.json has every seed's test scores, their mean and std, and the best-dev seed."""
    record = json.loads((trained["model"] / "seeds.json").read_text(encoding="utf-8"))
    train_metrics = json.loads((trained["work"] / "train_metrics.json").read_text(encoding="utf-8"))
    assert [r["seed"] for r in record["runs"]] == [3, 4] and record["best_seed"] == train_metrics["best_seed"]
    m = _evaluate(corpus, trained["params"], trained["model"], tmp_path / "eval")
    seeds = m["seeds"]
    alone = {s: _evaluate(corpus, trained["params"], trained["model"] / f"seed-{s}", tmp_path / f"eval-{s}")
             for s in (3, 4)}
    assert [r["seed"] for r in seeds["runs"]] == [3, 4]
    for run in seeds["runs"]:
        assert run["weighted_f1"] == alone[run["seed"]]["weighted_f1"]
        assert run["dev_weighted_f1"] == next(r["weighted_f1"] for r in record["runs"] if r["seed"] == run["seed"])
    test = np.array([alone[s]["weighted_f1"] for s in (3, 4)])
    assert seeds["weighted_f1"]["mean"] == pytest.approx(test.mean(), abs=1e-3)
    assert seeds["weighted_f1"]["std"] == pytest.approx(test.std(ddof=1), abs=1e-3)
    assert seeds["best_dev_seed"] == record["best_seed"]
    assert seeds["best_dev_seed_weighted_f1"] == alone[record["best_seed"]]["weighted_f1"] == m["weighted_f1"]
    # the frame filter's report on test (item 1) and on dev (train metrics)
    f = m["fer_filter"]
    assert f["valid"] > 0 and f["kept_fraction"] == round(f["kept"] / f["valid"], 4)
    assert all("fer_filter" in r for r in train_metrics["dev"]["runs"])


def test_evaluate_uses_the_checkpoints_data_settings(corpus: dict, trained: dict, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Item 6: a params.yaml changed after training changes neither the inputs nor the scores;
    each difference is a warning naming the key."""
    ckpt = trained["model"] / "seed-3"
    info = json.loads((ckpt / "checkpoint.json").read_text(encoding="utf-8"))
    assert info["inputs"]["fer_filter"] == {"tau": 1.0, "threshold": 0.2, "samples": 0}
    assert info["inputs"]["text"] == {"max_tokens": 120, "speaker_names": True}
    changed = {"speaker_names": False, "max_tokens": 40, "max_visual_len": 2, "max_audio_len": 3,
               "fer_threshold": 0.9, "fer_tau": 3.0, "fer_samples": 2, "text_context": "past:1"}
    other = _write_params(tmp_path / "other", corpus["params"], **changed)
    same = _evaluate(corpus, trained["params"], ckpt, tmp_path / "same")
    with caplog.at_level(logging.WARNING):
        moved = _evaluate(corpus, other, ckpt, tmp_path / "moved")
    assert (tmp_path / "same" / "predictions.csv").read_bytes() == (tmp_path / "moved" / "predictions.csv").read_bytes()
    assert same == moved
    for key in changed:
        assert f"train.{key}: params.yaml has" in caplog.text, key
    # the settings do matter: a checkpoint that records none is evaluated with params.yaml's
    old = tmp_path / "old"
    shutil.copytree(ckpt, old)
    info.pop("inputs")
    (old / "checkpoint.json").write_text(json.dumps(info), encoding="utf-8")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        legacy = _evaluate(corpus, other, old, tmp_path / "legacy")
    assert "does not record its frame-filter settings" in caplog.text
    same_csv = (tmp_path / "same" / "predictions.csv").read_bytes()
    assert (tmp_path / "legacy" / "predictions.csv").read_bytes() != same_csv
    assert legacy["fer_filter"] != same["fer_filter"]


def test_demo_affwild2_standin_is_refused_on_real_meld(corpus: dict, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Item 5: the make_affwild2 output (MELD train faces with MELD labels) is a hard error unless
    the run is on the demo corpus (its MELD.Raw holds the generator's truth.json)."""
    from stage1_face_extraction.common.runstate import claim_output
    from stage2_mer.fer import check_affwild2_source, is_affwild2_standin, write_demo_affwild2

    faces = np.random.default_rng(0).integers(0, 256, (6, CROP, CROP, 3), dtype=np.uint8)
    standin = write_demo_affwild2(tmp_path / "affwild2", faces, [0, 1, 2, 3, 4, 5])
    real_aff = write_demo_affwild2(tmp_path / "real_affwild2", faces, [0, 1, 2, 3, 4, 5])  # no stage mark
    claim_output(standin, "make_affwild2")
    real, demo = tmp_path / "MELD.Raw", tmp_path / "demo" / "MELD.Raw"
    real.mkdir()
    demo.mkdir(parents=True)
    (demo / "truth.json").write_text("{}", encoding="utf-8")
    assert is_affwild2_standin(standin) and not is_affwild2_standin(real_aff)
    check_affwild2_source(standin, demo)
    check_affwild2_source(real_aff, real)
    for root in (real, None):
        with pytest.raises(ConfigError, match="stand-in"):
            check_affwild2_source(standin, root)
    params = _write_params(tmp_path / "p", corpus["params"], aux_ratio=1.0, seeds=[])
    with caplog.at_level(logging.ERROR):
        rc = _train(corpus, params, tmp_path / "model", "--affwild2", str(standin), "--meld-root", str(real))
    assert rc == 2 and "leaks MELD labels" in caplog.text
    assert not (tmp_path / "model").exists()
