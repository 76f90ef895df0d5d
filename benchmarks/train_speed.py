"""Training throughput (utterances/s): FacialMMT's batch 1 (one utterance) vs dialogue batches.

    HF_HUB_OFFLINE=1 python benchmarks/train_speed.py --steps 6 --threads 2

Goes through the REAL training path: ``MELDDialogues`` -> ``DialogueBatchSampler`` -> ``collate``
-> ``Trainer.fit`` (Accelerate, AdamW with two learning rates, warmup/decay schedule, clipping),
on a T+A+V FacialMMT model with a RANDOM RoBERTa text encoder (``model.text_config``, RoBERTa's
50265-token vocabulary) and random features of MELD-like sizes: ``--utterances`` (10) utterances
per dialogue, ~12 words each, audio ~150 frames x 768 (wav2vec2-base), visual ~60 frames x 512
(InceptionResNetV1), lengths varying +-50 % per utterance. The FER branch is off (``fer_dim: 0``).

The default model is FacialMMT in miniature: every width divided by 8, every depth kept (reference
§3): the text encoder 24 layers x 128 (RoBERTa-large: 24 x 1024), the new layers 96 wide (768),
5 audio / 2 visual layers, two 2-layer cross-modal stages. So the text encoder keeps its share of
the compute and of the parameters (the optimizer's work), as in the real model.
``--text-layers 2 --text-hidden 128 --hidden 128`` gives a model whose audio branch dominates
instead (the text encoder is then ~10 % of a step).

Each run trains one epoch of ``warmup + steps`` optimizer steps' worth of data; the ``on_log``
callback (``log_every: 1``) time-stamps every optimizer step, and the ``--steps`` steps after the
``--warmup`` first ones are timed (data loading + forward + backward + clip + AdamW + scheduler;
the dev evaluation and checkpoint after the epoch are outside the window). Three runs:

- ``facialmmt``: FacialMMT's own setting (reference §4.1 / §8.2), through the same trainer
  (``OneUtterance``): batch 1 = ONE utterance per forward with its whole dialogue re-encoded for
  it, gradients accumulated over ``--facialmmt-accum`` (4) utterances per optimizer step, and
  AdamW without the fused kernel (``--facialmmt-optimizer unfused``: on the CPU torch then updates
  one tensor at a time, as FacialMMT's ``transformers.AdamW`` does; on a GPU it uses its
  multi-tensor kernel; ``fused`` gives FacialMMT the project's fused kernel);
- ``dialogue``: one dialogue per step, encoded once, all its utterances classified;
- ``batched``: ``--batch-dialogues`` dialogues per step (the default batch: ``train.batch_dialogues``
  of params.yaml).

Prints utterances/s and ms per optimizer step for each and the speedup of the default batch over
FacialMMT's batch 1 (goal >= 5x). On a CPU a step is compute-bound: batching more dialogues adds
little (~1x over one dialogue); the gain is the dialogue encoded once instead of once per utterance, plus the
per-step costs (AdamW over every parameter, clipping, Python) paid once per step instead of once
per utterance. On a GPU (``--cuda``) a small step is kernel-launch bound and batching adds more.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

WORDS = [f"w{i}" for i in range(2000)]
#: FacialMMT's own schedule at batch 1 (reference §4.1 (b)): gradients accumulated over 4 utterances,
#: AdamW without the fused kernel (its transformers.AdamW); ``run(..., **FACIALMMT_RUN)``
FACIALMMT_RUN = {"accum": 4, "fused": False}


def make_tokenizer():
    """A word-level RoBERTa-layout tokenizer (``<s> a </s></s> b </s>``) in memory (no download)."""
    from stage2_mer.data import word_level_tokenizer

    return word_level_tokenizer(WORDS)


class BankReader:
    """FeatureReader-like (``read``, ``utt_ids``): each utterance gets a length around ``mean_len``
    (+-50 %) and a slice of a shared random bank (no per-read generation cost, little memory)."""

    def __init__(self, utt_ids: list[str], mean_len: int, dim: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.max_len = int(mean_len * 1.5)
        self.bank = rng.standard_normal((16, self.max_len, dim), dtype=np.float32)
        self.items = {u: (int(rng.integers(16)), int(rng.integers(max(1, mean_len // 2), self.max_len + 1)))
                      for u in utt_ids}

    def utt_ids(self) -> list[str]:
        return sorted(self.items)

    def read(self, utt: str) -> np.ndarray:
        k, n = self.items[utt]
        return self.bank[k, :n]


def make_split(split: str, n_dialogues: int, n_utt: int, rng: np.random.Generator) -> list[dict]:
    rows = []
    for d in range(n_dialogues):
        for u in range(n_utt):
            words = rng.choice(WORDS, size=int(rng.integers(6, 19)))
            rows.append({"split": split, "dialogue_id": d, "utterance_id": u, "utt_id": f"{split}_dia{d}_utt{u}",
                         "speaker": "ross", "text": " ".join(words), "label": int(rng.integers(7))})
    return rows


class OneUtterance:
    """FacialMMT's training unit (reference §4.1, §8.2): ONE target utterance per item, its whole
    dialogue as the text context, so a batch of 1 re-encodes the dialogue for every utterance.
    Wraps a :class:`MELDDialogues`; the first ``limit`` utterances only."""

    def __init__(self, ds, limit: int) -> None:
        self.ds = ds
        self.index = [(i, k) for i in range(len(ds)) for k in range(ds.n_utterances(i))][:limit]

    def __len__(self) -> int:
        return len(self.index)

    def n_utterances(self, i: int) -> int:
        return 1

    def __getitem__(self, j: int):
        from stage2_mer.data import DialogueItem

        i, k = self.index[j]
        it = self.ds[i]
        return DialogueItem(it.key, [it.utt_ids[k]], [it.labels[k]], input_ids=it.input_ids, spans=[it.spans[k]],
                            audio=[it.audio[k]], visual=[it.visual[k]])


def model_config(args):
    """The T+A+V ``ModelConfig`` of ``args`` (``hidden``, ``text_hidden``, ``text_layers``, ``vocab``,
    ``audio_len``, ``visual_len``): a random RoBERTa-layout text encoder, no FER branch."""
    from stage2_mer.model import ModelConfig

    h, th = args.hidden, args.text_hidden
    heads = max(1, h // 32)
    text_config = {"model_type": "roberta", "hidden_size": th, "num_hidden_layers": args.text_layers,
                   "num_attention_heads": max(1, th // 32), "intermediate_size": 4 * th, "vocab_size": args.vocab,
                   "max_position_embeddings": 514, "pad_token_id": 1}
    return ModelConfig(modalities="T+A+V", text_encoder=None, text_config=text_config, hidden=h, heads=heads,
                       ffn=4 * h, cross_heads=heads, fer_dim=0, audio_dim=768, visual_dim=512,
                       max_audio_len=int(args.audio_len * 1.5) + 1, max_visual_len=int(args.visual_len * 1.5) + 1)


def run(batch: int, args, tok, model_cfg, per_utterance: bool = False, accum: int = 1, fused: bool = True) -> dict:
    import pandas as pd
    import torch

    from stage2_mer.data import DialogueTokenizer, MELDDialogues
    from stage2_mer.model import create_model
    from stage2_mer.train import TrainConfig, Trainer

    n_steps = args.warmup + args.steps
    rng = np.random.default_rng(0)
    table = pd.DataFrame(make_split("train", n_steps * batch, args.utterances, rng)
                         + make_split("dev", 1, args.utterances, rng))
    ids = table["utt_id"].tolist()
    audio = BankReader(ids, args.audio_len, 768, seed=1)
    visual = BankReader(ids, args.visual_len, 512, seed=2)
    dtok = DialogueTokenizer(tok, max_tokens=512)
    data = {s: MELDDialogues(table, s, tokenizer=dtok, audio=audio, visual=visual) for s in ("train", "dev")}
    if per_utterance:  # FacialMMT: batch = `batch` utterances, each with its own dialogue encoding
        data["train"] = OneUtterance(data["train"], n_steps * batch * accum)
    per_batch = batch if per_utterance else batch * args.utterances
    per_step = per_batch * accum  # utterances per optimizer step
    cfg = TrainConfig(epochs=1, batch_dialogues=batch, max_utterances=per_batch, grad_accum=accum, lr=1e-4,
                      lr_encoder=1e-5, seed=1, log_every=1, cpu=not args.cuda, max_tokens=512, patience=1,
                      fused_adamw=fused)
    torch.manual_seed(0)
    model = create_model(model_cfg)
    stamps: list[tuple[int, float]] = []

    def on_log(rec: dict) -> None:
        if "loss" in rec:
            if args.cuda:
                torch.cuda.synchronize()
            stamps.append((int(rec["step"]), time.perf_counter()))

    trainer = Trainer(model, cfg, model_config=model_cfg.to_dict(), pad_id=dtok.pad, on_log=on_log)
    with tempfile.TemporaryDirectory() as tmp:
        trainer.fit(data["train"], data["dev"], Path(tmp) / "ckpt")
    if len(stamps) != n_steps:
        raise RuntimeError(f"expected {n_steps} optimizer steps, saw {len(stamps)}")
    t0, t1 = stamps[args.warmup - 1][1] if args.warmup else None, stamps[-1][1]
    if t0 is None:
        raise SystemExit("--warmup must be >= 1 (the first step's start is not time-stamped)")
    secs = t1 - t0
    utts = args.steps * per_step
    return {"batch": batch, "utts": utts, "secs": secs, "utt_s": utts / secs, "ms_step": 1000 * secs / args.steps}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=6, help="timed optimizer steps per batch size")
    ap.add_argument("--warmup", type=int, default=1, help="untimed optimizer steps first")
    ap.add_argument("--batch-dialogues", type=int,
                    help="the default batch, in dialogues (default: train.batch_dialogues of --params)")
    ap.add_argument("--params", type=Path, default=Path(__file__).resolve().parents[1] / "params.yaml")
    ap.add_argument("--hidden", type=int, default=96, help="model.hidden, the new layers' width (FacialMMT 768)")
    ap.add_argument("--text-hidden", type=int, default=128, help="the text encoder's width (RoBERTa-large 1024)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--utterances", type=int, default=10, help="utterances per dialogue")
    ap.add_argument("--audio-len", type=int, default=150, help="mean audio frames per utterance")
    ap.add_argument("--visual-len", type=int, default=60, help="mean visual frames per utterance")
    ap.add_argument("--text-layers", type=int, default=24, help="text encoder layers (RoBERTa-large 24)")
    ap.add_argument("--vocab", type=int, default=50265, help="text encoder vocabulary (RoBERTa: 50265)")
    ap.add_argument("--cuda", action="store_true", help="train on the GPU (default: CPU)")
    ap.add_argument("--facialmmt-accum", type=int, default=FACIALMMT_RUN["accum"],
                    help="FacialMMT's gradient accumulation: utterances per optimizer step at batch 1")
    ap.add_argument("--facialmmt-optimizer", choices=("unfused", "fused"),
                    default="fused" if FACIALMMT_RUN["fused"] else "unfused",
                    help="AdamW of the FacialMMT run: unfused (on the CPU one tensor at a time, as FacialMMT's "
                         "transformers.AdamW) or the project's fused kernel (benchmarks/README.md's earlier "
                         "figures ran FacialMMT with the fused kernel and no accumulation)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    for name in ("stage2_mer", "accelerate", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)

    import torch

    from stage1_face_extraction.common.config import load_section
    from stage2_mer.train import TrainConfig

    if args.batch_dialogues is None:
        args.batch_dialogues = load_section(args.params, "train", TrainConfig).batch_dialogues
    torch.set_num_threads(args.threads)
    h, th = args.hidden, args.text_hidden
    model_cfg = model_config(args)
    tok = make_tokenizer()
    device = torch.cuda.get_device_name() if args.cuda else f"CPU, {args.threads} thread(s)"
    print(f"FacialMMT T+A+V, hidden {h}, {model_cfg.audio_layers} audio / {model_cfg.visual_layers} visual / "
          f"{model_cfg.cross_layers} cross layers, RoBERTa {args.text_layers} layers x {th} (vocab {args.vocab}); "
          f"{args.utterances} utt/dialogue, audio ~{args.audio_len}x768, visual ~{args.visual_len}x512; {device}")
    print(f"path: MELDDialogues -> DialogueBatchSampler -> collate -> Trainer.fit (AdamW, clip, schedule); "
          f"{args.warmup} warm-up + {args.steps} timed optimizer steps per batch size")
    results = {}
    fmmt = {"accum": args.facialmmt_accum, "fused": args.facialmmt_optimizer == "fused"}
    runs = [("facialmmt", 1, True, fmmt), ("dialogue", 1, False, {}), ("batched", args.batch_dialogues, False, {})]
    for key, b, per_utt, extra in runs:
        t = time.perf_counter()
        r = run(b, args, tok, model_cfg, per_utterance=per_utt, **extra)
        results[key] = r
        what = (f"batch {b} utterance x {args.facialmmt_accum} accumulated, {args.facialmmt_optimizer} AdamW "
                f"(FacialMMT)" if per_utt
                else f"batch {b} dialogue(s) ({b * args.utterances} utt/step, each dialogue encoded once)")
        print(f"{what:<72} {r['utt_s']:8.1f} utt/s, {r['ms_step']:8.1f} ms/step  "
              f"({r['utts']} utterances in {r['secs']:.1f} s; run {time.perf_counter() - t:.0f} s)", flush=True)
    base = results["facialmmt"]["utt_s"]
    big = results["batched"]["utt_s"]
    print(f"speedup, default batch ({args.batch_dialogues} dialogues) vs FacialMMT's batch 1: {big / base:.2f}x "
          f"(goal >= 5x: {'met' if big / base >= 5 else 'NOT met'})")
    print(f"speedup, default batch vs 1 dialogue per batch: {big / results['dialogue']['utt_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
