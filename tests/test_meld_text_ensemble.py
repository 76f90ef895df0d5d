"""benchmarks/meld_text_ensemble.py: saved member predictions are read back, checked against their
weights, aligned by utterance id and averaged."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from conftest import REPO_ROOT


def _script():
    spec = importlib.util.spec_from_file_location(
        "meld_text_ensemble", REPO_ROOT / "benchmarks" / "meld_text_ensemble.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _member(folder, ids, labels, probs, weights=b"weights"):
    """A checkpoint folder with made-up weights and the given dev and test predictions."""
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "checkpoint.json").write_text("{}")
    pred = {"utt_ids": ids, "labels": labels, "probs": np.asarray(probs, np.float32)}
    _script().write_predictions(folder, {"dev": pred, "test": pred})
    return folder


def _onehot(classes, p=0.6):
    """(U, 7) probabilities with ``p`` on each row's class, the rest spread evenly."""
    out = np.full((len(classes), 7), (1 - p) / 6)
    out[np.arange(len(classes)), classes] = p
    return out


def test_predictions_round_trip(tmp_path):
    mod = _script()
    probs = np.random.default_rng(0).dirichlet(np.ones(7), size=5)
    _member(tmp_path / "m", ["a", "b", "c", "d", "e"], [0, 1, 2, 3, 4], probs)
    got = mod.read_predictions(tmp_path / "m")
    for split in ("dev", "test"):
        ids, labels, p = got[split]
        assert ids == ["a", "b", "c", "d", "e"]
        assert labels.tolist() == [0, 1, 2, 3, 4]
        np.testing.assert_allclose(p, probs, rtol=1e-6)
    assert mod.read_predictions(tmp_path) is None  # no saved predictions: the member is run instead


def test_predictions_of_other_weights_are_refused(tmp_path):
    mod = _script()
    folder = _member(tmp_path / "m", ["a"], [0], _onehot([0]))
    (folder / "model.safetensors").write_bytes(b"trained again")
    with pytest.raises(SystemExit, match="other weights"):
        mod.read_predictions(folder)


def test_ensemble_averages_saved_members_aligned_by_utterance(tmp_path, capsys):
    mod = _script()
    ids = [f"dia{k}_utt0" for k in range(6)]
    truth = np.array([0, 1, 2, 3, 4, 5])
    members = []
    for m in range(3):  # each member gets a different utterance wrong (confidently), the mean gets all right
        classes = truth.copy()
        classes[m] = 6
        probs = _onehot(classes, p=0.5)
        order = np.random.default_rng(m).permutation(6)  # each member lists the utterances in its own order
        members.append(_member(tmp_path / f"m{m}", [ids[i] for i in order], truth[order].tolist(), probs[order]))
    out = tmp_path / "ens.json"
    assert mod.main(["--members", *map(str, members), "--json", str(out)]) == 0  # no --csv-dir: nothing to run
    res = json.loads(out.read_text())
    assert res["ensemble"]["test"]["accuracy"] == pytest.approx(100.0)
    for m in members:
        assert res["members"][str(m)]["test"]["accuracy"] == pytest.approx(100 * 5 / 6, abs=0.01)
    assert "saved predictions.parquet" in capsys.readouterr().out


def test_ensemble_refuses_members_with_different_labels(tmp_path):
    mod = _script()
    a = _member(tmp_path / "a", ["u1", "u2"], [0, 1], _onehot([0, 1]))
    b = _member(tmp_path / "b", ["u1", "u2"], [0, 2], _onehot([0, 2]))
    with pytest.raises(SystemExit, match="differ from the first member"):
        mod.main(["--members", str(a), str(b)])


def test_member_without_predictions_needs_the_csvs(tmp_path, capsys):
    mod = _script()
    a = _member(tmp_path / "a", ["u1"], [0], _onehot([0]))
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "model.safetensors").write_bytes(b"w")
    (bare / "checkpoint.json").write_text("{}")
    assert mod.main(["--members", str(a), str(bare), "--csv-dir", str(tmp_path)]) == 2
    assert "no MELD CSVs" in capsys.readouterr().err
