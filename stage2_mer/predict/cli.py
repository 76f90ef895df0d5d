"""``facialmmt predict``: the emotion of one utterance clip, with an annotated MP4 or GIF.

    facialmmt predict VIDEO --text "..." [--speaker NAME] [--context "Name: earlier line" ...]
        [--checkpoint data/model] [--params params.yaml] [--out predict_out] [--format mp4|gif|none]

Runs stage 1 (the speaker's face), the feature extractors the checkpoint was trained with and the
model on the clip; prints the 7 emotion probabilities (sorted, as a bar chart) and writes
``<out>/<video stem>.prediction.json`` and ``<out>/<video stem>.annotated.mp4`` (or ``.gif``): every
frame, the speaker's face boxed, the predicted emotion and the probabilities drawn. Exit status 0,
or 2 with the reason (missing video, missing checkpoint file, bad params).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger("facialmmt.predict")

BAR_WIDTH = 30


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="facialmmt predict", description=__doc__.split("\n\n")[0])
    ap.add_argument("video", type=Path, help="the utterance's video clip")
    ap.add_argument("--text", required=True, help="what is said in the clip (the transcript line)")
    ap.add_argument("--speaker", help="the speaker's name (text prefix when the model was trained with speaker "
                                      "names; recorded by stage 1)")
    ap.add_argument("--context", action="append", default=[], metavar='"NAME: LINE"',
                    help="an earlier turn of the dialogue (repeat, oldest first); 'Name: ' prefixes name the speaker")
    ap.add_argument("--checkpoint", type=Path, default=Path("data/model"),
                    help="train-stage checkpoint folder (default data/model, the DVC train output)")
    ap.add_argument("--params", type=Path,
                    help="params file: its stage1 and train sections (default params.yaml when present)")
    ap.add_argument("--features", type=Path, default=Path("data/features"),
                    help="features-stage output, only read for the length caps of a checkpoint that does not "
                         "record them (default data/features)")
    ap.add_argument("--out", type=Path, default=Path("predict_out"), help="output folder (default predict_out)")
    ap.add_argument("--format", choices=("mp4", "gif", "none"), default="mp4", help="annotated clip format")
    ap.add_argument("--gif-width", type=int, default=480, help="GIF width in pixels at most (default 480)")
    ap.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    return ap


def format_chart(pred) -> str:
    """The sorted probabilities as a text bar chart, then the verdict."""
    head = f'{pred.video}: "{pred.text}"' + (f" ({pred.speaker})" if pred.speaker else "")
    lines = [head]
    for name, p in pred.ranked():
        lines.append(f"  {name:<9} {p:6.1%} {'#' * round(p * BAR_WIDTH)}")
    lines.append(f"predicted: {pred.label} ({pred.probability:.1%})")
    return "\n".join(lines)


def _params(path: Path | None) -> dict:
    from stage1_face_extraction.common.config import load_params

    if path is not None:
        return load_params(path)  # ConfigError when missing
    if Path("params.yaml").is_file():
        return load_params("params.yaml")
    log.warning("no params.yaml here: stage 1 and the train settings take their defaults")
    return {}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from stage1_face_extraction.common.atomic import atomic_write_bytes
    from stage1_face_extraction.common.config import ConfigError
    from stage1_face_extraction.common.logs import setup_logging

    from .core import PredictError, Predictor, parse_turn

    setup_logging(logging.WARNING if args.quiet else logging.INFO)
    if not args.video.is_file():
        log.error("video not found: %s", args.video)
        return 2
    if args.out.exists() and not args.out.is_dir():
        log.error("--out %s exists and is not a folder", args.out)
        return 2
    try:
        params = _params(args.params)
        log.info("loading the checkpoint %s", args.checkpoint)
        predictor = Predictor(args.checkpoint, params, features_root=args.features)
        pred = predictor.predict(args.video, args.text, speaker=args.speaker,
                                 context=[parse_turn(c) for c in args.context])
    except (PredictError, ConfigError) as exc:
        log.error("%s", exc)
        return 2
    print(format_chart(pred))
    for note in pred.notes:
        print(f"note: {note}")
    stem = args.video.stem
    record = pred.to_json()
    record["annotated"] = None
    if args.format != "none":
        from .render import write_annotated

        out_video = args.out / f"{stem}.annotated.{args.format}"
        log.info("writing %s", out_video)
        caption = f"{pred.speaker}: {pred.text}" if pred.speaker else pred.text
        note = "no speaker face found" if not pred.stage1.record.get("frames") else None
        write_annotated(pred.video, out_video, pred.probs, pred.boxes(), caption=caption, name=pred.speaker,
                        note=note, fmt=args.format, audio=pred.wave, gif_width=args.gif_width)
        record["annotated"] = str(out_video)
        print(f"wrote {out_video}")
    out_json = args.out / f"{stem}.prediction.json"
    atomic_write_bytes(out_json, (json.dumps(record, indent=2) + "\n").encode())
    print(f"wrote {out_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
