"""Average the class probabilities of several text models trained by ``meld_text.py`` (REAL MELD).

    HF_HUB_OFFLINE=1 python benchmarks/meld_text_ensemble.py --csv-dir ../shared/data/meld \\
        --members runs/dialogue runs/past3 runs/past0 --json ensemble.json

Each member is a checkpoint folder written by ``meld_text.py --out DIR`` (its best dev evaluation);
its ``checkpoint.json`` records the model and how its text rows were made (``inputs.text``: the
context ``dialogue`` / ``past:N[,future:M]``, speaker names, max tokens), so every member is run on
the dev and test utterances with its own layout. The ensemble's prediction is the argmax of the
members' MEAN probability, equal weights: nothing is fitted, on dev or on test. Prints dev and test
weighted F1 (and macro F1, accuracy) of every member and of the ensemble; ``--json`` writes them.

A member folder that ``meld_text.py --out`` wrote also holds ``predictions.parquet``: the best
checkpoint's dev and test probabilities as training scored them (in its precision, bf16 or fp32),
tied to its ``model.safetensors`` by sha256. Those are read instead of running the member, so the
ensemble takes seconds (1.8 min on 2 threads for the mpnet ensemble's three members run again) and
every member's figures are its own run's; ``--rerun`` runs every member again in fp32 (a bf16
member's scores then move by up to ~0.15), and ``--csv-dir`` is needed only then or for a folder
without the file.

Why (issue 19, item 8): members that read the dialogue differently make different mistakes.
Averaging models of the SAME layout (``past:3``, three seeds) gained ~0.3 over their mean; the
whole-dialogue, ``past:3`` and ``past:0`` models of one seed gain 1.1-1.5: test 62.44 / 62.67 /
62.66 on seeds 1111 / 2222 / 3333, 62.59 +- 0.11 (the three layouts were chosen on seed 1111's
figures; seeds 2222 and 3333 ran after that; the commands are in ``meld_text.py``). Members may
use different encoders: an all-mpnet-base-v2 model of the utterance alone with the whole-dialogue
and the no-names utterance MiniLM models gives 63.20 / 62.80 / 62.81, 62.94 +- 0.19 with the
members re-run in fp32, 63.30 / 62.81 / 62.86, 62.99 +- 0.22 from their saved bf16 predictions
(chosen on seed 1111's dev); with the no-names model trained 6 epochs instead of 4 (chosen on the
same dev) 62.91 / 63.10 / 63.09, 63.03 +- 0.08: ``meld_text_best.py`` runs that for one seed in
54 minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


PREDICTIONS = "predictions.parquet"  # what meld_text.py --out saves beside the checkpoint


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def write_predictions(folder: Path, preds: dict) -> Path:
    """Save ``{split: Trainer.predict(...) result}`` as ``folder/predictions.parquet``.

    One row per utterance: ``split``, ``utt_id``, ``label`` and ``p_<emotion>`` (float32, the 7
    class probabilities in :data:`EMOTIONS` order); the schema metadata holds the sha256 of the
    ``model.safetensors`` they came from, so a checkpoint trained again is never paired with
    another model's predictions."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from stage1_face_extraction.common.labels import EMOTIONS

    cols: dict = {"split": [], "utt_id": [], "label": []}
    probs = []
    for split, pred in preds.items():
        p = np.asarray(pred["probs"], dtype=np.float32)  # (U, 7)
        if p.shape != (len(pred["utt_ids"]), len(EMOTIONS)):
            raise ValueError(f"{split}: probs {p.shape} for {len(pred['utt_ids'])} utterances")
        cols["split"] += [split] * len(p)
        cols["utt_id"] += [str(u) for u in pred["utt_ids"]]
        cols["label"] += [int(y) for y in pred["labels"]]
        probs.append(p)
    p = np.concatenate(probs, 0)
    cols.update({f"p_{e}": p[:, k] for k, e in enumerate(EMOTIONS)})
    table = pa.table(cols).replace_schema_metadata({"model_sha256": _sha256(folder / "model.safetensors")})
    pq.write_table(table, folder / PREDICTIONS)
    return folder / PREDICTIONS


def read_predictions(folder: Path) -> dict | None:
    """``{split: (utt_ids, labels, probs (U, 7))}`` from ``folder/predictions.parquet``, or None
    when there is none; a file written for other weights than ``model.safetensors`` is an error."""
    import numpy as np
    import pyarrow.parquet as pq

    from stage1_face_extraction.common.labels import EMOTIONS

    path = folder / PREDICTIONS
    if not path.is_file():
        return None
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    if meta.get(b"model_sha256", b"").decode() != _sha256(folder / "model.safetensors"):
        raise SystemExit(f"{path} was written for other weights than {folder / 'model.safetensors'}: delete it "
                         "(the member is then run again) or pass --rerun")
    df = table.to_pandas()
    out = {}
    for split in ("dev", "test"):
        rows = df[df["split"] == split]
        if rows.empty:
            raise SystemExit(f"{path} has no {split} rows")
        probs = rows[[f"p_{e}" for e in EMOTIONS]].to_numpy(np.float64)
        out[split] = (rows["utt_id"].tolist(), rows["label"].to_numpy(np.int64), probs)
    return out


def member_probs(folder: Path, table, threads: int) -> dict:
    """``{split: (utt_ids, labels, probs (U, 7))}`` on dev and test for one checkpoint folder, by
    running the checkpoint (fp32) on both splits."""
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
    ap.add_argument("--csv-dir", type=Path,
                    help="folder of {train,dev,test}_sent_emo.csv (needed when a member is run)")
    ap.add_argument("--members", type=Path, nargs="+", required=True, help="checkpoint folders (meld_text.py --out)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--rerun", action="store_true",
                    help="run every member on dev and test (fp32) even where its folder holds the "
                         f"{PREDICTIONS} that meld_text.py saved (its own best checkpoint's, in its precision)")
    ap.add_argument("--json", type=Path, help="also write the metrics here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for folder in args.members:
        if not ((folder / "model.safetensors").is_file() and (folder / "checkpoint.json").is_file()):
            print(f"{folder}: not a checkpoint folder (model.safetensors + checkpoint.json)", file=sys.stderr)
            return 2
    import numpy as np

    from stage1_face_extraction.meld import DataConfig, build_utterance_table
    from stage2_mer.train import classification_metrics

    t0 = time.perf_counter()
    saved = {f: None if args.rerun else read_predictions(f) for f in args.members}
    table = None  # the utterance table, built only when a member has to be run
    if any(v is None for v in saved.values()):
        if not (args.csv_dir and (args.csv_dir / "train_sent_emo.csv").is_file()):
            print(f"no MELD CSVs in {args.csv_dir} (--csv-dir), needed to run the members without a saved "
                  f"{PREDICTIONS}", file=sys.stderr)
            return 2
        logging.getLogger("stage1_face_extraction.meld").setLevel(logging.ERROR)  # text only: no clips expected
        table = build_utterance_table(DataConfig(meld_root=str(args.csv_dir), csv_dir=str(args.csv_dir)))
    runs = {}
    for f in args.members:
        print(f"{f}: {'saved ' + PREDICTIONS if saved[f] else 'running the checkpoint on dev and test'}", flush=True)
        runs[str(f)] = saved[f] or member_probs(f, table, args.threads)
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
