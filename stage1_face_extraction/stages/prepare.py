"""DVC stage ``prepare``: official MELD CSVs -> validated utterance table (Parquet).

    python -m stage1_face_extraction.stages.prepare --params params.yaml \
        --out data/prepared/utterances.parquet --summary data/prepared/summary.json

Reads only the ``data`` section of params.yaml. The table's columns are documented in
:mod:`stage1_face_extraction.meld`; ``summary.json`` holds the per-split counts (a DVC metric).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
from pathlib import Path

from stage1_face_extraction.common.atomic import DISK_FULL, atomic_write_bytes
from stage1_face_extraction.common.config import ConfigError, load_section
from stage1_face_extraction.common.logs import setup_logging
from stage1_face_extraction.meld import DataConfig, MeldFormatError, build_utterance_table, summarize

log = logging.getLogger("facialmmt.prepare")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="facialmmt prepare", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml", help="params file (section `data`)")
    ap.add_argument("--out", required=True, help="output Parquet table")
    ap.add_argument("--summary", help="optional JSON with per-split counts")
    args = ap.parse_args(argv)
    setup_logging()
    try:
        cfg = load_section(args.params, "data", DataConfig)
        df = build_utterance_table(cfg)
    except (ConfigError, MeldFormatError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = summarize(df)
    try:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic_write_bytes(out, buf.getvalue())  # no half-written table, a full disk named
        if args.summary:
            atomic_write_bytes(Path(args.summary), (json.dumps(summary, indent=2) + "\n").encode())
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        log.error("%s", exc)
        return 1
    for split, s in summary.items():
        log.info(
            "%s: %d utterances in %d dialogues, %d clips missing",
            split, s["utterances"], s["dialogues"], s["clips_missing"],
        )
    log.info("wrote %s (%d rows)", out, len(df))
    return 0


if __name__ == "__main__":
    sys.exit(main())
