"""DVC stage ``make_affwild2`` (demo only): a tiny Aff-Wild2-layout folder from the demo's own faces.

    python -m stage2_mer.stages.make_affwild2 --params params.yaml \
        --utterances data/prepared/utterances.parquet --faces data/faces --out data/affwild2

The auxiliary facial-expression task trains on Aff-Wild2 (ABAW3 expression layout:
``cropped_aligned/<video>/<frame>.jpg`` + one annotation txt per video), which cannot ship with
this project. So that the whole path runs on the demo, this stage takes up to
``affwild2_demo.faces_per_utterance`` crops of every TRAIN utterance with faces, labels them with
the utterance's emotion and writes them in that layout (one "video" per utterance). On real MELD,
point ``train``'s ``--affwild2`` at a real Aff-Wild2 folder instead (docs/real-meld.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stage1_face_extraction.common.config import ConfigError, load_section
from stage1_face_extraction.common.logs import setup_logging
from stage1_face_extraction.common.runstate import ForeignOutputError, check_own_output, claim_output
from stage2_mer.fer.affwild2 import STANDIN_STAGE

log = logging.getLogger("facialmmt.make_affwild2")
STAGE = STANDIN_STAGE  # "make_affwild2": check_affwild2_source knows its output by this mark
AFFWILD2_LAYOUT = {"cropped_aligned", "Third_ABAW_Annotations"}  # what write_demo_affwild2 writes


@dataclass
class AffWild2DemoConfig:
    """``affwild2_demo`` section."""

    faces_per_utterance: int = 8  # spread over the utterance's crops
    split: str = "train"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stage2_mer.stages.make_affwild2", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--utterances", required=True)
    ap.add_argument("--faces", required=True, help="the extract_faces output folder")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    setup_logging()
    from stage1_face_extraction.meld import read_utterance_table
    from stage1_face_extraction.store import FaceShardReader
    from stage2_mer.fer import write_demo_affwild2

    try:
        cfg = load_section(args.params, "affwild2_demo", AffWild2DemoConfig)
        table = read_utterance_table(args.utterances)
        reader = FaceShardReader(Path(args.faces) / cfg.split)
    except (ConfigError, OSError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    rows = table[table["split"] == cfg.split].sort_values("utt_id")
    faces, labels = [], []
    for r in rows.itertuples():
        crops = reader.read(r.utt_id)
        if len(crops) == 0:
            continue
        k = min(cfg.faces_per_utterance, len(crops))
        pick = np.unique(np.linspace(0, len(crops) - 1, k).round().astype(int))
        faces.append(crops[pick])
        labels.extend([int(r.label)] * len(pick))
    if not faces:
        log.error("no %s utterance has faces in %s", cfg.split, args.faces)
        return 2
    out = Path(args.out)
    try:
        check_own_output(out, STAGE, legacy=lambda d: {p.name for p in d.iterdir()} <= AFFWILD2_LAYOUT)
    except ForeignOutputError as exc:
        log.error("%s", exc)
        return 2
    # Whole-folder temp-and-rename: the layout is written into a sibling folder, marked as ours,
    # and only then swapped in, so a killed run never leaves a half-written data/affwild2.
    for stale in out.parent.glob(f".{out.name}.tmp-*"):  # left by a killed run
        shutil.rmtree(stale)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    write_demo_affwild2(tmp, np.concatenate(faces, 0), np.asarray(labels), frames_per_video=cfg.faces_per_utterance)
    claim_output(tmp, STAGE)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    log.info("wrote %d labelled faces (%s) to %s", len(labels),
             ", ".join(f"{k} {v}" for k, v in sorted(zip(*np.unique(labels, return_counts=True)))), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
