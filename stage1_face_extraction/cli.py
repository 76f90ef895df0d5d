"""``facialmmt faces``: the speaker's face sequence of any video.

    facialmmt faces VIDEO... --out DIR [--speaker NAME [--reference IMAGE_OR_DIR]] [--preview] [--params params.yaml]

``--reference`` names the face tracks from reference photos (the ``stage1.identity.embedder``,
dlib ResNet by default): one image or a folder of images of ``--speaker`` (required then), or a
folder of ``NAME/`` sub-folders (one per person; ``--speaker`` picks whom to select). The video's
tracks are clustered and named as a dialogue's are (``identity.group``). Only the tracks named
``--speaker`` are eligible (when any is); the manifest frames and track summaries carry
``identity`` / ``identity_score`` / ``cluster``.

Writes, in DIR: face shards + ``index.jsonl`` (read them with
``stage1_face_extraction.store.FaceShardReader``), ``manifest.jsonl`` (one record per video, see
``stage1_face_extraction/SCHEMA.md``), ``timings.jsonl``, one contact-sheet PNG per video
(``<name>.faces.png``: the chosen faces in order, labelled with source frame numbers) and, with
``--preview``, ``<name>.preview.mp4`` (every track boxed, the speaker highlighted, the speaking
score drawn). Each video's manifest row is appended to ``manifest.jsonl`` (flushed and fsynced) as
soon as the video is done, so a crash or a kill keeps the rows of the videos finished before it;
at the end the file is rewritten sorted by key. The face shards are written when complete (every
``stage1.utts_per_shard`` videos) and at the end.

One video never stops the run: bad input gets its manifest status (missing, decode_error, no_face,
no_speaker, no_audio); a video whose processing raises gets status ``error`` with the exception
(``"<type>: <message>"``) in ``reason``. A contact sheet or preview that cannot be drawn is only
logged. Exit status: 0 when every video got a record other than ``error`` (bad input included);
1 when any video has status ``error``; 2 for bad arguments or a bad params file.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

import cv2
from tqdm import tqdm

from stage1_face_extraction.common.atomic import DISK_FULL, atomic_write_bytes
from stage1_face_extraction.common.config import ConfigError, from_dict, load_params, with_runtime
from stage1_face_extraction.common.logs import setup_logging
from stage1_face_extraction.executors import ClipJob, error_result
from stage1_face_extraction.pipeline import FacePipeline
from stage1_face_extraction.section import Stage1Config
from stage1_face_extraction.store import NO_FRAMES, FaceShardWriter, ManifestAppender, contact_sheet, write_manifest

log = logging.getLogger("facialmmt.faces")


def video_key(path: Path, taken: set[str]) -> str:
    """A shard-safe, unique key for a video file name (``dia0_utt0.mp4`` -> ``dia0_utt0``)."""
    base = re.sub(r"[^A-Za-z0-9_.\-]", "_", path.stem) or "video"
    key, k = base, 1
    while key in taken:
        k += 1
        key = f"{base}-{k}"
    taken.add(key)
    return key


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="facialmmt faces", description=__doc__.split("\n\n")[0])
    ap.add_argument("videos", nargs="+", type=Path, help="video files")
    ap.add_argument("--out", required=True, type=Path, help="output folder")
    ap.add_argument("--speaker", help="name of the expected speaker (recorded in the manifest)")
    ap.add_argument(
        "--reference", type=Path, metavar="IMAGE_OR_DIR",
        help="reference photo(s) of --speaker, or a folder of NAME/ sub-folders of photos",
    )
    ap.add_argument("--preview", action="store_true", help="also write an annotated MP4 per video")
    ap.add_argument(
        "--params", type=Path, help="params.yaml whose `stage1` section to use (default: built-in defaults)"
    )
    ap.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(logging.WARNING if args.quiet else logging.INFO)
    try:
        params = load_params(args.params) if args.params else {}
        cfg = from_dict(Stage1Config, with_runtime(params, "stage1", params.get("stage1", {})), "stage1")
        pipe = FacePipeline(cfg)  # checks the detector / scorer names and keys (stage1.detector.*, ...)
    except (ConfigError, ValueError, TypeError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    if args.out.exists() and not args.out.is_dir():
        log.error("--out %s exists and is not a folder", args.out)
        return 2
    references = None
    embedder = None
    if args.reference is not None:
        from stage1_face_extraction.identity import NoFaceError, load_references, reference_layout

        try:
            layout = reference_layout(args.reference)
            if layout != "named_folders" and not args.speaker:
                log.error(
                    "--reference %s is a single person's photo(s): give their name with --speaker", args.reference
                )
                return 2
            embedder = pipe.identity_embedder or cfg.identity.create_embedder()
            references = load_references(args.reference, name=args.speaker, embedder=embedder)
        except NoFaceError as exc:
            log.error("--reference: no face found in %s", exc.path)
            return 2
        except (FileNotFoundError, ValueError) as exc:
            log.error("--reference: %s", exc)
            return 2
        if args.speaker and args.speaker not in references:
            log.error("--speaker %r is not among the reference names: %s", args.speaker, ", ".join(sorted(references)))
            return 2
        log.info("references: %s", ", ".join(f"{k} ({len(v)} photo(s))" for k, v in sorted(references.items())))
    args.out.mkdir(parents=True, exist_ok=True)
    pipe.identity_embedder = embedder
    taken: set[str] = set()
    keys = [video_key(v, taken) for v in args.videos]
    records = []
    with (
        FaceShardWriter(
            args.out, utts_per_shard=cfg.utts_per_shard, jpeg_quality=cfg.jpeg_quality, plan=sorted(keys)
        ) as writer,
        ManifestAppender(args.out / "manifest.jsonl") as manifest,
    ):
        for video, key in tqdm(list(zip(args.videos, keys)), desc="videos", unit="clip", disable=args.quiet):
            try:
                res = pipe.process(video, utt_id=key, speaker=args.speaker, clip=str(video), references=references)
            except Exception as exc:  # noqa: BLE001 - this video's row says what failed; the others go on
                res = error_result(ClipJob(path=str(video), utt_id=key, speaker=args.speaker, clip=str(video)), exc,
                                   cfg.face_size)
            manifest.append(res.record)  # on disk now, whatever happens to the next videos
            writer.add(key, res.crops)
            records.append(res.record)
            _pictures(args, video, key, res)
            log.info("%s: %s, %d faces", video, res.record["status"], len(res.record["frames"]))
    write_manifest(args.out / "manifest.jsonl", records)  # sorted by key: the same bytes in any order
    errors = [r["utt_id"] for r in records if r["status"] == "error"]
    if errors:
        log.error("%d video(s) failed with status error (%s): exit status 1", len(errors), ", ".join(errors))
        return 1
    return 0


def _pictures(args: argparse.Namespace, video: Path, key: str, res) -> None:
    """The contact sheet and (``--preview``) the preview of one video. A picture that cannot be drawn
    is logged and skipped (the faces and the record are stored already); a full disk is not."""
    try:
        sheet = contact_sheet(res.crops, cols=10, labels=[f["frame"] for f in res.record["frames"]])
        ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        atomic_write_bytes(args.out / f"{key}.faces.png", png.tobytes())
        if args.preview and res.record["status"] not in NO_FRAMES:
            from stage1_face_extraction.preview import write_preview

            write_preview(video, res, args.out / f"{key}.preview.mp4")
    except Exception as exc:  # noqa: BLE001 - pictures only
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            raise
        log.warning("%s: contact sheet / preview not drawn (%s: %s)", video, type(exc).__name__, exc)
        for leftover in args.out.glob(f"{key}.preview.mp4.tmp*"):
            leftover.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
