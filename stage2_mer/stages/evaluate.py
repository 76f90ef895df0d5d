"""DVC stage ``evaluate`` (FacialMMT's ``--doEval``): a checkpoint on a split -> metrics, predictions, plots.

    python -m stage2_mer.stages.evaluate --params params.yaml --checkpoint data/model \
        --utterances data/prepared/utterances.parquet --audio data/features/audio/wav2vec2 \
        --visual data/features/visual/inception_resnet_v1 --faces data/faces --out data/eval

Reads the ``train`` section (batching, tokenizer settings) and builds the model and the FER network
from the checkpoint's own JSON (never from params: a checkpoint evaluates as it was trained).
Writes ``<out>/metrics.json`` (``weighted_f1``, ``macro_f1``, ``accuracy``, ``per_class_f1``, ...;
a DVC metric), ``<out>/predictions.csv`` (utt_id, true and predicted emotion, the 7
probabilities; a DVC plot) and ``<out>/confusion.png``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from pathlib import Path

from stage1_face_extraction.params import ConfigError, from_dict, load_section
from stage1_face_extraction.stages._common import setup_logging
from stage1_face_extraction.store import atomic_write_bytes

log = logging.getLogger("facialmmt.evaluate")


def load_models(checkpoint: str | Path):
    """(model, model_cfg, fer or None, fer_cfg or None, checkpoint info) from a checkpoint folder."""
    from stage2_mer.model import ModelConfig, create_model
    from stage2_mer.train import load_state, read_checkpoint

    info = read_checkpoint(checkpoint)
    model_cfg = from_dict(ModelConfig, info["model"], "checkpoint.model")
    model = create_model(model_cfg, pretrained_text=False)  # architecture only: the weights come next
    load_state(model, Path(checkpoint) / "model.safetensors")
    fer = fer_cfg = None
    if info.get("fer"):
        import warnings

        from stage2_mer.fer import FERConfig, build_fer

        # the architecture from the checkpoint's JSON, the weights from its fer.safetensors
        fer_cfg = from_dict(FERConfig, {**info["fer"], "random_init": True, "checkpoint": None}, "checkpoint.fer")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fer = build_fer(fer_cfg)
        load_state(fer, Path(checkpoint) / "fer.safetensors")
    return model, model_cfg, fer, fer_cfg, info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="facialmmt-evaluate", description=__doc__.split("\n\n")[0])
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
    from stage1_face_extraction.meld import EMOTIONS, read_utterance_table
    from stage2_mer.stages.train import build_data
    from stage2_mer.train import TrainConfig, Trainer, classification_metrics, plot_confusion

    try:
        train_cfg = load_section(args.params, "train", TrainConfig)
        model, model_cfg, fer, fer_cfg, info = load_models(args.checkpoint)
        table = read_utterance_table(args.utterances)
        data, pad = build_data(args, model_cfg, train_cfg, table)
    except (ConfigError, ValueError, FileNotFoundError, KeyError) as exc:
        log.error("%s", exc)
        return 2
    trainer = Trainer(model, train_cfg, fer=fer, fer_cfg=fer_cfg, model_config=info["model"], pad_id=pad)
    trainer.model = trainer.acc.prepare(model)
    if fer is not None:
        trainer.fer = trainer.acc.prepare(fer)
    pred = trainer.predict(data[args.split])
    m = classification_metrics(pred["labels"], pred["predictions"])
    out = Path(args.out)
    metrics = {k: m[k] for k in ("weighted_f1", "macro_f1", "accuracy", "per_class_f1", "n")}
    metrics["split"] = args.split
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
