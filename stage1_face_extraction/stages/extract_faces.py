"""DVC stage ``extract_faces``: the speaker's face sequence for every utterance clip.

    python -m stage1_face_extraction.stages.extract_faces --params params.yaml \
        --utterances data/prepared/utterances.parquet --meld-root data/demo/MELD.Raw --out data/faces \
        --pictures data/faces_pictures

Reads the ``stage1`` section (and its runner knobs, ``runtime.stage1``). Writes, per split,
``<out>/<split>/``: face shards (``shard-*.tar`` + ``index.jsonl``, see
``stage1_face_extraction/SCHEMA.md``), ``manifest.jsonl`` (one record per utterance, sorted),
``timings.jsonl`` and, with the identity step on (``stage1.identity.scope``: dialogue by default),
``identities.jsonl`` (per dialogue: the identity clusters, the names given to them and their
confidence); with ``--summary``, a JSON of the status counts per split (a DVC metric).

The pictures go to ``<pictures>/<split>/`` (default ``<out>_pictures``), outside ``<out>``, which
every later stage reads: asking for more or fewer of them never changes a byte the later stages
depend on. ``sheets/<utt_id>.png`` contact sheets for the first ``stage1.contact_sheets`` clips with
faces; ``identity_sheets/<group>.png`` (one face per cluster with its name) for the first
``stage1.identity.sheets`` groups; ``previews/<utt_id>.mp4`` for the first ``stage1.previews`` clips
(every track boxed, the speaker highlighted, the speaking score drawn:
``stage1_face_extraction.preview``).

Resumable: shards are written atomically and listed in ``index.jsonl`` only when complete, each
group's identity report is appended to ``<split>/.identities.journal.jsonl`` before its clips are
finished and each finished clip's record to ``<split>/.journal.jsonl``; a killed run, restarted,
skips the clips already stored (re-analysing the other clips of a partly stored dialogue for its
identity step) and ends with the same bytes as an uninterrupted run. ``<out>/.run-in-progress.json``
(``common/runstate.py``) holds the fingerprint of the running inputs (params, table, clips, code) until the
run finishes: a rerun resumes only an interrupted run of the same inputs and otherwise starts over,
so ``dvc.yaml`` can keep the output between runs (``persist: true``) and a killed ``dvc repro``
resumes too. A full disk stops the run with exit status 1 and a message naming the file; no
half-written shard is left, and a rerun resumes.

One clip never stops the run. Bad input gets its status (``missing``, ``decode_error``,
``no_face``, ``no_speaker``, ``no_audio``) and the exit status stays 0. A clip whose processing
raises (a bug, a worker process that died on it) gets status ``error`` with ``"<type>: <message>"``
in ``reason``, the other clips go on, and the exit status is 1: the split's journals and the run
marker are kept, so a rerun of the same inputs resumes and retries only those clips (with their
shard-mates and, with the identity step, their group). Each clip's row is also appended to
``<split>/manifest.jsonl`` (flushed and fsynced) as it finishes, so a kill leaves the finished
clips' rows readable; the file is rewritten sorted by utt_id at the end of the split (the same
bytes as before: the order in which clips finish never shows).

This script reads the params and the arguments; the work is in ``stage1_face_extraction.extraction``
and the journals in ``stage1_face_extraction.journal``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from stage1_face_extraction.common.atomic import DISK_FULL
from stage1_face_extraction.common.config import ConfigError, load_section
from stage1_face_extraction.common.logs import setup_logging
from stage1_face_extraction.common.runstate import ForeignOutputError
from stage1_face_extraction.extraction import run_extract_faces
from stage1_face_extraction.meld import MeldFormatError, read_utterance_table
from stage1_face_extraction.pipeline import FacePipeline
from stage1_face_extraction.section import Stage1Config

log = logging.getLogger("facialmmt.extract_faces")


def main(argv: list[str] | None = None) -> int:
    """The stage's command line (``facialmmt extract-faces``); the exit status: 0, 1 (clips with
    status ``error``, or a full disk: a rerun resumes) or 2 (bad params or inputs)."""
    ap = argparse.ArgumentParser(prog="facialmmt extract-faces", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml", help="params file (section `stage1`)")
    ap.add_argument("--utterances", required=True, help="utterance table from the prepare stage")
    ap.add_argument("--meld-root", required=True, help="folder the table's clip paths are relative to")
    ap.add_argument("--out", required=True, help="output folder (one sub-folder per split)")
    ap.add_argument("--pictures", help="folder of the contact sheets, identity sheets and previews (one sub-folder "
                    "per split); default: <out>_pictures")
    ap.add_argument("--summary", help="JSON with status counts per split (a DVC metric)")
    ap.add_argument("--splits", nargs="*", help="only these splits (default: all in the table)")
    ap.add_argument("--workers", type=int, help="override runtime.stage1.workers")
    args = ap.parse_args(argv)
    setup_logging()
    try:
        cfg = load_section(args.params, "stage1", Stage1Config)
        # Build the detector, scorer and identity embedder once here: their names and keys
        # (stage1.detector.*, stage1.asd.*, stage1.identity.embedder.*) are only checked when they
        # are created, which would otherwise happen first in the worker processes (a broken pool
        # instead of a clear error).
        pipe = FacePipeline(cfg)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    references = None
    if cfg.identity.enabled and cfg.identity.references:
        from stage1_face_extraction.identity import load_references

        try:
            references = load_references(cfg.identity.references, embedder=pipe.identity_embedder)
        except (FileNotFoundError, ValueError) as exc:  # NoFaceError is a ValueError naming the photo
            log.error("stage1.identity.references: %s", exc)
            return 2
        log.info("reference photos: %s", ", ".join(f"{k} ({len(v)})" for k, v in sorted(references.items())))
    del pipe
    try:
        table = read_utterance_table(args.utterances)
    except (OSError, MeldFormatError) as exc:
        log.error("cannot read the utterance table %s: %s", args.utterances, exc)
        return 2
    out = Path(args.out)
    meld_root = Path(args.meld_root)
    splits = args.splits or list(dict.fromkeys(table["split"]))
    try:
        return run_extract_faces(cfg, table, args.utterances, meld_root, out, splits, pictures=args.pictures,
                                 references=references, workers=args.workers, summary_path=args.summary)
    except ForeignOutputError as exc:
        log.error("%s", exc)
        return 2
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        # the store's messages name the file; a journal line or a preview may fail first
        log.error("%s", exc if exc.filename else f"no space left on device writing under {out} ({exc}): "
                  "finished shards are kept; free some space and rerun to resume")
        return 1


if __name__ == "__main__":
    sys.exit(main())
