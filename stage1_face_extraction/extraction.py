"""Stage 1 over an utterance table, resumably: the library behind the ``extract_faces`` stage.

:func:`run_extract_faces` runs the splits (a run marker, ``common/runstate.py``: resume an
interrupted run of the same inputs, else start over); :func:`extract_split` processes one split
(shards, manifest, identities, journals: ``journal.py``) and draws its pictures (contact sheets,
identity sheets, previews). What the stage writes, and how it resumes: ``stages/extract_faces.py``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path

import cv2
from tqdm import tqdm

from stage1_face_extraction.common.atomic import DISK_FULL, atomic_write_bytes
from stage1_face_extraction.common.config import to_dict, without_runtime
from stage1_face_extraction.common.runstate import (
    MARKER,
    OWNER,
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
from stage1_face_extraction.journal import ID_JOURNAL, JOURNAL, Journal, load_journal, split_finished
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

log = logging.getLogger(__name__)
STAGE = "extract_faces"


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
    records = {u: r for u, r in load_journal(journal_path).items() if u in writer}
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
    reports = {r["group"]: r for r in load_journal(id_journal_path, key="group").values()}
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
        id_journal.append(report)
        reports[gi.group] = report
        if gi.group in sheet_groups:  # keep the thumbnails of those only
            identified.append(gi)

    with Journal(journal_path, default=float) as journal, Journal(id_journal_path) as id_journal, \
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
            journal.append(rec)
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
            "code": package_code_digest(Path(__file__).resolve().parent),
        }
    )


def is_split_folder(folder: Path) -> bool:
    """Outputs written before the ownership file (runstate.OWNER): split folders of this stage."""
    names = {"manifest.jsonl", "index.jsonl", JOURNAL, "sheets", "previews", "identity_sheets"}
    return all(p.name in (MARKER, OWNER) or (p.is_dir() and (not any(p.iterdir()) or any(
        (p / n).exists() for n in names))) for p in folder.iterdir())


def run_extract_faces(cfg: Stage1Config, table, table_path: str | Path, meld_root: Path, out: Path, splits: list[str],
                      pictures: Path | None = None, references=None, workers: int | None = None,
                      summary_path: Path | None = None) -> int:
    """The ``extract_faces`` stage over ``splits`` of the utterance table ``table`` (read from
    ``table_path``): resumes an interrupted run of the same inputs, else starts over (see
    ``stages/extract_faces.py``); ``workers`` overrides ``runtime.stage1.workers``. Returns the exit
    status: 0, or 1 when clips ended with status ``error`` (a rerun retries them)."""
    # `dvc repro` keeps data/faces (persist: true): a rerun after a kill resumes when nothing the
    # outputs depend on changed, and starts over otherwise (common/runstate.py).
    pictures = Path(pictures) if pictures else out.with_name(out.name + "_pictures")
    for folder in (out, pictures):
        check_own_output(folder, STAGE, legacy=is_split_folder)  # never empty a folder of someone else's
    state = RunState(out, run_fingerprint(cfg, table_path, table, meld_root), stage=STAGE)

    def clear(how: str) -> None:
        if how != "resume":  # another run's outputs (finished, or interrupted with other inputs): never mixed
            remove(p for split in splits for p in (out / split, pictures / split))

    how = state.begin(clear)
    claim_output(pictures, STAGE)
    counts_of: dict[str, Counter] = {}
    for split in splits:
        folder = out / split
        if how == "resume" and split_finished(folder):
            (folder / ID_JOURNAL).unlink(missing_ok=True)
            counts_of[split] = Counter(r["status"] for r in read_manifest(folder / "manifest.jsonl"))
            log.info("%s: finished before the interruption, kept", split)
    summary = {}
    with ClipRunner(cfg, workers, references=references) as runner:
        for split in splits:
            if split not in counts_of:
                counts_of[split] = extract_split(runner, table[table["split"] == split], meld_root, out / split, split,
                                                 pictures / split)
            counts = counts_of[split]
            summary[split] = {"clips": int(sum(counts.values())), **{k: int(v) for k, v in sorted(counts.items())}}
            log.info("%s: %s", split, ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if summary_path:
        atomic_write_bytes(Path(summary_path), (json.dumps(summary, indent=2) + "\n").encode())
    errors = sum(c["error"] for c in counts_of.values())
    if errors:
        # the run is not complete: the marker stays, and a rerun of the same inputs resumes and retries
        # those clips only (with other inputs it starts over)
        log.error("%d clip(s) failed with status error: exit status 1; rerun to retry them", errors)
        return 1
    state.finish()
    return 0
