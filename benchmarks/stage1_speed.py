"""Stage-1 speed: frames/s, real-time factor and the ratio to decode-only time.

    python benchmarks/stage1_speed.py --clips data/demo/MELD.Raw/train_splits --limit 20 [--workers 2]

Runs the whole per-clip pipeline (decode, shots, detection, tracking, speaking scores, selection,
aligned crops) with the ``stage1`` section of params.yaml, after one warm-up clip, and a plain
PyAV decode of the same clips. Real-time factor = seconds of video per second of wall time
(goal on 2 CPU cores: >= 1.0, stretch 2.0).
"""

from __future__ import annotations

import argparse
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
    args = ap.parse_args(argv)
    cfg = load_section(args.params, "stage1", Stage1Config)
    if args.device:
        cfg.detector["device"] = args.device
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
    if args.workers <= 1:
        pipe = FacePipeline(cfg)
        pipe.process(clips[0])  # warm-up: model load, first-call allocations
        t0 = time.perf_counter()
        results = [pipe.process(c) for c in clips]
        wall = time.perf_counter() - t0
    else:
        t0 = time.perf_counter()
        results = [r for _, r in run_jobs(cfg, [ClipJob(str(c)) for c in clips], args.workers)]
        wall = time.perf_counter() - t0  # includes worker start-up (model load per worker)
    parts = {}
    for r in results:
        for k, v in r.record["timings"].items():
            parts[k] = parts.get(k, 0.0) + v
    print(f"device: {cfg.detector.get('device', 'auto')} (cuda available: {torch.cuda.is_available()}), "
          f"torch threads {torch.get_num_threads()}, workers {args.workers}")
    print(f"clips {len(clips)}, frames {n_frames}, video {video_s:.1f} s")
    print(f"decode only: {decode_s:.2f} s ({n_frames / decode_s:.0f} fps, {video_s / decode_s:.1f}x real time)")
    print(f"stage 1:     {wall:.2f} s ({n_frames / wall:.1f} fps), real-time factor {video_s / wall:.2f}, "
          f"{wall / decode_s:.1f}x decode-only time")
    print("per-step seconds (summed over clips): " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items() if k != "video_s"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
