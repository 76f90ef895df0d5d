"""Stage-1 speed: frames/s, real-time factor and the ratio to decode-only time.

    python benchmarks/stage1_speed.py --clips data/demo/MELD.Raw/train_splits --limit 20 [--workers 2]
    python benchmarks/stage1_speed.py --real-scenes /tmp/speed720 --width 1280 --height 720 --limit 20 \
        --asd '{"name": "av_sync"}' --asd '{"name": "light_asd", "checkpoint": "../shared/models/light_asd/finetuning_TalkSet.model"}'

``--real-scenes DIR`` times REAL footage: scenes composed from the real talking heads in
``--sources`` (``stage1_face_extraction.composer``, made in DIR when its truth.json is absent),
``--width`` x ``--height``. Each ``--asd`` (a JSON object replacing ``stage1.asd``) is timed in turn
on the same clips; none = the params' scorer.

Runs the whole per-clip pipeline (decode, shots, detection, tracking, speaking scores, selection,
aligned crops) with the ``stage1`` section of params.yaml, after one warm-up clip, and a plain
PyAV decode of the same clips. Real-time factor = seconds of video per second of wall time
(goal on 2 CPU cores: >= 1.0, stretch 2.0).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from stage1_face_extraction.executors import ClipJob, run_jobs
from stage1_face_extraction.params import load_section
from stage1_face_extraction.pipeline import FacePipeline, Stage1Config
from stage1_face_extraction.video import iter_frames, probe


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=Path, default=Path("data/demo/MELD.Raw/train_splits"))
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--workers", type=int, default=1, help="1 = in-process with all torch threads")
    ap.add_argument("--device", help="override stage1.detector.device (cpu, cuda)")
    ap.add_argument("--real-scenes", type=Path, help="folder of composed real scenes (made when absent)")
    ap.add_argument("--sources", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "talking_heads")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--asd", action="append", default=[], help="JSON object replacing stage1.asd (repeatable)")
    args = ap.parse_args(argv)
    if args.real_scenes:
        clips = real_scene_clips(args)
        clips = [clips[i] for i in sorted({round(k * len(clips) / args.limit) for k in range(args.limit)} & set(range(len(clips))))]  # spread over the scene types
    else:
        clips = sorted(args.clips.glob("*.mp4"))[: args.limit]
    if not clips:
        print(f"no clips under {args.clips} (run `dvc repro make_demo` first)", file=sys.stderr)
        return 2
    n_frames = sum(1 for c in clips for _ in iter_frames(c))
    video_s = sum(probe(c).duration_s for c in clips)
    t0 = time.perf_counter()
    for c in clips:
        for _ in iter_frames(c):
            pass
    decode_s = time.perf_counter() - t0
    print(f"clips {len(clips)}, frames {n_frames}, video {video_s:.1f} s")
    print(f"decode only: {decode_s:.2f} s ({n_frames / decode_s:.0f} fps, {video_s / decode_s:.1f}x real time)")
    for asd in args.asd or [None]:
        cfg = load_section(args.params, "stage1", Stage1Config)
        if asd:
            cfg.asd = json.loads(asd)
        if args.device:
            cfg.detector["device"] = args.device
        time_stage1(cfg, clips, args.workers, n_frames, video_s, decode_s)
    return 0


def real_scene_clips(args: argparse.Namespace) -> list[Path]:
    """The composed scenes' clips in ``--real-scenes`` (composed first when absent)."""
    from stage1_face_extraction.composer import SceneConfig, compose_scenes, load_sources

    if not (args.real_scenes / "truth.json").is_file():
        if not args.sources.is_dir():
            raise SystemExit(f"source clips not found: {args.sources} (real talking heads, ../shared/data/talking_heads)")
        cfg = SceneConfig(seed=args.seed, width=args.width, height=args.height, per_type=max(1, args.limit // 9 + 1))
        compose_scenes(load_sources(args.sources, sample_rate=cfg.sample_rate), args.real_scenes, cfg)
    truth = json.loads((args.real_scenes / "truth.json").read_text())
    return [args.real_scenes / c["path"] for _, c in sorted(truth["clips"].items())]


def time_stage1(cfg: Stage1Config, clips: list[Path], workers: int, n_frames: int, video_s: float, decode_s: float) -> None:
    """Time stage 1 with ``cfg`` on ``clips`` and print the figures."""
    if workers <= 1:
        pipe = FacePipeline(cfg)
        pipe.process(clips[0])  # warm-up: model load, first-call allocations
        t0 = time.perf_counter()
        results = [pipe.process(c) for c in clips]
        wall = time.perf_counter() - t0
    else:
        t0 = time.perf_counter()
        results = [r for _, r in run_jobs(cfg, [ClipJob(str(c)) for c in clips], workers)]
        wall = time.perf_counter() - t0  # includes worker start-up (model load per worker)
    parts = {}
    for r in results:
        for k, v in r.record["timings"].items():
            parts[k] = parts.get(k, 0.0) + v
    print(f"scorer {cfg.asd.get('name')}: device: {cfg.detector.get('device', 'auto')} (cuda available: "
          f"{torch.cuda.is_available()}), torch threads {torch.get_num_threads()}, workers {workers}")
    print(f"stage 1:     {wall:.2f} s ({n_frames / wall:.1f} fps), real-time factor {video_s / wall:.2f}, "
          f"{wall / decode_s:.1f}x decode-only time")
    print("per-step seconds (summed over clips): " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items() if k != "video_s"))


if __name__ == "__main__":
    sys.exit(main())
