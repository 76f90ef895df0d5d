"""DVC stage ``features@visual`` / ``features@audio``: utterance features with the configured extractor.

    python -m stage2_mer.stages.features --params params.yaml --modality visual \
        --faces data/faces --out data/features/visual --summary data/features/visual_summary.json
    python -m stage2_mer.stages.features --params params.yaml --modality audio \
        --utterances data/prepared/utterances.parquet --meld-root data/demo/MELD.Raw \
        --out data/features/audio --summary data/features/audio_summary.json

Reads ONLY the ``features.<modality>`` section (so changing one modality's extractor re-runs only
that stage). Writes ``<out>/<name>/<split>/`` feature folders (safetensors shards + ``index.jsonl``
+ ``meta.json``, see ``stage2_mer/features/SCHEMA.md``), where ``<name>`` is the extractor, and
``<out>/<name>/summary.json`` (also ``--summary``, a DVC metric): per split the utterance count,
empty utterances, rows and lengths, FacialMMT's padding width ``mean3std_len`` (mean + 3 std of the
train lengths; the trainer applies its own ``train.max_*_len``) and the extractor's contract. The
throughput (faces/s, seconds of audio per second) is shown on the progress bar and logged. The
visual stage reads the stage-1 face shards (``<faces>/<split>/``); the audio stage decodes the clips
listed in the utterance table.

A run owns ``--out``: while it runs, ``<out>/.run-in-progress.json`` holds the fingerprint of its
inputs (section, input files, code; ``stage1_face_extraction.common.runstate``). A rerun after a kill
with the same fingerprint keeps the splits that were finished (``meta.json`` written) and redoes
the others; any other run first empties ``--out`` (as DVC would: ``dvc.yaml`` keeps the folder,
``persist: true``, so that a killed ``dvc repro`` resumes), and only then writes the marker. It
refuses (exit status 2) to empty a folder that is not its own: the current folder or one above it,
a folder holding ``.git`` / ``.dvc`` / ``dvc.yaml``, or a non-empty folder without the stage's
ownership file ``.facialmmt-output.json`` (``runstate.check_own_output``). A full disk: exit status 1, the
message names the file, no half-written shard.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from tqdm import tqdm

from stage1_face_extraction.common.atomic import DISK_FULL, atomic_write_bytes
from stage1_face_extraction.common.config import ConfigError, load_section, to_dict, without_runtime
from stage1_face_extraction.common.logs import setup_logging
from stage1_face_extraction.common.runstate import (
    MARKER,
    ForeignOutputError,
    RunState,
    check_own_output,
    file_digest,
    fingerprint,
    package_code_digest,
    remove,
    stat_digest,
)
from stage2_mer.features.extract import (
    FeatureStageConfig,
    extract_audio_split,
    extract_visual_split,
    split_summary,
)
from stage2_mer.features.store import INDEX_NAME, META_NAME, FeatureReader, length_cap

log = logging.getLogger("facialmmt.features")
STAGE = "features"
SPLITS = ("train", "dev", "test")


def _splits_of_faces(faces: Path) -> list[str]:
    found = [s for s in SPLITS if (faces / s / "index.jsonl").is_file()]
    others = sorted(p.name for p in faces.iterdir() if (p / "index.jsonl").is_file() and p.name not in SPLITS)
    return found + others


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="facialmmt features", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml", help="params file (section `features.<modality>`)")
    ap.add_argument("--modality", required=True, choices=("visual", "audio"))
    ap.add_argument("--faces", help="visual: the extract_faces output folder (one sub-folder per split)")
    ap.add_argument("--utterances", help="audio: the utterance table from the prepare stage")
    ap.add_argument("--meld-root", help="audio: folder the table's clip paths are relative to")
    ap.add_argument("--out", required=True, help="output folder; features go to <out>/<extractor name>/<split>/")
    ap.add_argument("--summary", help="also write the summary JSON here (a DVC metric)")
    ap.add_argument("--splits", nargs="*", help="only these splits")
    args = ap.parse_args(argv)
    setup_logging()
    if args.modality == "visual" and not args.faces:
        ap.error("--modality visual needs --faces")
    if args.modality == "audio" and not (args.utterances and args.meld_root):
        ap.error("--modality audio needs --utterances and --meld-root")
    try:
        cfg = load_section(args.params, f"features.{args.modality}", FeatureStageConfig)
        ext = cfg.create()
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    if ext.contract.modality != args.modality:
        log.error("features.%s.name %r is a %s extractor", args.modality, cfg.name, ext.contract.modality)
        return 2
    out = Path(args.out) / cfg.name
    info = {"extractor": cfg.name, "options": cfg.options, "contract": ext.contract.to_dict()}
    if args.modality == "visual":
        faces = Path(args.faces)
        if not faces.is_dir():
            log.error("--faces %s is not a folder (run the extract_faces stage first)", faces)
            return 2
        splits = args.splits or _splits_of_faces(faces)
        jobs = {s: faces / s for s in splits}
        unit, key = "face", "faces"
    else:
        from stage1_face_extraction.meld import MeldFormatError, read_utterance_table

        try:
            table = read_utterance_table(args.utterances)
        except (OSError, MeldFormatError) as exc:
            log.error("cannot read the utterance table %s: %s", args.utterances, exc)
            return 2
        splits = args.splits or list(dict.fromkeys(table["split"]))
        root = Path(args.meld_root)
        jobs = {s: [(r.utt_id, root / r.clip) for r in table[table["split"] == s].itertuples()] for s in splits}
        unit, key = "s audio", "audio_s"
    root = Path(args.out)
    try:
        check_own_output(root, STAGE, legacy=_holds_only_features)  # `--out .` never empties the repository
        state = RunState(root, _fingerprint(args, cfg, jobs), stage=STAGE)
        # another run's outputs are never mixed with this run's; the marker is written after they are gone
        state.begin(lambda how: how != "resume" and root.is_dir()
                    and remove(p for p in root.iterdir() if p.name != MARKER))
        rc = _run(args, cfg, ext, jobs, out, info, unit, key)
        state.finish()
        return rc
    except ForeignOutputError as exc:
        log.error("%s", exc)
        return 2
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        log.error("%s", exc)  # names the file; the split being written has no index/meta: unfinished
        return 1


def _holds_only_features(folder: Path) -> bool:
    """Outputs written before the ownership file (runstate.OWNER): ``<extractor name>/`` folders."""
    from stage2_mer.features import list_extractors

    names = set(list_extractors())
    return all(p.name == MARKER or (p.is_dir() and p.name in names) for p in folder.iterdir())


def _fingerprint(args, cfg: FeatureStageConfig, jobs: dict) -> str:
    """What the outputs depend on: the section, the inputs (face indexes and shards' sizes and
    mtimes; the table's bytes and the clips' sizes and mtimes) and the code of stage2_mer.features."""
    if args.modality == "visual":
        inputs = {s: [file_digest(src / "index.jsonl"), stat_digest(sorted(src.glob("shard-*")))]
                  for s, src in jobs.items()}
    else:
        inputs = {"table": file_digest(args.utterances),
                  "clips": {s: stat_digest(path for _, path in items) for s, items in jobs.items()}}
    return fingerprint(
        {
            "modality": args.modality,
            "section": without_runtime(f"features.{args.modality}", to_dict(cfg)),
            "inputs": inputs,
            "code": package_code_digest(Path(__file__).resolve().parents[1] / "features"),
        }
    )


def _finished(folder: Path) -> bool:
    return (folder / META_NAME).is_file() and (folder / INDEX_NAME).is_file()  # meta.json is written last


def _run(args, cfg, ext, jobs: dict, out: Path, info: dict, unit: str, key: str) -> int:
    summary: dict = {"extractor": cfg.name, "modality": args.modality, "dim": ext.dim, "dtype": cfg.dtype,
                     "contract": ext.contract.to_dict(), "splits": {}}
    lengths_by_split = {}
    for split, src in jobs.items():
        if _finished(out / split):  # a resumed run: this split was finished before the interruption
            lengths_by_split[split] = lengths = FeatureReader(out / split).lengths()  # utt_id order
            summary["splits"][split] = split_summary(lengths)
            log.info("%s %s: finished before the interruption, kept", args.modality, split)
            continue
        n_utts = len(src) if isinstance(src, list) else None
        if n_utts is None:
            from stage1_face_extraction.store import FaceShardReader

            n_utts = len(FaceShardReader(src).utt_ids())
        done = {"amount": 0.0}
        t0 = time.perf_counter()
        with tqdm(total=n_utts, desc=f"{args.modality} {cfg.name} {split}", unit="utt") as bar:

            def progress(n: int, stats: dict) -> None:
                done["amount"] += stats.get(key, 0.0)
                bar.update(n)
                bar.set_postfix_str(f"{done['amount'] / max(time.perf_counter() - t0, 1e-9):.1f} {unit}/s")

            if args.modality == "visual":
                lengths = extract_visual_split(ext, src, out / split, cfg, progress, info=info)
            else:
                lengths = extract_audio_split(ext, src, out / split, cfg, progress, info=info)
        wall = time.perf_counter() - t0
        lengths_by_split[split] = lengths
        summary["splits"][split] = split_summary(lengths)
        log.info("%s %s: %s; %.1f %s/s", args.modality, split, summary["splits"][split],
                 done["amount"] / max(wall, 1e-9), unit)
    base = lengths_by_split.get("train") or [n for ls in lengths_by_split.values() for n in ls]
    summary["mean3std_len"] = length_cap(
        [n for n in base if n > 0] or [1], "mean+3std"
    )  # FacialMMT's cap, for reference
    data = (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode()  # deterministic: no wall times
    atomic_write_bytes(out / "summary.json", data)
    if args.summary:
        atomic_write_bytes(Path(args.summary), data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
