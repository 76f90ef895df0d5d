"""stage2_mer.train: the Trainer end to end on a synthetic, LEARNABLE MELD-like corpus.

Everything is built in memory: an utterance table whose label is written in the text (one keyword
per emotion) and in fake audio / visual features (a class direction plus noise), a tiny
RoBERTa-layout tokenizer, a tiny random RoBERTa text encoder (``model.text_config``), and for the
facial-expression coupling a random-init Swin at 32x32 input. Nothing touches the network; files
go under tmp_path only.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from stage1_face_extraction.common.config import ConfigError
from stage1_face_extraction.common.labels import EMOTIONS
from stage2_mer.data import ROBERTA_SPECIALS, DialogueTokenizer, MELDDialogues, collate, word_level_tokenizer
from stage2_mer.model import ModelConfig, create_model
from stage2_mer.train import (
    TrainConfig,
    Trainer,
    classification_metrics,
    linear_warmup_decay,
    load_state,
    read_checkpoint,
)

# one keyword per emotion, in MELD label order (EMOTIONS)
KEYWORDS = ("okay", "wow", "scared", "sad", "great", "gross", "furious")
FILLER = "i think that is so really the day you know well".split()
SPECIALS = ROBERTA_SPECIALS
PAD_ID = 1
FEAT_DIM = 8  # audio and visual feature size (the first 7 dims carry the class signal)
CROP = 32  # face crop side (and the FER input size)
SPLIT_SEED = {"train": 0, "dev": 1, "test": 2}


# ------------------------------------------------------------------------------------------ data


def make_tokenizer():
    """A word-level RoBERTa-layout tokenizer (``<s> a </s></s> b </s>``) over KEYWORDS + FILLER."""
    return word_level_tokenizer((*KEYWORDS, *FILLER, "ross", "rachel", "monica"))


def make_table(dialogues: dict[str, list[int]], seed: int = 0) -> pd.DataFrame:
    """Utterance table: ``dialogues[split]`` lists the number of utterances of each dialogue.
    Each utterance's text holds its emotion's keyword among random filler words."""
    rows = []
    for split, sizes in dialogues.items():
        rng = np.random.default_rng([seed, SPLIT_SEED[split]])
        for d, n in enumerate(sizes):
            for u in range(n):
                label = int(rng.integers(len(EMOTIONS)))
                words = list(rng.choice(FILLER, size=int(rng.integers(1, 5))))
                words.insert(int(rng.integers(len(words) + 1)), KEYWORDS[label])
                rows.append({"split": split, "dialogue_id": d, "utterance_id": u,
                             "utt_id": f"{split}_dia{d}_utt{u}", "speaker": ["ross", "rachel", "monica"][u % 3],
                             "text": " ".join(words), "label": label})
    return pd.DataFrame(rows)


class FakeReader:
    """FeatureReader-like: ``read(utt) -> (L, D) float32``, ``utt_ids()``. Each frame is
    ``scale * onehot(label) + noise``; lengths vary (``min_len`` .. ``max_len``)."""

    def __init__(self, table: pd.DataFrame, dim: int, min_len: int, max_len: int, seed: int, scale: float = 1.5):
        self.data: dict[str, np.ndarray] = {}
        rng = np.random.default_rng(seed)
        for r in table.itertuples():
            n = int(rng.integers(min_len, max_len + 1))
            x = rng.normal(0.0, 1.0, (n, dim)).astype(np.float32)
            x[:, r.label] += scale
            self.data[r.utt_id] = x

    def utt_ids(self) -> list[str]:
        return sorted(self.data)

    def read(self, utt: str) -> np.ndarray:
        return self.data[utt]


class FakeFaces:
    """FaceShardReader-like: ``read(utt) -> (L, S, S, 3) uint8``, row for row with a visual reader."""

    def __init__(self, visual: FakeReader, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.data = {u: rng.integers(0, 256, (len(v), CROP, CROP, 3), dtype=np.uint8) for u, v in visual.data.items()}

    def utt_ids(self) -> list[str]:
        return sorted(self.data)

    def read(self, utt: str) -> np.ndarray:
        return self.data[utt]


def make_data(dialogues: dict[str, list[int]], seed: int = 0, text: bool = True, faces: bool = False,
              audio_len=(2, 6), visual_len=(1, 5)) -> dict[str, MELDDialogues]:
    table = make_table(dialogues, seed)
    tok = DialogueTokenizer(make_tokenizer(), max_tokens=120) if text else None
    audio = FakeReader(table, FEAT_DIM, *audio_len, seed=seed + 100)
    visual = FakeReader(table, FEAT_DIM, *visual_len, seed=seed + 200)
    crops = FakeFaces(visual, seed=seed + 300) if faces else None
    return {split: MELDDialogues(table, split, tokenizer=tok, audio=audio, visual=visual, faces=crops)
            for split in dialogues}


TEXT_CONFIG = {
    "model_type": "roberta", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
    "intermediate_size": 32, "vocab_size": len(SPECIALS) + len(KEYWORDS) + len(FILLER) + 3,
    "max_position_embeddings": 130, "pad_token_id": PAD_ID,
}


def tiny_config(modalities: str = "T+A+V", **kw) -> ModelConfig:
    base = {
        "modalities": modalities, "text_encoder": None,
        "text_config": dict(TEXT_CONFIG) if "T" in modalities else None, "hidden": 16, "heads": 2, "ffn": 32,
        "audio_layers": 1, "visual_layers": 1, "cross_layers": 1, "cross_heads": 2, "audio_dim": FEAT_DIM,
        "visual_dim": FEAT_DIM, "fer_dim": 0, "max_audio_len": 16, "max_visual_len": 16, "max_text_len": 32,
        "dropout": 0.1, "attn_dropout": 0.0,
    }
    base.update(kw)
    return ModelConfig(**base)


def new_trainer(mcfg: ModelConfig, cfg: TrainConfig, init_seed: int | None = None, **kw) -> Trainer:
    """Model initialised from ``init_seed`` (default: the run's seed, as the train stage does)."""
    torch.manual_seed(cfg.seed if init_seed is None else init_seed)
    model = create_model(mcfg)
    return Trainer(model, cfg, model_config=mcfg.to_dict(), pad_id=PAD_ID, **kw)


def train_cfg(**kw) -> TrainConfig:
    base = {"epochs": 2, "batch_dialogues": 4, "lr": 3e-3, "lr_encoder": 1e-3, "warmup": 0.1, "seed": 5,
            "max_tokens": 120, "log_every": 1000, "cpu": True}
    base.update(kw)
    return TrainConfig(**base)


SIZES = {"train": [3, 2, 5, 4, 3, 2, 4, 3, 5, 2, 3, 4, 3, 2, 4, 3], "dev": [4, 3, 5, 2, 4, 3], "test": [3, 4, 2]}


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest: tiny tensors, one thread


@pytest.fixture(scope="module")
def data() -> dict[str, MELDDialogues]:
    return make_data(SIZES)


class RecordingTrainer(Trainer):
    """Keeps the dev probabilities of every improving evaluation (the ones that wrote the checkpoint)."""

    best_probs: np.ndarray | None = None

    def _validate(self, dev_ds, best, out_dir, epoch, step, ema=None):
        assert ema is None  # the probabilities below are the trained weights'
        best, improved = super()._validate(dev_ds, best, out_dir, epoch, step)
        if improved:
            self.best_probs = self.predict(dev_ds)["probs"].copy()
        return best, improved


def dev_records(records: list[dict]) -> list[dict]:
    return [r for r in records if "dev_weighted_f1" in r]


# --------------------------------------------------------------------------------------- config


def test_linear_warmup_decay_values():
    # warmup 2 of 10 steps: 0.5, 1.0 while warming, then linear from 1 at step 2 to 0 at step 10
    expected = [0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0, 0.0]
    got = [linear_warmup_decay(s, 10, 2) for s in range(12)]
    assert got == pytest.approx(expected)
    assert [linear_warmup_decay(s, 4, 0) for s in range(5)] == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    assert linear_warmup_decay(0, 1, 0) == 1.0 and linear_warmup_decay(1, 1, 0) == 0.0
    # warmup ends exactly at the peak: continuous at the boundary
    assert linear_warmup_decay(4, 20, 5) == pytest.approx(1.0) and linear_warmup_decay(5, 20, 5) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kw",
    [
        {"precision": "no"},
        {"precision": "fp64"},
        {"epochs": 0},
        {"batch_dialogues": 0},
        {"grad_accum": 0},
        {"max_utterances": 0},
        {"warmup": 1.0},
        {"warmup": -0.1},
        {"patience": 0},
        {"aux_ratio": -1.0},
        {"fer_samples": -1},
        {"aux_schedule": "pass"},
        {"aux_augment": "original"},
        {"preset": "paper"},
        {"text_context": "past"},
        {"text_context": "past:-1"},
        {"text_context": "whole"},
        {"ema": 1.0},
        {"ema": -0.5},
    ],
)
def test_bad_train_config_raises(kw):
    with pytest.raises(ConfigError):
        TrainConfig(**kw)


def test_good_train_config_accepted():
    cfg = TrainConfig(precision="bf16", warmup=0.0, aux_ratio=0.0, patience=1)
    assert cfg.precision == "bf16" and cfg.patience == 1
    assert TrainConfig().text_context == "dialogue" and TrainConfig(text_context="past:3").text_context == "past:3"


def test_checkpoint_records_the_text_context(caplog):
    """A checkpoint with a text record but no context was trained with the whole dialogue (the only
    layout before train.text_context, and the default, which is not written)."""
    from stage2_mer.train.checkpoint import checkpoint_data_settings, checkpoint_train_config

    assert checkpoint_data_settings({"inputs": {"text": {"max_tokens": 9}}})["text_context"] == "dialogue"
    assert checkpoint_data_settings({"inputs": {"text": {"context": "past:2"}}})["text_context"] == "past:2"
    assert "text_context" not in checkpoint_data_settings({"inputs": {"audio": {"max_len": 3}}})
    cfg, diffs = checkpoint_train_config(TrainConfig(text_context="past:3"), {"inputs": {"text": {"max_tokens": 9}}})
    assert cfg.text_context == "dialogue" and diffs["text_context"] == ("past:3", "dialogue")


# ---------------------------------------------------------------------------------- predict


def test_predict_is_batch_size_invariant(data):
    """Padding (tokens, frames) and the number of dialogues per batch must not change the output."""
    mcfg = tiny_config("T+A+V")
    probs = {}
    for b in (1, 4):
        tr = new_trainer(mcfg, train_cfg(batch_dialogues=b), init_seed=11)
        pred = tr.predict(data["dev"])
        probs[b] = pred
    p1, p4 = probs[1], probs[4]
    n = sum(SIZES["dev"])
    assert p1["probs"].shape == (n, len(EMOTIONS)) and len(p1["utt_ids"]) == n
    assert p1["utt_ids"] == p4["utt_ids"] and p1["labels"] == p4["labels"]
    np.testing.assert_allclose(p1["probs"].sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(p4["probs"], p1["probs"], atol=1e-5)
    assert p1["predictions"] == p4["predictions"]
    # labels come back in utterance order (dialogue, utterance) of the table
    table = make_table(SIZES)
    dev = table[table["split"] == "dev"].sort_values(["dialogue_id", "utterance_id"])
    assert p1["utt_ids"] == dev["utt_id"].tolist() and p1["labels"] == dev["label"].tolist()


def test_predict_is_deterministic_in_eval_mode(data):
    """Dropout is on in the model config: predict must switch it off."""
    tr = new_trainer(tiny_config("T+A+V", dropout=0.5), train_cfg(), init_seed=3)
    a, b = tr.predict(data["test"])["probs"], tr.predict(data["test"])["probs"]
    np.testing.assert_array_equal(a, b)


# -------------------------------------------------------------------------------------- fit


def test_fit_learns_and_checkpoint_reloads(data, tmp_path):
    mcfg = tiny_config("T+A+V")
    cfg = train_cfg(epochs=10, batch_dialogues=2, patience=10, lr=1e-2)
    records: list[dict] = []
    torch.manual_seed(cfg.seed)
    model = create_model(mcfg)
    tr = RecordingTrainer(model, cfg, model_config=mcfg.to_dict(), pad_id=PAD_ID, meta={"params_hash": "abc"},
                          on_log=records.append)
    before = tr.predict(data["dev"])
    out = tmp_path / "ckpt"
    best = tr.fit(data["train"], data["dev"], out)

    evals = dev_records(records)
    assert len(evals) == cfg.epochs
    assert best["weighted_f1"] == max(r["dev_weighted_f1"] for r in evals)
    untrained = classification_metrics(before["labels"], before["predictions"])["weighted_f1"]
    assert best["weighted_f1"] > 80.0, f"dev weighted F1 {best['weighted_f1']} (untrained {untrained})"
    assert best["weighted_f1"] > untrained + 20

    # checkpoint folder
    assert (out / "model.safetensors").is_file() and not (out / "fer.safetensors").exists()
    info = read_checkpoint(out)
    raw = json.loads((out / "checkpoint.json").read_text())
    assert raw == info
    assert info["labels"] == list(EMOTIONS) and info["seed"] == cfg.seed and info["params_hash"] == "abc"
    assert info["epoch"] == best["epoch"] and info["step"] == best["step"]
    assert info["metrics"] == {k: best[k] for k in ("weighted_f1", "macro_f1", "accuracy")}
    assert info["model"] == mcfg.to_dict() and info["fer"] is None
    assert not list(out.glob("*.tmp"))

    # reload into a fresh model: same predictions as the model that wrote the checkpoint
    model2 = create_model(ModelConfig.from_dict(info["model"]), pretrained_text=False)
    load_state(model2, out / "model.safetensors")
    tr2 = Trainer(model2, train_cfg(batch_dialogues=3), pad_id=PAD_ID)
    pred = tr2.predict(data["dev"])
    np.testing.assert_allclose(pred["probs"], tr.best_probs, atol=1e-5)
    again = classification_metrics(pred["labels"], pred["predictions"])
    assert again["weighted_f1"] == info["metrics"]["weighted_f1"]


def _run(data, tmp_path, name, seed, epochs=2, **kw):
    mcfg = tiny_config("A+V")
    records: list[dict] = []
    tr = new_trainer(mcfg, train_cfg(seed=seed, epochs=epochs, **kw), on_log=records.append)
    best = tr.fit(data["train"], data["dev"], tmp_path / name)
    return best, tr.predict(data["dev"])["probs"], records


def test_same_seed_same_run_other_seed_differs(data, tmp_path):
    b1, p1, r1 = _run(data, tmp_path, "a", seed=21)
    b2, p2, r2 = _run(data, tmp_path, "b", seed=21)
    assert b1 == b2 and dev_records(r1) == dev_records(r2)
    np.testing.assert_array_equal(p1, p2)
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    _, p3, _ = _run(data, tmp_path, "c", seed=22)
    assert not np.allclose(p1, p3, atol=1e-4)


def test_same_init_other_seed_differs(data, tmp_path):
    """Same initial weights, other run seed: the shuffle / dropout stream must change."""
    mcfg = tiny_config("A+V")
    probs = []
    for seed in (31, 32):
        tr = new_trainer(mcfg, train_cfg(seed=seed, epochs=1), init_seed=0)
        tr.fit(data["train"], data["dev"], tmp_path / f"s{seed}")
        probs.append(tr.predict(data["dev"])["probs"])
    assert not np.allclose(probs[0], probs[1], atol=1e-4)


def test_eval_every_validates_inside_epochs_once_per_step(data, tmp_path, monkeypatch):
    """eval_every 8 with 16 one-dialogue steps per epoch: dev at steps 8 and 16 of each epoch (the epoch's
    end is not validated twice), and an improvement in the middle of an epoch counts for patience:
    improving only at mid-epoch evaluations never stops a patience-1 run early."""
    calls: list[tuple[int, int]] = []
    scores = iter([50.0, 49.0, 51.0, 50.0, 52.0, 51.0, 53.0, 52.0])  # better at every mid-epoch evaluation

    def scripted(self, dev_ds, best, out_dir, epoch, step, ema=None):
        calls.append((epoch, step))
        f1 = next(scores)
        if f1 <= best["weighted_f1"]:
            return best, False
        return {"weighted_f1": f1, "epoch": epoch, "step": step}, True

    monkeypatch.setattr(Trainer, "_validate", scripted)
    tr = new_trainer(tiny_config("A+V"), train_cfg(epochs=4, batch_dialogues=1, eval_every=8, patience=1))
    best = tr.fit(data["train"], data["dev"], tmp_path / "ckpt")
    assert len(SIZES["train"]) == 16
    assert calls == [(e, 16 * e + k) for e in range(4) for k in (8, 16)]
    assert best == {"weighted_f1": 53.0, "epoch": 3, "step": 56}


def test_dev_evaluations_do_not_change_the_training(data, tmp_path):
    """The same run evaluated on dev once per epoch or every 3 steps trains the same weights."""
    weights = []
    for every in (0, 3):
        tr = new_trainer(tiny_config("T+A"), train_cfg(epochs=2, batch_dialogues=2, eval_every=every, patience=5))
        tr.fit(data["train"], data["dev"], tmp_path / f"every-{every}")
        weights.append({k: v.detach().clone() for k, v in tr.model.state_dict().items()})
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k


def test_parameter_ema_follows_the_recursion_and_swaps_back():
    from stage2_mer.train.ema import ParameterEMA

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    net[1].bias.requires_grad_(False)  # frozen: not averaged
    ema = ParameterEMA(net, decay=0.9)
    trainable = [p for p in net.parameters() if p.requires_grad]
    expected = [p.detach().clone() for p in trainable]
    for n in range(1, 31):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        ema.update()
        d = min(0.9, (1 + n) / (10 + n))  # the warm-up of the decay, then 0.9
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, trainable)]
    trained = [p.detach().clone() for p in net.parameters()]
    with ema.applied():
        for p, e in zip(trainable, expected):
            torch.testing.assert_close(p.detach(), e, atol=1e-5, rtol=1e-5)
        assert torch.equal(net[1].bias, trained[-1])
    for p, t in zip(net.parameters(), trained):
        assert torch.equal(p.detach(), t)
    with pytest.raises(ValueError, match="decay"):
        ParameterEMA(net, decay=1.0)


def test_fit_with_ema_saves_the_averaged_weights(data, tmp_path):
    """train.ema: the dev evaluation and the saved checkpoint use the average of the weights after
    every optimizer step (computed here by hand from the steps), the model keeps training its own."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    after_steps: list[dict] = []
    tr = new_trainer(tiny_config("A+V"), train_cfg(epochs=1, batch_dialogues=2, ema=0.8, patience=1))
    names = [n for n, p in tr.model.named_parameters() if p.requires_grad]
    avg = {n: p.detach().clone() for n, p in tr.model.named_parameters() if p.requires_grad}
    handle = register_optimizer_step_post_hook(
        lambda opt, a, k: after_steps.append({n: p.detach().clone() for n, p in tr.model.named_parameters()}))
    try:
        tr.fit(data["train"], data["dev"], tmp_path / "ckpt")  # one evaluation, after the last step
    finally:
        handle.remove()
    assert len(after_steps) == 8  # 16 dialogues, 2 per step
    for k, w in enumerate(after_steps, start=1):
        d = min(0.8, (1 + k) / (10 + k))
        avg = {n: d * avg[n] + (1 - d) * w[n] for n in names}
    saved = copy.deepcopy(tr.model)
    load_state(saved, tmp_path / "ckpt" / "model.safetensors")
    saved_params = dict(saved.named_parameters())
    for n in names:
        torch.testing.assert_close(saved_params[n].detach(), avg[n], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(dict(tr.model.named_parameters())[n].detach(), after_steps[-1][n])
    assert any(not torch.allclose(avg[n], after_steps[-1][n], atol=1e-4) for n in names)


@pytest.mark.parametrize("patience", [1, 2])
def test_early_stopping_when_nothing_improves(data, tmp_path, patience):
    """lr 0: dev F1 never improves after the first evaluation -> stop after 1 + patience epochs."""
    records: list[dict] = []
    tr = new_trainer(tiny_config("A+V"), train_cfg(epochs=6, lr=0.0, lr_encoder=0.0, patience=patience),
                     on_log=records.append)
    w0 = {k: v.detach().clone() for k, v in tr.model.state_dict().items()}
    best = tr.fit(data["train"], data["dev"], tmp_path / "ckpt")
    evals = dev_records(records)
    assert [r["epoch"] for r in evals] == list(range(1 + patience))
    assert len({r["dev_weighted_f1"] for r in evals}) == 1
    assert best["epoch"] == 0 and read_checkpoint(tmp_path / "ckpt")["epoch"] == 0
    for k, v in tr.model.state_dict().items():
        assert torch.equal(v, w0[k]), k


@pytest.fixture
def step_hook():
    """Records every optimizer step (and a copy of the gradients of the first one)."""
    seen: list[dict] = []

    def hook(opt, args, kwargs):
        grads = None
        if not seen:
            grads = [p.grad.detach().clone() if p.grad is not None else None
                     for g in opt.param_groups for p in g["params"]]
        seen.append({"lrs": [g["lr"] for g in opt.param_groups], "grads": grads, "defaults": dict(opt.defaults)})

    from torch.optim.optimizer import register_optimizer_step_pre_hook

    handle = register_optimizer_step_pre_hook(hook)
    yield seen
    handle.remove()


@pytest.mark.parametrize("accum", [1, 2, 3])
def test_grad_accum_counts_optimizer_steps(data, tmp_path, step_hook, accum):
    n_train, epochs = len(SIZES["train"]), 2  # 16 dialogues, one per batch
    records: list[dict] = []
    tr = new_trainer(tiny_config("A+V"), train_cfg(epochs=epochs, batch_dialogues=1, grad_accum=accum, log_every=1,
                                                   warmup=0.0, patience=5), on_log=records.append)
    tr.fit(data["train"], data["dev"], tmp_path / "ckpt")
    per_epoch = math.ceil(n_train / accum)  # a trailing partial group also steps
    assert len(step_hook) == per_epoch * epochs
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == list(range(1, per_epoch * epochs + 1))
    # the schedule is as long as the steps taken: the last step runs at the last nonzero lr, ends at 0
    lrs = [r["lr"] for r in records if "loss" in r]
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert step_hook[-1]["lrs"][0] == pytest.approx(tr.cfg.lr / (per_epoch * epochs))
    assert step_hook[0]["lrs"][0] == pytest.approx(tr.cfg.lr)


def test_grad_accum_equals_a_bigger_batch(tmp_path, step_hook):
    """2 dialogues accumulated over 2 micro-batches == one batch of both (equal-length dialogues,
    no dropout anywhere, the RoBERTa's included): the first optimizer step sees the same gradients."""
    d = make_data({"train": [3] * 6, "dev": [3, 3]}, seed=4)
    no_dropout = {**TEXT_CONFIG, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    mcfg = tiny_config("T+A+V", dropout=0.0, text_config=no_dropout)
    grads = []
    for b, accum in ((2, 1), (1, 2)):
        step_hook.clear()
        tr = new_trainer(mcfg, train_cfg(epochs=1, batch_dialogues=b, grad_accum=accum, clip=0.0), init_seed=8)
        tr.fit(d["train"], d["dev"], tmp_path / f"b{b}")
        assert len(step_hook) == 3
        grads.append(step_hook[0]["grads"])
    assert len(grads[0]) == len(grads[1])
    n_checked = 0
    for g1, g2 in zip(*grads):
        if g1 is None or g2 is None:
            assert g1 is None and g2 is None
            continue
        torch.testing.assert_close(g2, g1, atol=1e-6, rtol=1e-4)
        n_checked += 1
    assert n_checked > 10


def test_fused_adamw_is_the_per_tensor_update():
    """adamw(fused=True) (torch's fused kernel) makes the per-tensor AdamW's updates, weight decay
    and two parameter groups included, up to float rounding."""
    from stage2_mer.train.loop import adamw

    torch.manual_seed(0)
    shapes = [(7, 5), (5,), (3, 4, 2)]
    init = [torch.randn(s) for s in shapes]
    grads = [[torch.randn(s) for s in shapes] for _ in range(5)]
    finals = []
    for fused in (True, False):
        params = [p.clone().requires_grad_(True) for p in init]
        opt = adamw([{"params": params[:2], "lr": 1e-2}, {"params": params[2:], "lr": 3e-3}], fused=fused,
                    weight_decay=0.01)
        assert bool(opt.defaults.get("fused")) is fused
        for step in grads:
            for p, g in zip(params, step):
                p.grad = g.clone()
            opt.step()
        finals.append([p.detach() for p in params])
    for a, b, p0 in zip(*finals, init):
        assert not torch.allclose(a, p0, atol=1e-3)
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("fused", [True, False])
def test_trainer_uses_the_configured_adamw(data, tmp_path, step_hook, fused):
    tr = new_trainer(tiny_config("A+V"), train_cfg(epochs=1, fused_adamw=fused))
    tr.fit(data["train"], data["dev"], tmp_path / "ckpt")
    assert step_hook and all(bool(s["defaults"].get("fused")) is fused for s in step_hook)


def test_precision_may_change_between_trainers_of_one_process(data, tmp_path):
    """Accelerate keeps one state per process: an fp32 trainer, then a bf16 one, then fp32 again
    (a notebook, a sweep) must each train in the precision their config asks for; bf16 runs the
    model's layers under CPU autocast (the head's output is bfloat16 inside the forward)."""
    seen = {}
    for i, precision in enumerate(("fp32", "bf16", "fp32")):
        tr = new_trainer(tiny_config("T+A"), train_cfg(epochs=1, precision=precision))
        dtypes = set()
        tr.model.classifier.register_forward_hook(lambda mod, inp, out, d=dtypes: d.add(out.dtype))
        best = tr.fit(data["train"], data["dev"], tmp_path / f"ckpt{i}")
        assert math.isfinite(best["weighted_f1"])
        seen[i] = (tr.acc.mixed_precision, dtypes)
    assert seen == {0: ("no", {torch.float32}), 1: ("bf16", {torch.bfloat16}), 2: ("no", {torch.float32})}


def test_precision_change_inside_a_distributed_run_is_a_config_error(monkeypatch):
    """Inside a distributed run the process-wide Accelerate state is shared by every process: a
    trainer asking for another precision must fail with a ConfigError naming the settings, not
    reset the state under the other processes (nor surface Accelerate's bare ValueError)."""
    from accelerate import PartialState

    from stage2_mer.train.loop import make_accelerator

    assert make_accelerator("fp32", cpu=True).mixed_precision == "no"
    monkeypatch.setattr(PartialState, "use_distributed", property(lambda self: True))
    with pytest.raises(ConfigError, match=r"train.precision 'bf16'.*distributed"):
        make_accelerator("bf16", cpu=True)
    monkeypatch.undo()
    assert make_accelerator("bf16", cpu=True).mixed_precision == "bf16"  # outside one: reset, as before


# ------------------------------------------------------------------------------ FER coupling


@pytest.fixture(scope="module")
def fer_model():
    import warnings

    from stage2_mer.fer import FERConfig, build_fer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        return build_fer(FERConfig(random_init=True, image_size=CROP, drop_path=0.0)).eval()


@pytest.fixture(scope="module")
def fer_data():
    # train: one dialogue of 3 utterances with 2, 3 and 0 face frames; dev: one utterance
    table = make_table({"train": [3], "dev": [1]}, seed=9)
    visual = FakeReader(table, FEAT_DIM, 1, 3, seed=1)
    lengths = {"train_dia0_utt0": 2, "train_dia0_utt1": 3, "train_dia0_utt2": 0, "dev_dia0_utt0": 2}
    rng = np.random.default_rng(3)
    visual.data = {u: rng.normal(0.0, 1.0, (n, FEAT_DIM)).astype(np.float32) for u, n in lengths.items()}
    faces = FakeFaces(visual, seed=2)
    return {s: MELDDialogues(table, s, visual=visual, faces=faces) for s in ("train", "dev")}


def _expected_keep(imp: torch.Tensor, mask: torch.Tensor, thr: float) -> torch.Tensor:
    """Per utterance: frames with importance > thr; none -> all valid frames (written out loop-wise)."""
    keep = torch.zeros_like(mask)
    for u in range(mask.shape[0]):
        valid = mask[u].nonzero().flatten().tolist()
        passing = [k for k in valid if float(imp[u, k]) > thr]
        for k in passing or valid:
            keep[u, k] = True
    return keep


def test_face_inputs_fill_face_probs(fer_model, fer_data):
    from stage2_mer.fer import fer_distributions

    ds = fer_data["train"]
    batch = collate([ds[0]], pad_id=PAD_ID)
    mask, visual = batch["visual_mask"].clone(), batch["visual"].clone()
    assert mask.sum(1).tolist() == [2, 3, 0] and batch["faces"].shape == (5, CROP, CROP, 3)
    flat = fer_distributions(fer_model, batch["faces"])  # (5, 7), the frames in order
    imp_flat = flat.square().sum(-1)
    top = imp_flat.sort(descending=True).values
    thr = float(top[0] + top[1]) / 2  # only the most confident frame passes; its utterance drops the rest
    imp = torch.zeros(mask.shape)
    imp[mask] = imp_flat
    keep = _expected_keep(imp, mask, thr)
    assert int(keep.sum()) < int(mask.sum()), "the threshold must drop frames for this test to mean anything"

    mcfg = tiny_config("V", fer_dim=7)
    tr = new_trainer(mcfg, train_cfg(fer_threshold=thr), fer=fer_model)
    tr._face_inputs(batch, training=False)
    fp, vm, vis = batch["face_probs"], batch["visual_mask"], batch["visual"]
    assert fp.shape == (3, mask.shape[1], 7) and vm.shape == mask.shape and vis.shape == visual.shape
    assert vm.sum(1).tolist() == keep.sum(1).tolist()
    for u in range(3):
        n = int(vm[u].sum())
        assert vm[u, :n].all() and not vm[u, n:].any(), "kept frames are packed to the front"
        rows = keep[u].nonzero().flatten()
        frame_ids = [int(mask[:u].sum()) + int(mask[u, :k].sum()) for k in rows.tolist()]  # rows of `flat`
        torch.testing.assert_close(fp[u, :n], flat[frame_ids], atol=1e-6, rtol=0)
        torch.testing.assert_close(vis[u, :n], visual[u, rows], atol=0, rtol=0)
        assert torch.allclose(fp[u, :n].sum(-1), torch.ones(n), atol=1e-5)
        assert (fp[u, n:] == 0).all() and (vis[u, n:] == 0).all()
    assert not vm[2].any() and (fp[2] == 0).all()
    assert tr.model(batch).shape == (3, 7)  # the model accepts what _face_inputs built

    # training with Gumbel samples -> still distributions on kept frames, zeros elsewhere
    batch = collate([ds[0]], pad_id=PAD_ID)
    tr.cfg = train_cfg(fer_threshold=thr, fer_samples=1)
    tr._face_inputs(batch, training=True)
    fp, vm = batch["face_probs"], batch["visual_mask"]
    assert torch.allclose(fp[vm].sum(-1), torch.ones(int(vm.sum())), atol=1e-5)
    assert (fp[~vm] == 0).all() and 1 <= int(vm.sum()) <= 5
    assert not fer_model.training


class UniformFER(torch.nn.Module):
    """A FER network that is sure of nothing: zero logits (a uniform distribution) for every face."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.cfg = type("Cfg", (), {"image_size": CROP, "channel_order": "rgb"})()

    def forward(self, x):  # (N, 3, S, S) -> (N, 7)
        return x.new_zeros((x.shape[0], 7)) + 0.0 * self.w


@pytest.mark.parametrize("samples", [0, 1, 3])
def test_frame_filter_one_rule_in_training_and_evaluation(samples):
    """Issue 19 item 1: the share of frames the filter keeps is the same in a training step and at
    evaluation (FacialMMT's defect fixed earlier here had noise only in training: a uniform FER
    passed ~87 % of frames in training and none at evaluation)."""
    data = make_data({"train": [5] * 8}, faces=True, visual_len=(4, 9))
    tr = new_trainer(tiny_config("V", fer_dim=7), train_cfg(fer_samples=samples, fer_threshold=0.2), fer=UniformFER())
    ds = data["train"]
    rates, passing = {}, {}
    for training in (True, False):
        torch.manual_seed(0)
        batch = collate([ds[i] for i in range(len(ds))], pad_id=PAD_ID)
        valid = int(batch["visual_mask"].sum())
        tr._filter_counts = {}
        tr._face_inputs(batch, training=training)
        rates[training] = int(batch["visual_mask"].sum()) / valid
        passing[training] = float(importance_of(batch).mean())
    if samples == 0:
        assert rates == {True: 1.0, False: 1.0}  # nothing passes 0.2 -> every utterance falls back to all
    else:
        assert rates[True] < 0.99 and abs(rates[True] - rates[False]) < 0.1, rates
    assert abs(passing[True] - passing[False]) < 0.05, passing


def importance_of(batch) -> torch.Tensor:
    """sum p^2 of the kept frames' distributions."""
    return batch["face_probs"][batch["visual_mask"]].square().sum(-1)


def test_predict_reports_the_kept_fraction_and_is_reproducible_with_samples():
    data = make_data({"train": [4] * 3, "dev": [5] * 4}, faces=True, visual_len=(3, 8))
    tr = new_trainer(tiny_config("V", fer_dim=7), train_cfg(fer_samples=2), fer=UniformFER())
    a, b = tr.predict(data["dev"]), tr.predict(data["dev"])
    np.testing.assert_array_equal(a["probs"], b["probs"])  # the evaluation noise is seeded
    f = a["fer_filter"]
    assert f == b["fer_filter"]
    assert f["valid"] == sum(len(data["dev"].visual.read(u)) for u in data["dev"].visual.utt_ids()
                             if u.startswith("dev"))
    assert f["kept_fraction"] == round(f["kept"] / f["valid"], 4) and 0 < f["kept_fraction"] < 1
    assert f["passing"] <= f["kept"] <= f["valid"] and f["utterances"] == 20
    assert "fer_filter" not in new_trainer(tiny_config("V"), train_cfg()).predict(data["dev"])  # no FER, no counts


@pytest.mark.parametrize("schedule", ["interleave", "epoch_pass"])
def test_aux_schedule_volume(fer_model, fer_data, tmp_path, schedule):
    """Issue 19 item 3: ``epoch_pass`` makes one full pass over the Aff-Wild2 loader per epoch
    (FacialMMT's volume), ``interleave`` ``aux_ratio`` steps per MER optimizer step."""
    from torch.utils.data import TensorDataset

    aux = TensorDataset(torch.rand(23, 3, CROP, CROP) * 2 - 1, torch.randint(0, 7, (23,)))
    cfg = train_cfg(epochs=2, aux_schedule=schedule, aux_batch=5, aux_ratio=2.0, batch_dialogues=1)
    tr = new_trainer(tiny_config("V", fer_dim=7), cfg, fer=copy.deepcopy(fer_model), aux_data=aux)
    steps = []
    real = tr._aux_step
    tr._aux_step = lambda a, batch=None: steps.append(len((batch or (None,))[0]) if batch else 0) or real(a, batch)
    tr.fit(fer_data["train"], fer_data["dev"], tmp_path / "ckpt")
    mer_steps = 2 * 1  # fer_data's train split: one dialogue, batch_dialogues 1
    if schedule == "epoch_pass":
        assert steps == [5, 5, 5, 5] * 2  # drop_last: 4 full batches of 5 out of 23, each epoch
    else:
        assert len(steps) == int(cfg.aux_ratio * mer_steps)


def test_preset_facialmmt(caplog):
    """Issue 19 item 4: one switch sets FacialMMT's train values (and logs what it changed)."""
    from stage2_mer.train import PRESETS, apply_preset

    base = train_cfg(speaker_names=True, lr=1e-4, lr_encoder=2e-5, batch_dialogues=2)
    assert apply_preset(base) is base
    with caplog.at_level("INFO", logger="stage2_mer.train.loop"):
        cfg = apply_preset(dataclasses.replace(base, preset="facialmmt"))
    for key, value in PRESETS["facialmmt"].items():
        assert getattr(cfg, key) == value, key
    assert (cfg.speaker_names, cfg.lr, cfg.lr_encoder, cfg.batch_dialogues, cfg.aux_batch, cfg.fer_samples) == \
        (False, 7e-6, 7e-6, 1, 150, 1)
    assert cfg.epochs == base.epochs and cfg.cpu  # keys outside the preset stay
    assert "train.speaker_names True -> False" in caplog.text
    with pytest.raises(ConfigError, match="preset"):
        TrainConfig(preset="paper")


def test_face_inputs_reject_misaligned_crops(fer_model, fer_data):
    batch = collate([fer_data["train"][0]], pad_id=PAD_ID)
    batch["faces"] = batch["faces"][:-1]
    tr = new_trainer(tiny_config("V", fer_dim=7), train_cfg(), fer=fer_model)
    with pytest.raises(ValueError, match="face crops"):
        tr._face_inputs(batch, training=False)


@pytest.mark.parametrize("joint", [False, True])
def test_fer_joint_decides_whether_fer_trains(fer_model, fer_data, tmp_path, joint):
    fer = copy.deepcopy(fer_model)
    before = {k: v.detach().clone() for k, v in fer.state_dict().items()}
    mcfg = tiny_config("V", fer_dim=7)
    cfg = train_cfg(epochs=1, fer_joint=joint, aux_lr=1e-3, warmup=0.0, fer_threshold=0.0)
    tr = new_trainer(mcfg, cfg, fer=fer, fer_config={"image_size": CROP})
    model_before = [p.detach().clone() for p in tr.model.parameters()]
    tr.fit(fer_data["train"], fer_data["dev"], tmp_path / "ckpt")
    after = fer.state_dict()
    changed = [k for k, v in after.items() if not torch.equal(v, before[k])]
    if joint:
        params = {k for k, _ in fer.named_parameters()}
        assert len(set(changed) & params) > 10, changed
        assert "head.2.weight" in changed and any(k.startswith("backbone.") for k in changed)
    else:
        assert changed == [], f"frozen FER changed: {changed[:5]}"
    assert any(not torch.equal(a, b) for a, b in zip(model_before, tr.model.parameters())), "the MER model trains"
    info = read_checkpoint(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "fer.safetensors").is_file() and info["fer"] == {"image_size": CROP}


# ------------------------------------------------------------------------------ distributed


DDP_SCRIPT = """
import json, os, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
import numpy as np, torch
torch.set_num_threads(1)
import test_trainer as T
from stage2_mer.train import Trainer

out = Path({out!r})
rank = int(os.environ.get("RANK", "0"))
data = T.make_data(T.SIZES)
mcfg = T.tiny_config("T+A+V")
from torch.optim.optimizer import register_optimizer_step_pre_hook
steps = []
handle = register_optimizer_step_pre_hook(lambda o, a, k: steps.append(o.param_groups[0]["lr"]))
records = []
tr = T.new_trainer(mcfg, T.train_cfg(epochs=2, batch_dialogues=3, log_every=1, warmup=0.0), on_log=records.append)
best = tr.fit(data["train"], data["dev"], out / f"ckpt-rank{{rank}}")
pred = tr.predict(data["dev"])
np.save(out / f"probs-rank{{rank}}.npy", pred["probs"])
(out / f"rank{{rank}}.json").write_text(json.dumps({{
    "world": tr.acc.num_processes, "process_index": tr.acc.process_index, "steps": len(steps),
    "last_lr": steps[-1], "best": {{k: best[k] for k in ("weighted_f1", "epoch")}},
    "records": records, "n_pred": len(pred["utt_ids"])}}))
"""


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path, data):
    """Two CPU processes (gloo): both ranks finish, replicas stay identical, only the main process
    writes the checkpoint and logs, the LR schedule is as long as the sharded steps.

    ``accelerate launch --cpu --num_processes 2`` starts ONE process (accelerate's simple launcher
    only forks CPU ranks through mpirun), so the ranks come from the torchrun-based launcher
    (``--multi_gpu``, which needs no GPU) and ``train.cpu: true`` makes them MULTI_CPU / gloo."""
    pytest.importorskip("accelerate")
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "true",
           "HF_HOME": str(tmp_path / "hf"), "CUDA_VISIBLE_DEVICES": ""}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "--main_process_port", str(_free_port()), str(script)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    print(f"DDP run: {took:.1f} s")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2] and [r["process_index"] for r in ranks] == [0, 1]
    folders = sorted(p.name for p in tmp_path.glob("ckpt-rank*"))
    assert folders == ["ckpt-rank0"], folders
    info = read_checkpoint(tmp_path / "ckpt-rank0")
    assert info["metrics"]["weighted_f1"] == ranks[0]["best"]["weighted_f1"]
    # replicas in sync: the same dev predictions on both ranks
    p0, p1 = (np.load(tmp_path / f"probs-rank{r}.npy") for r in (0, 1))
    assert ranks[0]["n_pred"] == ranks[1]["n_pred"] == sum(SIZES["dev"])
    np.testing.assert_allclose(p0, p1, atol=1e-6)
    # sharded loader: each rank does ceil(batches / 2) steps per epoch; the LR still ends at 0
    n_batches = len(SIZES["train"]) // 3 + (len(SIZES["train"]) % 3 > 0)  # max_utterances is not binding here
    assert ranks[0]["steps"] == ranks[1]["steps"] == 2 * math.ceil(n_batches / 2)
    lr_recs = [r["lr"] for r in ranks[0]["records"] if "lr" in r]
    assert lr_recs and lr_recs[-1] == pytest.approx(0.0, abs=1e-12)
    assert not any("lr" in r for r in ranks[1]["records"]), "on_log runs on the main process only"


def test_ddp_script_is_valid_python(tmp_path):
    """The slow DDP test's script compiles (a cheap guard for the fast run)."""
    src = DDP_SCRIPT.format(tests="/x", out=str(tmp_path))
    compile(textwrap.dedent(src), "ddp_train.py", "exec")
