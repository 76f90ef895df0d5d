"""Stage-1 speed: frames/s, real-time factor, the ratio to decode-only time and the PROFILE per step.

    python benchmarks/stage1_speed.py --clips data/demo/MELD.Raw/train_splits --limit 20 [--workers 2]
    python benchmarks/stage1_speed.py --real-scenes /tmp/speed720 --width 1280 --height 720 --limit 20 \
        --asd '{"name": "av_sync"}' \
        --asd '{"name": "light_asd", "checkpoint": "../shared/models/light_asd/finetuning_TalkSet.model"}'
    python benchmarks/stage1_speed.py --stage --real-scenes /tmp/speed720 --width 1280 --height 720 --limit 18 \
        --json benchmarks/results/stage1_speed_cpu2.json

``--real-scenes DIR`` times REAL footage: scenes composed from the real talking heads in
``--sources`` (``stage1_face_extraction.composer``, made in DIR when its truth.json is absent),
``--width`` x ``--height``. Each ``--asd`` (a JSON object replacing ``stage1.asd``) is timed in turn
on the same clips; none = the params' scorer. ``--detector`` (a JSON object) replaces ``stage1.detector``.

Without ``--stage``: the per-clip pipeline (decode, shots, detection, tracking, speaking scores,
selection, aligned crops; no identity step, nothing written) with the ``stage1`` section of
params.yaml, after one warm-up clip, ``--workers`` (1: in this process with all torch threads).

With ``--stage``: the WHOLE ``extract_faces`` stage as ``dvc repro`` runs it (its own
``extract_split``: the ``ClipRunner`` with ``runtime.stage1.workers`` processes and
``stage1.torch_threads`` each unless ``--workers``, the identity step per dialogue (the scenes'
dialogues as ``benchmarks/stage1_real_scenes.py`` groups them, speakers named as a transcript
would), the journal, the JPEG shards and the manifest) into a temporary folder, with previews and
contact sheets off (a fixed 4 + 8 per split, not per clip). The worker start-up (model loading)
and a warm-up clip per worker are timed apart (``startup_s``: a MELD-sized run pays them once).

Both print a plain PyAV decode of the same clips and a PROFILE: the seconds of each step summed
over the clips (``record["timings"]``, ``stage1_face_extraction/clock.py``: decode = all three
decoding passes and the audio, shots = shot boundaries, detect = face detection, track, asd = mouth patches +
speaking scores + voice activity, identity = the identity embedder, crop = selection + alignment;
with ``--stage`` also write = journal + shards + manifest, in the parent process), each step's share
of their sum and its seconds per second of video. With several workers the steps run in parallel,
so their sum exceeds the wall time. Real-time factor = seconds of video per second of wall time
(goal on 2 CPU cores: >= 1.0 at 1280x720). ``--json F`` adds the run to F (JSON; a run of the same
mode, size, detector and scorer replaced), with the machine, the date and the load average, for
``facialmmt doctor`` (``benchmarks/results/stage1_speed_cpu2.json``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
from tqdm import tqdm

from stage1_face_extraction.clock import STEPS
from stage1_face_extraction.common.config import load_section
from stage1_face_extraction.executors import ClipJob, ClipRunner, run_jobs
from stage1_face_extraction.pipeline import FacePipeline
from stage1_face_extraction.section import Stage1Config
from stage1_face_extraction.video import iter_frames, probe

PROFILE_STEPS = (*STEPS, "write_s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=Path, default=Path("data/demo/MELD.Raw/train_splits"))
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--workers", type=int, help="1 = in-process (pipeline mode: with all torch threads); default: 1, "
                    "with --stage runtime.stage1.workers")
    ap.add_argument("--device", help="override stage1.detector.device (cpu, cuda)")
    ap.add_argument("--real-scenes", type=Path, help="folder of composed real scenes (made when absent)")
    ap.add_argument(
        "--sources", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "talking_heads"
    )
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--asd", action="append", default=[], help="JSON object replacing stage1.asd (repeatable)")
    ap.add_argument("--detector", help="JSON object replacing stage1.detector")
    ap.add_argument("--stage", action="store_true", help="time the whole extract_faces stage (identity, shards)")
    ap.add_argument("--json", type=Path, help="add the result to this JSON file")
    ap.add_argument("--note", default="", help="a remark stored with the run (e.g. 'machine under load')")
    ap.add_argument("--markdown", type=Path, metavar="F", help="only print the runs of the JSON file F as a markdown "
                    "table (benchmarks/README.md)")
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    truth = None
    if args.real_scenes:
        clips, truth = real_scene_clips(args)
        # spread over the scene types
        spread = {round(k * len(clips) / args.limit) for k in range(args.limit)} & set(range(len(clips)))
        clips = [clips[i] for i in sorted(spread)]
    else:
        clips = sorted(args.clips.glob("*.mp4"))[: args.limit]
    if not clips:
        print(f"no clips under {args.clips} (run `dvc repro make_demo` first)", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    n_frames = sum(1 for c in clips for _ in iter_frames(c))
    video_s = sum(probe(c).duration_s for c in clips)
    t0 = time.perf_counter()
    for c in clips:
        for _ in iter_frames(c):
            pass
    decode_s = time.perf_counter() - t0
    info = probe(clips[0])
    print(f"clips {len(clips)}, frames {n_frames}, video {video_s:.1f} s, {info.width}x{info.height}")
    print(f"decode only: {decode_s:.2f} s ({n_frames / decode_s:.0f} fps, {video_s / decode_s:.1f}x real time)")
    runs = []
    for asd in args.asd or [None]:
        cfg = load_section(args.params, "stage1", Stage1Config)
        if asd:
            cfg.asd = json.loads(asd)
        if args.detector:
            cfg.detector = json.loads(args.detector)
        if args.device:
            cfg.detector["device"] = args.device
        if args.stage:
            workers = cfg.workers if args.workers is None else args.workers
            run = time_stage(cfg, clips, truth, workers)
        else:
            run = time_stage1(cfg, clips, args.workers or 1)
        run.update(width=info.width, height=info.height, clips=len(clips), frames=n_frames, video_s=round(video_s, 2),
                   decode_only_s=round(decode_s, 2))
        report(run, n_frames, decode_s)
        runs.append(run)
    if args.json:
        write_json(args.json, runs, args, load_before, sys.argv[1:] if argv is None else list(argv))
        print(f"wrote {args.json}")
    return 0


def real_scene_clips(args: argparse.Namespace) -> tuple[list[Path], dict]:
    """The composed scenes' clips in ``--real-scenes`` (composed first when absent) and the truth."""
    from stage1_face_extraction.composer import SceneConfig, compose_scenes, load_sources

    if not (args.real_scenes / "truth.json").is_file():
        if not args.sources.is_dir():
            raise SystemExit(
                f"source clips not found: {args.sources} (real talking heads, ../shared/data/talking_heads)"
            )
        cfg = SceneConfig(seed=args.seed, width=args.width, height=args.height, per_type=max(1, args.limit // 9 + 1))
        compose_scenes(load_sources(args.sources, sample_rate=cfg.sample_rate), args.real_scenes, cfg)
    truth = json.loads((args.real_scenes / "truth.json").read_text())
    return [args.real_scenes / c["path"] for _, c in sorted(truth["clips"].items())], truth


def profile_of(records: list[dict], extra: dict[str, float] | None = None) -> dict[str, float]:
    """Seconds per step summed over the clips' ``timings`` (+ ``extra``: the parent's write_s)."""
    parts = {k: 0.0 for k in STEPS}
    for rec in records:
        for k in STEPS:
            parts[k] += rec.get("timings", {}).get(k, 0.0)
    for k, v in (extra or {}).items():
        parts[k] = parts.get(k, 0.0) + v
    return {k: round(v, 3) for k, v in parts.items()}


def time_stage1(cfg: Stage1Config, clips: list[Path], workers: int) -> dict:
    """Time the per-clip pipeline with ``cfg`` on ``clips`` (no identity step, nothing written)."""
    if workers <= 1:
        pipe = FacePipeline(cfg)
        pipe.process(clips[0])  # warm-up: model load, first-call allocations
        t0 = time.perf_counter()
        results = [pipe.process(c) for c in tqdm(clips, desc="stage 1 (pipeline)", unit="clip")]
        wall = time.perf_counter() - t0
    else:
        t0 = time.perf_counter()
        results = [r for _, r in tqdm(run_jobs(cfg, [ClipJob(str(c)) for c in clips], workers), total=len(clips),
                                      desc="stage 1 (pipeline)", unit="clip")]
        wall = time.perf_counter() - t0  # includes worker start-up (model load per worker)
    return {
        "mode": "pipeline",
        "workers": workers,
        "torch_threads": torch.get_num_threads() if workers <= 1 else cfg.torch_threads,
        "wall_s": round(wall, 2),
        "config": {**_config(cfg), "identity": "none", "embedder": None},
        "statuses": _statuses(r.record for r in results),
        "profile": profile_of([r.record for r in results]),
    }


def stage_table(clips: list[Path], truth: dict | None):
    """An utterance table (the ``prepare`` stage's columns) for ``clips``: with the scenes' truth,
    dialogues and speakers as ``benchmarks/stage1_real_scenes.py`` makes them; else one dialogue per
    5 clips, no speaker names. Returns (table, meld_root)."""
    import pandas as pd

    from stage1_face_extraction.meld import TABLE_COLUMNS

    root = Path(os.path.commonpath([str(c.parent) for c in clips]))
    by_path, groups = {}, {}
    if truth is not None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from stage1_real_scenes import dialogue_groups

        groups = dialogue_groups(truth, "dialogue", 0, 0)
        by_path = {str(Path(c["path"])): (k, c) for k, c in truth["clips"].items()}
    dia_ids: dict[str, int] = {}
    rows = []
    for i, clip in enumerate(clips):
        rel = clip.relative_to(root)
        key, c = next(((k, c) for p, (k, c) in by_path.items() if clip.as_posix().endswith(p)), (None, {}))
        group = groups.get(key, f"g{i // 5}")
        dia = dia_ids.setdefault(group, len(dia_ids))
        utt = f"dia{dia}_utt{i}"
        rows.append({"split": "train", "utt_id": utt, "dialogue_id": dia, "utterance_id": i,
                     "speaker": c.get("speaker_person", c.get("speaker", "Speaker")), "clip": rel.as_posix()})
    df = pd.DataFrame(rows)
    for col in TABLE_COLUMNS:  # the columns extract_faces does not read: neutral values
        if col not in df.columns:
            df[col] = 1 if col in ("season", "episode", "sr_no") else ""
    return df, root


def time_stage(cfg: Stage1Config, clips: list[Path], truth: dict | None, workers: int) -> dict:
    """Time ``extraction.extract_split`` (the stage's own code) on ``clips`` into a temporary folder."""
    from stage1_face_extraction.extraction import extract_split

    cfg.previews = 0
    cfg.contact_sheets = 0
    cfg.identity.sheets = 0
    table, root = stage_table(clips, truth)
    extra: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="stage1_speed_") as tmp:
        t0 = time.perf_counter()
        with ClipRunner(cfg, workers) as runner:
            # warm-up (model loading in every worker, first-call allocations): one clip per worker
            # into another folder; a MELD-sized run pays it once
            extract_split(runner, table.iloc[: max(1, workers)], root, Path(tmp) / "warmup" / "train", "train",
                          Path(tmp) / "warmup_pictures")
            startup = time.perf_counter() - t0
            t0 = time.perf_counter()
            extract_split(runner, table, root, Path(tmp) / "faces" / "train", "train", Path(tmp) / "pictures",
                          profile=extra)
            wall = time.perf_counter() - t0
        from stage1_face_extraction.store import read_manifest

        records = read_manifest(Path(tmp) / "faces" / "train" / "manifest.jsonl", with_timings=True)
        disk = sum(p.stat().st_size for p in (Path(tmp) / "faces").rglob("*") if p.is_file())
    return {"mode": "stage", "workers": workers, "torch_threads": cfg.torch_threads, "wall_s": round(wall, 2),
            "startup_s": round(startup, 2),
            "config": _config(cfg), "statuses": _statuses(records), "profile": profile_of(records, extra),
            "output_bytes": disk, "crops": sum(len(r["frames"]) for r in records)}


def _config(cfg: Stage1Config) -> dict:
    return {"detector": cfg.detector, "asd": cfg.asd, "identity": cfg.identity.scope,
            "embedder": cfg.identity.embedder.get("name") if cfg.identity.enabled else None}


def _statuses(records) -> dict[str, int]:
    return dict(sorted(Counter(r["status"] for r in records).items()))


def report(run: dict, n_frames: int, decode_s: float) -> None:
    """Print the run's figures and its PROFILE."""
    wall, video_s = run["wall_s"], run["video_s"]
    run["realtime_x"] = round(video_s / wall, 3)
    prof = run["profile"]
    total = sum(prof.values()) or 1e-9
    run["per_video_s"] = {k: round(v / video_s, 4) for k, v in prof.items()}
    cfg = run["config"]
    print(f"[{run['mode']}] detector {cfg['detector'].get('name')}, scorer {cfg['asd'].get('name')}, identity "
          f"{cfg['identity']} ({cfg['embedder']}), device {cfg['detector'].get('device', 'auto')} (cuda available: "
          f"{torch.cuda.is_available()}), workers {run['workers']} x {run['torch_threads']} torch threads")
    print(f"stage 1:     {wall:.2f} s ({n_frames / wall:.1f} fps), real-time factor {run['realtime_x']:.2f}, "
          f"{wall / decode_s:.1f}x decode-only time; statuses {run['statuses']}"
          + (f"; start-up + warm-up {run['startup_s']:.1f} s (not in the wall time)" if "startup_s" in run else ""))
    print("PROFILE (seconds summed over clips; share of their sum; seconds per second of video):")
    for k, v in prof.items():
        print(f"  {k.removesuffix('_s'):<9} {v:8.2f} s  {100 * v / total:5.1f} %  {v / video_s:6.3f}")
    print(
        f"  {'sum':<9} {total:8.2f} s  100.0 %  {total / video_s:6.3f}   (wall {wall:.2f} s, {run['workers']} workers)"
    )


def markdown(data: dict) -> str:
    """The runs of a ``--json`` file as a markdown table: real-time factor and the profile's shares."""
    steps = [k for k in PROFILE_STEPS if any(k in r["profile"] for r in data["runs"])]
    lines = ["| mode | size | detector | workers | clips (video) | real-time factor | "
             + " | ".join(k.removesuffix("_s") for k in steps) + " | date, load average |",
             "|---" * (6 + len(steps) + 1) + "|"]
    for r in data["runs"]:
        total = sum(r["profile"].values()) or 1.0
        lines.append(
            f"| {r['mode']} | {r['width']}x{r['height']} | {r['config']['detector']['name']} | {r['workers']} | "
            f"{r['clips']} ({r['video_s']:.0f} s) | **{r['realtime_x']:.2f}x** | "
            + " | ".join(
                f"{100 * r['profile'].get(k, 0.0) / total:.0f} % ({r['profile'].get(k, 0.0) / r['video_s']:.3f})"
                for k in steps
            )
            + f" | {r.get('date', '?')}, {r.get('load_avg', ['?'])[0]} |"
        )
    return "\n".join(lines)


def machine() -> dict:
    """Where the run happened: CPU model, cores, Python, torch."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "os": platform.platform(),
    }


def _same(run: dict) -> tuple:
    """What makes two runs the same measurement (the later one replaces the earlier)."""
    return (run["mode"], run["width"], run["height"], json.dumps(run["config"]["detector"], sort_keys=True),
            json.dumps(run["config"]["asd"], sort_keys=True))


def write_json(path: Path, runs: list[dict], args: argparse.Namespace, load_before: tuple[float, ...],
               argv: list[str]) -> None:
    """Add ``runs`` to the JSON at ``path`` (a run of the same mode, size, detector and scorer is replaced)."""
    data = json.loads(path.read_text()) if path.is_file() else {"benchmark": "benchmarks/stage1_speed.py", "runs": []}
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    for run in runs:
        run.update(date=now, machine=machine(), load_avg=[round(x, 2) for x in load_before],
                   load_avg_after=[round(x, 2) for x in os.getloadavg()], note=args.note,
                   command="python benchmarks/stage1_speed.py " + " ".join(argv))
        data["runs"] = [r for r in data["runs"] if _same(r) != _same(run)] + [run]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
