"""DVC stage ``evaluate`` (FacialMMT's ``--doEval``): a checkpoint on a split -> metrics, predictions, plots.

    python -m stage2_mer.stages.evaluate --params params.yaml --checkpoint data/model \
        --utterances data/prepared/utterances.parquet --audio data/features/audio/wav2vec2 \
        --visual data/features/visual/inception_resnet_v1 --faces data/faces --out data/eval

Builds the model and the FER network from the checkpoint's own JSON
(:func:`stage2_mer.train.load_models`; never from params: a checkpoint evaluates as it was
trained), and so are its data settings: speaker names, max tokens,
the length caps, the FER tau, threshold and samples come from ``checkpoint.json`` ``inputs``
(:func:`stage2_mer.train.checkpoint_train_config`); params.yaml's ``train`` section (after its
``preset``) gives the rest (batching, precision) and the settings an older checkpoint does not
record. A params.yaml value that differs from the checkpoint's is a WARNING naming both (the
checkpoint's is used); a missing record is a warning too.

Writes ``<out>/metrics.json`` (``weighted_f1``, ``macro_f1``, ``accuracy``, ``per_class_f1``, ...,
``fer_filter``: what the frame filter kept on this split; a DVC metric), ``<out>/predictions.csv``
(utt_id, true and predicted emotion, the 7 probabilities; a DVC plot) and ``<out>/confusion.png``.
A multi-seed checkpoint (``train.seeds``: ``seeds.json`` and ``seed-<s>/``) has every seed scored
too: ``seeds`` in metrics.json holds each seed's dev and test scores, the test mean and std over
the seeds, and the best-dev seed (whose checkpoint is the one at the top level).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from pathlib import Path

from stage1_face_extraction.common.atomic import atomic_write_bytes
from stage1_face_extraction.common.config import ConfigError, load_section
from stage1_face_extraction.common.logs import setup_logging

log = logging.getLogger("facialmmt.evaluate")


def predict_checkpoint(checkpoint: str | Path, train_cfg, args, table) -> dict:
    """Load ``checkpoint`` and predict ``args.split`` with its own data settings (``Trainer.predict``)."""
    from stage2_mer.data.assemble import build_data
    from stage2_mer.train import Trainer, checkpoint_train_config, load_models

    model, model_cfg, fer, fer_cfg, info = load_models(checkpoint)
    cfg, _ = checkpoint_train_config(train_cfg, info, checkpoint)
    data, pad = build_data(args, model_cfg, cfg, table)
    trainer = Trainer.for_inference(model, cfg, fer=fer, fer_cfg=fer_cfg, model_config=info["model"], pad_id=pad)
    return trainer.predict(data[args.split])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="facialmmt evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--utterances", required=True)
    ap.add_argument("--audio")
    ap.add_argument("--visual")
    ap.add_argument("--faces")
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    setup_logging()
    from stage1_face_extraction.common.labels import EMOTIONS
    from stage1_face_extraction.meld import read_utterance_table
    from stage2_mer.train import (
        SEEDS_JSON,
        TrainConfig,
        apply_preset,
        classification_metrics,
        plot_confusion,
        summarize_seed_tests,
    )

    ckpt = Path(args.checkpoint)
    try:
        train_cfg = apply_preset(load_section(args.params, "train", TrainConfig))
        table = read_utterance_table(args.utterances)
        pred = predict_checkpoint(ckpt, train_cfg, args, table)
        seed_preds = {}
        if (ckpt / SEEDS_JSON).is_file():
            record = json.loads((ckpt / SEEDS_JSON).read_text(encoding="utf-8"))
            for run in record["runs"]:
                seed = int(run["seed"])
                log.info("seed %d: scoring %s", seed, ckpt / f"seed-{seed}")
                seed_preds[seed] = pred if seed == int(record["best_seed"]) else \
                    predict_checkpoint(ckpt / f"seed-{seed}", train_cfg, args, table)
    except (ConfigError, ValueError, FileNotFoundError, KeyError) as exc:
        log.error("%s", exc)
        return 2
    m = classification_metrics(pred["labels"], pred["predictions"])
    out = Path(args.out)
    metrics = {k: m[k] for k in ("weighted_f1", "macro_f1", "accuracy", "per_class_f1", "n")}
    metrics["split"] = args.split
    if "fer_filter" in pred:
        metrics["fer_filter"] = pred["fer_filter"]
    if seed_preds:
        tests = {s: classification_metrics(p["labels"], p["predictions"]) for s, p in seed_preds.items()}
        metrics["seeds"] = summarize_seed_tests(record["runs"], tests, int(record["best_seed"]))
        log.info("%s over %d seeds: weighted F1 %.2f +/- %.2f (best-dev seed %d: %.2f)", args.split, len(tests),
                 metrics["seeds"]["weighted_f1"]["mean"], metrics["seeds"]["weighted_f1"]["std"],
                 record["best_seed"], metrics["seeds"]["best_dev_seed_weighted_f1"])
    atomic_write_bytes(out / "metrics.json", (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["utt_id", "true", "predicted", *[f"p_{e}" for e in EMOTIONS]])
    for u, t, p, probs in zip(pred["utt_ids"], pred["labels"], pred["predictions"], pred["probs"]):
        w.writerow([u, EMOTIONS[t], EMOTIONS[p], *[f"{x:.4f}" for x in probs]])
    atomic_write_bytes(out / "predictions.csv", buf.getvalue().encode())
    plot_confusion(m["confusion"], out / "confusion.png", title=f"{args.split}: weighted F1 {m['weighted_f1']:.1f}")
    log.info("%s: weighted F1 %.2f, macro F1 %.2f, accuracy %.2f (%d utterances)", args.split, m["weighted_f1"],
             m["macro_f1"], m["accuracy"], m["n"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
