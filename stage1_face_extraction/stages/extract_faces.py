"""DVC stage ``extract_faces``: the speaker's face sequence for every utterance clip.

    python -m stage1_face_extraction.stages.extract_faces --params params.yaml \
        --utterances data/prepared/utterances.parquet --meld-root data/demo/MELD.Raw --out data/faces

Reads the ``stage1`` section. Writes, per split, ``<out>/<split>/``: face shards
(``shard-*.tar`` + ``index.jsonl``, see ``stage1_face_extraction/SCHEMA.md``), ``manifest.jsonl``
(one record per utterance, sorted), ``timings.jsonl`` and ``sheets/<utt_id>.png`` contact sheets
for the first ``stage1.contact_sheets`` clips with faces; and, with ``--summary``, a JSON of the
status counts per split (a DVC metric).

Resumable: shards are written atomically and listed in ``index.jsonl`` only when complete, and
each finished clip's record is appended to ``<split>/.journal.jsonl``; a killed run, restarted,
skips the clips already stored and ends with the same bytes as an uninterrupted run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections import Counter
from pathlib import Path

import cv2
from tqdm import tqdm

from stage1_face_extraction.executors import ClipJob, ClipRunner
from stage1_face_extraction.meld import MeldFormatError, read_utterance_table
from stage1_face_extraction.params import ConfigError, load_section
from stage1_face_extraction.pipeline import FacePipeline, Stage1Config
from stage1_face_extraction.stages._common import setup_logging
from stage1_face_extraction.store import (
    FaceShardReader,
    FaceShardWriter,
    atomic_write_bytes,
    contact_sheet,
    write_manifest,
)

log = logging.getLogger("facialmmt.extract_faces")
JOURNAL = ".journal.jsonl"


def _load_journal(path: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
                continue
            out[rec["utt_id"]] = rec
    return out


def write_contact_sheets(out: Path, records: dict[str, dict], limit: int) -> list[Path]:
    """PNG contact sheets (crops in order, labelled with source frame numbers) of the first
    ``limit`` clips with faces, in utt_id order, read back from the shards."""
    reader = FaceShardReader(out)
    written = []
    for utt_id in sorted(u for u, r in records.items() if r["frames"])[:limit]:
        crops = reader.read(utt_id)
        sheet = contact_sheet(crops, cols=10, labels=[f["frame"] for f in records[utt_id]["frames"]])
        ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        path = out / "sheets" / f"{utt_id}.png"
        atomic_write_bytes(path, png.tobytes())
        written.append(path)
    return written


def extract_split(runner: ClipRunner, rows, meld_root: Path, out: Path, split: str) -> Counter:
    """Process one split's utterances (a DataFrame slice) into ``out``; returns status counts."""
    cfg = runner.cfg
    out.mkdir(parents=True, exist_ok=True)
    rows = rows.sort_values("utt_id")
    plan = rows["utt_id"].tolist()
    writer = FaceShardWriter(out, utts_per_shard=cfg.utts_per_shard, jpeg_quality=cfg.jpeg_quality, plan=plan)
    journal_path = out / JOURNAL
    journal = _load_journal(journal_path)
    records = {u: r for u, r in journal.items() if u in writer}
    jobs = [
        ClipJob(path=str(meld_root / r.clip), utt_id=r.utt_id, speaker=r.speaker, clip=r.clip)
        for r in rows.itertuples()
        if r.utt_id not in records
    ]
    if records:
        log.info("%s: resuming, %d of %d clips already done", split, len(records), len(plan))
    with open(journal_path, "a", encoding="utf-8") as jf, tqdm(total=len(plan), initial=len(records), desc=f"faces {split}", unit="clip") as bar:
        for job, res in runner.map(jobs):
            rec = res.record
            # Journal first, then the shard: a clip in a finished shard always has its record, so
            # a kill at any point never makes a resumed run redo a stored clip.
            jf.write(json.dumps(rec, default=float) + "\n")
            jf.flush()
            os.fsync(jf.fileno())
            writer.add(job.utt_id, res.crops)
            records[job.utt_id] = rec
            bar.update(1)
            bar.set_postfix_str(rec["status"])
    writer.close()
    write_manifest(out / "manifest.jsonl", records.values())
    write_contact_sheets(out, records, cfg.contact_sheets)
    journal_path.unlink(missing_ok=True)
    return Counter(r["status"] for r in records.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="facialmmt-extract-faces", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml", help="params file (section `stage1`)")
    ap.add_argument("--utterances", required=True, help="utterance table from the prepare stage")
    ap.add_argument("--meld-root", required=True, help="folder the table's clip paths are relative to")
    ap.add_argument("--out", required=True, help="output folder (one sub-folder per split)")
    ap.add_argument("--summary", help="JSON with status counts per split (a DVC metric)")
    ap.add_argument("--splits", nargs="*", help="only these splits (default: all in the table)")
    ap.add_argument("--workers", type=int, help="override stage1.workers")
    args = ap.parse_args(argv)
    setup_logging()
    try:
        cfg = load_section(args.params, "stage1", Stage1Config)
        # Build the detector and scorer once here: their names and keys (stage1.detector.*,
        # stage1.asd.*) are only checked when they are created, which would otherwise happen
        # first in the worker processes (a broken pool instead of a clear error).
        FacePipeline(cfg)
    except (ConfigError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    try:
        table = read_utterance_table(args.utterances)
    except (OSError, MeldFormatError) as exc:
        log.error("cannot read the utterance table %s: %s", args.utterances, exc)
        return 2
    out = Path(args.out)
    summary = {}
    with ClipRunner(cfg, args.workers) as runner:
        for split in args.splits or list(dict.fromkeys(table["split"])):
            counts = extract_split(runner, table[table["split"] == split], Path(args.meld_root), out / split, split)
            summary[split] = {"clips": int(sum(counts.values())), **{k: int(v) for k, v in sorted(counts.items())}}
            log.info("%s: %s", split, ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if args.summary:
        atomic_write_bytes(Path(args.summary), (json.dumps(summary, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
