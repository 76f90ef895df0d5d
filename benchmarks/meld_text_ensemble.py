"""Average the class probabilities of several text models trained by ``meld_text.py`` (REAL MELD).

    HF_HUB_OFFLINE=1 python benchmarks/meld_text_ensemble.py --csv-dir ../shared/data/meld \\
        --members runs/dialogue runs/past3 runs/past0 --json ensemble.json

Each member is a checkpoint folder written by ``meld_text.py --out DIR`` (its best dev evaluation);
its ``checkpoint.json`` records the model and how its text rows were made (``inputs.text``: the
context ``dialogue`` / ``past:N[,future:M]``, speaker names, max tokens), so every member is run on
the dev and test utterances with its own layout. The ensemble's prediction is the argmax of the
members' MEAN probability, equal weights: nothing is fitted, on dev or on test. Prints dev and test
weighted F1 (and macro F1, accuracy) of every member and of the ensemble; ``--json`` writes them.

Why (issue 19, item 8): members that read the dialogue differently make different mistakes.
Averaging models of the SAME layout (``past:3``, three seeds) gained ~0.3 over their mean; the
whole-dialogue, ``past:3`` and ``past:0`` models of one seed gain 1.1-1.5: test 62.44 / 62.67 /
62.66 on seeds 1111 / 2222 / 3333, 62.59 +- 0.11 (the three layouts were chosen on seed 1111's
figures; seeds 2222 and 3333 ran after that; the commands are in ``meld_text.py``). Members may
use different encoders: an all-mpnet-base-v2 model of the utterance alone with the whole-dialogue
and the no-names utterance MiniLM models gives 63.20 / 62.80 / 62.81, 62.94 +- 0.19 (chosen on
seed 1111's dev).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def member_probs(folder: Path, table, threads: int) -> dict:
    """``{split: (utt_ids, labels, probs (U, 7))}`` on dev and test for one checkpoint folder."""
    import numpy as np
    import torch
    from transformers import AutoTokenizer

    from stage2_mer.data import DialogueTokenizer, MELDDialogues
    from stage2_mer.train import TrainConfig, Trainer, load_models
    from stage2_mer.train.checkpoint import checkpoint_data_settings

    torch.set_num_threads(threads)
    model, cfg, _, _, info = load_models(folder)  # the architecture from checkpoint.json, its weights
    if not (info.get("inputs") or {}).get("text"):
        raise SystemExit(f"{folder}/checkpoint.json does not record its text settings (inputs.text): "
                         "train the member with this version of meld_text.py")
    tcfg = dataclasses.replace(TrainConfig(aux_ratio=0.0), **checkpoint_data_settings(info))  # fp32 inference
    tok = AutoTokenizer.from_pretrained(cfg.text_encoder, local_files_only=True)
    dtok = DialogueTokenizer(tok, max_tokens=tcfg.max_tokens, speaker_names=tcfg.speaker_names,
                             context=tcfg.text_context)
    trainer = Trainer(model, tcfg, model_config=cfg.to_dict(), pad_id=dtok.pad)
    out = {}
    for split in ("dev", "test"):
        pred = trainer.predict(MELDDialogues(table, split, tokenizer=dtok))
        out[split] = (list(pred["utt_ids"]), np.asarray(pred["labels"]), np.asarray(pred["probs"], dtype=np.float64))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv-dir", type=Path, required=True, help="folder of {train,dev,test}_sent_emo.csv")
    ap.add_argument("--members", type=Path, nargs="+", required=True, help="checkpoint folders (meld_text.py --out)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--json", type=Path, help="also write the metrics here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for folder in args.members:
        if not ((folder / "model.safetensors").is_file() and (folder / "checkpoint.json").is_file()):
            print(f"{folder}: not a checkpoint folder (model.safetensors + checkpoint.json)", file=sys.stderr)
            return 2
    if not (args.csv_dir / "train_sent_emo.csv").is_file():
        print(f"no MELD CSVs in {args.csv_dir}", file=sys.stderr)
        return 2
    import numpy as np

    from stage1_face_extraction.meld import DataConfig, build_utterance_table
    from stage2_mer.train import classification_metrics

    t0 = time.perf_counter()
    logging.getLogger("stage1_face_extraction.meld").setLevel(logging.ERROR)  # text only: no clips expected
    table = build_utterance_table(DataConfig(meld_root=str(args.csv_dir), csv_dir=str(args.csv_dir)))
    runs = {str(f): member_probs(f, table, args.threads) for f in args.members}
    res: dict = {"members": {}, "ensemble": {}}
    for split in ("dev", "test"):
        ref_ids, ref_labels, _ = next(iter(runs.values()))[split]
        order = np.argsort(ref_ids)
        mean = np.zeros((len(ref_ids), 7))
        for name, r in runs.items():
            ids, labels, probs = r[split]
            idx = np.argsort(ids)
            if sorted(ids) != sorted(ref_ids) or not np.array_equal(labels[idx], ref_labels[order]):
                raise SystemExit(f"{name}: its {split} utterances or labels differ from the first member's")
            mean[order] += probs[idx] / len(runs)
            m = classification_metrics(labels.tolist(), probs.argmax(1).tolist())
            res["members"].setdefault(name, {})[split] = m
        res["ensemble"][split] = classification_metrics(ref_labels.tolist(), mean.argmax(1).tolist())
    for name, m in [*res["members"].items(), (f"ENSEMBLE of {len(runs)}", res["ensemble"])]:
        print(f"{name:<48} dev weighted F1 {m['dev']['weighted_f1']:6.2f}   "
              f"TEST weighted F1 {m['test']['weighted_f1']:6.2f}  macro F1 {m['test']['macro_f1']:6.2f}  "
              f"accuracy {m['test']['accuracy']:6.2f}")
    mean_member = float(np.mean([m["test"]["weighted_f1"] for m in res["members"].values()]))
    print(f"ensemble - mean member (test weighted F1): {res['ensemble']['test']['weighted_f1'] - mean_member:+.2f}; "
          f"{time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
