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
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
from tqdm import tqdm

from stage1_face_extraction.common.atomic import DISK_FULL, atomic_write_bytes
from stage1_face_extraction.common.config import ConfigError, load_section, to_dict, without_runtime
from stage1_face_extraction.common.logs import setup_logging
from stage1_face_extraction.common.runstate import (
    MARKER,
    OWNER,
    ForeignOutputError,
    RunState,
    check_own_output,
    claim_output,
    file_digest,
    fingerprint,
    package_code_digest,
    remove,
    stat_digest,
)
from stage1_face_extraction.executors import ClipJob, ClipRunner
from stage1_face_extraction.identity.group import group_key
from stage1_face_extraction.meld import MeldFormatError, read_utterance_table
from stage1_face_extraction.pipeline import FacePipeline
from stage1_face_extraction.preview import write_preview
from stage1_face_extraction.section import Stage1Config
from stage1_face_extraction.store import (
    NO_FRAMES,
    FaceShardReader,
    FaceShardWriter,
    ManifestAppender,
    contact_sheet,
    read_manifest,
    write_identities,
    write_manifest,
)

log = logging.getLogger("facialmmt.extract_faces")
STAGE = "extract_faces"
JOURNAL = ".journal.jsonl"
ID_JOURNAL = ".identities.journal.jsonl"


def _load_journal(path: Path, key: str = "utt_id") -> dict[str, dict]:
    out: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
                continue
            out[rec[key]] = rec
    return out


def write_contact_sheets(out: Path, records: dict[str, dict], limit: int, pictures: Path) -> list[Path]:
    """PNG contact sheets (crops in order, labelled with source frame numbers) of the first
    ``limit`` clips with faces, in utt_id order, read back from the shards in ``out``, written to
    ``pictures/sheets``."""
    reader = FaceShardReader(out)
    written = []
    for utt_id in sorted(u for u, r in records.items() if r["frames"])[:limit]:
        crops = reader.read(utt_id)
        sheet = contact_sheet(crops, cols=10, labels=[f["frame"] for f in records[utt_id]["frames"]])
        ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        path = pictures / "sheets" / f"{utt_id}.png"
        atomic_write_bytes(path, png.tobytes())
        written.append(path)
    return written


def write_identity_sheets(pictures: Path, groups: list, limit: int) -> list[Path]:
    """PNG per group (first ``limit`` groups with clusters): one face per identity cluster, labelled
    with its name and confidence (``? #k`` when unnamed)."""
    written = []
    for gi in groups[:limit]:
        tiles, labels = gi.sheet_tiles()
        if not tiles:
            continue
        sheet = contact_sheet(tiles, cols=8, labels=labels)
        ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        path = pictures / "identity_sheets" / f"{gi.group.replace('/', '_')}.png"
        atomic_write_bytes(path, png.tobytes())
        written.append(path)
    return written


def _preview(clip: str, res, path: Path) -> None:
    """Draw a clip's preview; a clip that cannot be drawn costs its preview only (logged), never
    the run. A full disk is not swallowed (the run must stop there and resume later)."""
    try:
        write_preview(clip, res, path)
    except Exception as exc:  # a preview is a picture, not an output the stages read
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            raise
        log.warning("%s: no preview (%s: %s)", clip, type(exc).__name__, exc)
        for leftover in path.parent.glob(f"{path.name}.tmp*"):
            leftover.unlink(missing_ok=True)


def extract_split(runner: ClipRunner, rows, meld_root: Path, out: Path, split: str,
                  pictures: Path | None = None, profile: dict[str, float] | None = None) -> Counter:
    """Process one split's utterances (a DataFrame slice) into ``out`` (its pictures into
    ``pictures``, default ``<out>_pictures``); returns status counts.

    ``profile``: when given, the seconds this process spends storing the results (journal, shard
    JPEGs and tar files, manifest rows; the pictures not included) are added to its ``write_s``
    (``benchmarks/stage1_speed.py``; the per-clip steps are in each record's ``timings``)."""
    profile = {} if profile is None else profile
    pictures = pictures if pictures is not None else out.with_name(out.name + "_pictures")
    cfg = runner.cfg
    out.mkdir(parents=True, exist_ok=True)
    scope = cfg.identity.scope
    rows = rows.sort_values("utt_id")
    if scope != "none":
        # groups contiguous (the runner's rule), in the order of their first utt_id (~ the plan)
        rows = rows.assign(group=[
            group_key(scope, split, r.dialogue_id, r.season, r.episode, r.utt_id) for r in rows.itertuples()
        ])
        rows = rows.assign(first=rows.groupby("group")["utt_id"].transform("min")).sort_values(["first", "utt_id"])
    plan = sorted(rows["utt_id"].tolist())
    writer = FaceShardWriter(out, utts_per_shard=cfg.utts_per_shard, jpeg_quality=cfg.jpeg_quality, plan=plan)
    journal_path = out / JOURNAL
    journal = _load_journal(journal_path)
    records = {u: r for u, r in journal.items() if u in writer}
    failed = {u for u, r in records.items() if r["status"] == "error"}
    if failed:
        # clips whose processing raised last time are not done: retry them, with their whole group
        # (its identity step saw them fail) and the shards holding any of those (rewritten whole)
        n_failed = len(failed)
        if scope != "none":
            bad_groups = set(rows.loc[rows["utt_id"].isin(failed), "group"])
            failed |= set(rows.loc[rows["group"].isin(bad_groups), "utt_id"])
        again = writer.redo(failed)
        for u in again:
            records.pop(u, None)
        log.info("%s: retrying %d clip(s) that had status error (%d clips redone in all)", split, n_failed,
                 len(again))
    id_journal_path = out / ID_JOURNAL
    reports = {r["group"]: r for r in _load_journal(id_journal_path, key="group").values()}
    preview_dir = pictures / "previews"
    preview_utts = set(plan[: max(0, cfg.previews)])
    # a stored clip (resume) whose preview was not drawn yet is finished again, for its preview only
    redraw = {u for u in preview_utts if u in records and records[u]["status"] not in NO_FRAMES
              and not (preview_dir / f"{u}.mp4").exists()}
    jobs = []
    for r in rows.itertuples():
        g = getattr(r, "group", None)
        jobs.append(ClipJob(path=str(meld_root / r.clip), utt_id=r.utt_id, speaker=r.speaker, clip=r.clip, group=g,
                            write=r.utt_id not in records, preview=r.utt_id in redraw))
    if scope != "none":
        # A group whose clips are all stored needs no identity step again, unless its report was
        # lost or it is among the first `identity.sheets` groups (their pictures are drawn at the end).
        order = list(dict.fromkeys(j.group for j in jobs))
        pending = {j.group for j in jobs if j.write or j.preview} | {g for g in order if g not in reports}
        sheet_groups = set(sorted(order)[: cfg.identity.sheets])
        pending |= sheet_groups
        jobs = [j for j in jobs if j.group in pending]
    else:
        jobs = [j for j in jobs if j.write or j.preview]
        sheet_groups = set()
    if records:
        log.info("%s: resuming, %d of %d clips already done", split, len(records), len(plan))
    identified = []

    def on_group(gi) -> None:
        # journal the group's report before any of its clips: a stored clip always has its group's report
        report = gi.report()
        idf.write(json.dumps(report) + "\n")
        idf.flush()
        os.fsync(idf.fileno())
        reports[gi.group] = report
        if gi.group in sheet_groups:  # keep the thumbnails of those only
            identified.append(gi)

    for path in (journal_path, id_journal_path):  # a line cut by a kill: the next line starts afresh
        if path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            with open(path, "a", encoding="utf-8") as fh:
                fh.write("\n")
    with open(journal_path, "a", encoding="utf-8") as jf, open(id_journal_path, "a", encoding="utf-8") as idf, \
            ManifestAppender(out / "manifest.jsonl", records.values()) as manifest, \
            tqdm(total=len(plan), initial=len(records), desc=f"faces {split}", unit="clip") as bar:
        for job, res in runner.map(jobs, on_group=on_group):
            rec = res.record
            if job.utt_id in preview_utts and rec["status"] not in NO_FRAMES:
                _preview(job.path, res, preview_dir / f"{job.utt_id}.mp4")  # before the journal: kept on resume
            if not job.write:  # stored before a resume: its preview only
                continue
            t_write = time.perf_counter()
            # Journal first, then the shard: a clip in a finished shard always has its record, so
            # a kill at any point never makes a resumed run redo a stored clip.
            jf.write(json.dumps(rec, default=float) + "\n")
            jf.flush()
            os.fsync(jf.fileno())
            writer.add(job.utt_id, res.crops)
            manifest.append(rec)  # the row, readable now (the journal above is what a resume reads)
            records[job.utt_id] = rec
            profile["write_s"] = profile.get("write_s", 0.0) + time.perf_counter() - t_write
            bar.update(1)
            bar.set_postfix_str(rec["status"])
    t_write = time.perf_counter()
    writer.close()
    write_manifest(out / "manifest.jsonl", records.values())  # sorted: the bytes do not depend on the order above
    profile["write_s"] = profile.get("write_s", 0.0) + time.perf_counter() - t_write
    write_contact_sheets(out, records, cfg.contact_sheets, pictures)
    if scope != "none":
        write_identities(out / "identities.jsonl", reports.values())
        write_identity_sheets(pictures, sorted(identified, key=lambda g: g.group), cfg.identity.sheets)
    counts = Counter(r["status"] for r in records.values())
    if counts["error"]:
        # not finished: the journals stay, so that a rerun of the same inputs resumes and retries them
        log.error("%s: %d clip(s) with status error (the manifest's reason says why); a rerun retries them",
                  split, counts["error"])
        return counts
    id_journal_path.unlink(missing_ok=True)
    journal_path.unlink(missing_ok=True)  # last: a split folder without a journal is finished
    return counts


def main(argv: list[str] | None = None) -> int:
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
        return _run(args, cfg, references, table, meld_root, out, splits)
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


def run_fingerprint(cfg: Stage1Config, table_path: str | Path, table, meld_root: Path) -> str:
    """What the outputs depend on: the stage1 params (not the runner knobs), the utterance table's bytes,
    the clips (paths, sizes, mtimes) and this package's code. A rerun resumes an interrupted run only when it
    is equal."""
    return fingerprint(
        {
            "stage1": without_runtime("stage1", to_dict(cfg)),
            "table": file_digest(table_path),
            "meld_root": str(meld_root),
            "clips": stat_digest(meld_root / c for c in table["clip"]),
            "code": package_code_digest(Path(__file__).resolve().parents[1]),
        }
    )


def _finished(folder: Path) -> bool:
    """A split folder that a run completed (its journal, removed last, is gone)."""
    return (folder / "manifest.jsonl").is_file() and not (folder / JOURNAL).exists()


def _is_split_folder(folder: Path) -> bool:
    """Outputs written before the ownership file (runstate.OWNER): split folders of this stage."""
    names = {"manifest.jsonl", "index.jsonl", JOURNAL, "sheets", "previews", "identity_sheets"}
    return all(p.name in (MARKER, OWNER) or (p.is_dir() and (not any(p.iterdir()) or any(
        (p / n).exists() for n in names))) for p in folder.iterdir())


def _run(args, cfg: Stage1Config, references, table, meld_root: Path, out: Path, splits: list[str]) -> int:
    # `dvc repro` keeps data/faces (persist: true): a rerun after a kill resumes when nothing the
    # outputs depend on changed, and starts over otherwise (common/runstate.py).
    pictures = Path(args.pictures) if args.pictures else out.with_name(out.name + "_pictures")
    for folder in (out, pictures):
        check_own_output(folder, STAGE, legacy=_is_split_folder)  # never empty a folder of someone else's
    state = RunState(out, run_fingerprint(cfg, args.utterances, table, meld_root), stage=STAGE)

    def clear(how: str) -> None:
        if how != "resume":  # another run's outputs (finished, or interrupted with other inputs): never mixed
            remove(p for split in splits for p in (out / split, pictures / split))

    how = state.begin(clear)
    claim_output(pictures, STAGE)
    counts_of: dict[str, Counter] = {}
    for split in splits:
        folder = out / split
        if how == "resume" and _finished(folder):
            (folder / ID_JOURNAL).unlink(missing_ok=True)
            counts_of[split] = Counter(r["status"] for r in read_manifest(folder / "manifest.jsonl"))
            log.info("%s: finished before the interruption, kept", split)
    summary = {}
    with ClipRunner(cfg, args.workers, references=references) as runner:
        for split in splits:
            if split not in counts_of:
                counts_of[split] = extract_split(runner, table[table["split"] == split], meld_root, out / split, split,
                                                 pictures / split)
            counts = counts_of[split]
            summary[split] = {"clips": int(sum(counts.values())), **{k: int(v) for k, v in sorted(counts.items())}}
            log.info("%s: %s", split, ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if args.summary:
        atomic_write_bytes(Path(args.summary), (json.dumps(summary, indent=2) + "\n").encode())
    errors = sum(c["error"] for c in counts_of.values())
    if errors:
        # the run is not complete: the marker stays, and a rerun of the same inputs resumes and retries
        # those clips only (with other inputs it starts over)
        log.error("%d clip(s) failed with status error: exit status 1; rerun to retry them", errors)
        return 1
    state.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
