"""benchmarks/meld_text_best.py: the three members of ensemble E train with their own recipes on the
real MELD tables, save their predictions, and the ensemble is scored from those (tiny encoders)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from conftest import REPO_ROOT


def _script():
    spec = importlib.util.spec_from_file_location("meld_text_best", REPO_ROOT / "benchmarks" / "meld_text_best.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, shared_meld_dir, save_tiny_roberta):
    """One smoke run (each member one epoch on 6 train dialogues), tiny encoders in place of mpnet/MiniLM."""
    tmp = tmp_path_factory.mktemp("best")
    words = "i you the a what is it oh no yeah okay know".split()
    mpnet = save_tiny_roberta(tmp / "mpnet", words)
    minilm = save_tiny_roberta(tmp / "minilm", words + ["hey"])
    out = tmp / "out"
    rc = _script().main(["--csv-dir", str(shared_meld_dir), "--mpnet", str(mpnet), "--minilm", str(minilm),
                         "--seed", "7", "--out", str(out), "--smoke", "6"])
    assert rc == 0
    return out, mpnet, minilm


def test_members_are_trained_with_their_recipes(smoke_run):
    out, mpnet, minilm = smoke_run
    expect = {"mpnet": (mpnet, "past:0", False), "dialogue": (minilm, "dialogue", True),
              "past0n": (minilm, "past:0", False)}
    for name, (encoder, context, names) in expect.items():
        info = json.loads((out / name / "checkpoint.json").read_text())
        text = info["inputs"]["text"]
        assert info["model"]["text_encoder"] == str(encoder), name
        assert (text.get("context", "dialogue"), text["speaker_names"]) == (context, names), name  # default unrecorded
        assert text["max_tokens"] == 128, name  # the tiny RoBERTa's 130 positions less its 2 offset
        assert (out / name / "predictions.parquet").is_file(), name


def test_ensemble_scores_the_saved_predictions(smoke_run):
    out, _, _ = smoke_run
    best = json.loads((out / "best.json").read_text())
    ens = json.loads((out / "ensemble.json").read_text())
    assert best["test"]["n"] == 2610 and best["dev"]["n"] == 1109  # every real dev / test utterance
    assert best["test"] == ens["ensemble"]["test"]
    for name in ("mpnet", "dialogue", "past0n"):  # each member as the ensemble saw it = its own test figures
        own = json.loads((out / f"{name}.json").read_text())["test"]
        assert ens["members"][str(out / name)]["test"]["weighted_f1"] == pytest.approx(own["weighted_f1"])
    assert set(best["wall_s"]) == {"mpnet", "dialogue", "past0n", "ensemble", "total"}
    assert best["wall_s"]["total"] >= best["wall_s"]["mpnet"] + best["wall_s"]["dialogue"]


def test_missing_encoder_is_named(tmp_path, shared_meld_dir, capsys):
    rc = _script().main(["--csv-dir", str(shared_meld_dir), "--mpnet", str(tmp_path / "nowhere"),
                         "--out", str(tmp_path / "out")])
    assert rc == 2
    assert "--mpnet" in capsys.readouterr().err and not (tmp_path / "out").exists()
