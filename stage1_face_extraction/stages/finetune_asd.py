"""Fine-tune (or train from scratch) a learned active-speaker scorer on per-frame speaking labels.

    python -m stage1_face_extraction.stages.finetune_asd --truth data/demo/MELD.Raw/truth.json \\
        --arch light_asd --out models/asd/light_asd_demo --splits train --val-splits dev \\
        [--init models/finetuning_TalkSet.model] [--epochs 10] [--max-minutes 5]

Writes ``<out>/<arch>.safetensors`` (published key layout) and ``<out>/<arch>.json`` (architecture,
preprocessing, config, per-epoch loss and validation frame metrics). Use it with
``stage1.asd: {name: <arch>, checkpoint: <out>/<arch>.safetensors}``. The corpus format and the
training recipe are in ``stage1_face_extraction/asd/finetune.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import fields
from pathlib import Path

from stage1_face_extraction.common.logs import setup_logging

from ..common.config import ConfigError, from_dict

logger = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from ..asd.finetune import FinetuneConfig

    defaults = FinetuneConfig()
    ap = argparse.ArgumentParser(prog="facialmmt finetune-asd", description=__doc__.split("\n\n")[0])
    ap.add_argument("--truth", required=True, type=Path, help="truth.json-style corpus with per-frame labels")
    ap.add_argument("--root", type=Path, help="folder the clip paths are relative to (default: the truth's folder)")
    ap.add_argument("--out", required=True, type=Path, help="output folder")
    ap.add_argument("--arch", default=defaults.arch, choices=["light_asd", "lr_asd", "talknet"])
    ap.add_argument(
        "--init", help="checkpoint to start from (published *.model or *.safetensors); default: from scratch"
    )
    ap.add_argument("--splits", nargs="*", default=defaults.splits, help="training splits (none given = all)")
    ap.add_argument("--val-splits", nargs="*", default=[], help="validation splits (frame metrics after training)")
    ap.add_argument("--epochs", type=int, default=defaults.epochs)
    ap.add_argument("--max-minutes", type=float, help="wall-clock budget for training")
    ap.add_argument("--window-frames", type=int, default=defaults.window_frames)
    ap.add_argument("--hop-frames", type=int, default=defaults.hop_frames)
    ap.add_argument("--batch-size", type=int, default=defaults.batch_size)
    ap.add_argument("--lr", type=float, help="learning rate (default 1e-3 light_asd / lr_asd, 1e-4 talknet)")
    ap.add_argument("--lr-decay", type=float, default=defaults.lr_decay)
    ap.add_argument("--crop-scale", type=float, default=defaults.crop_scale)
    ap.add_argument("--crop-offset", type=float, default=defaults.crop_offset)
    ap.add_argument("--bn-recalibrate-frames", type=int, default=defaults.bn_recalibrate_frames,
                    help="after training, BatchNorm statistics from this many training frames (0 = off)")
    ap.add_argument("--seed", type=int, default=defaults.seed)
    ap.add_argument("--device", default=defaults.device)
    ap.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    from tqdm import tqdm

    from ..asd.finetune import FinetuneConfig, load_labelled_corpus, prepare_tracks, train

    names = {f.name for f in fields(FinetuneConfig)}
    raw = {k: v for k, v in vars(args).items() if k in names and v is not None}
    try:
        cfg = from_dict(FinetuneConfig, raw, "finetune")
    except (ConfigError, ValueError) as exc:
        print(f"finetune_asd: {exc}", file=sys.stderr)
        return 2
    try:
        clips = load_labelled_corpus(args.truth, args.root, cfg.splits)
        val_clips = load_labelled_corpus(args.truth, args.root, cfg.val_splits) if cfg.val_splits else []
    except (OSError, ValueError) as exc:
        print(f"finetune_asd: {exc}", file=sys.stderr)
        return 2
    if not clips:
        print(f"finetune_asd: no clips of splits {cfg.splits} in {args.truth}", file=sys.stderr)
        return 2
    with tqdm(total=len(clips) + len(val_clips), desc="decode + crop", unit="clip", disable=args.no_progress) as bar:
        tracks = prepare_tracks(clips, cfg, progress=bar.update)
        val_tracks = prepare_tracks(val_clips, cfg, progress=bar.update) if val_clips else None
    bar = tqdm(desc="train", unit="batch", disable=args.no_progress)

    def on_batch(state: dict) -> None:
        if state["step"] == 1:
            bar.reset(total=state["batches"])
            bar.set_description(f"epoch {state['epoch']}")
        bar.update(1)
        bar.set_postfix(loss=f"{state['loss']:.4f}")

    try:
        result = train(cfg, tracks, args.out, val_tracks, progress=on_batch)
    finally:
        bar.close()
    print(f"wrote {result.weights} and {result.sidecar} ({result.epochs_run} epochs, {result.steps} steps, "
          f"{result.seconds:.0f} s)")
    if result.history and "val" in result.history[-1]:
        print("validation frames: " + json.dumps(result.history[-1]["val"]))
    print(f"use it: stage1.asd: {{name: {cfg.arch}, checkpoint: {result.weights}}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
