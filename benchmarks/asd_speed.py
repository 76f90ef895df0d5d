"""Active-speaker scorer speed: tracks/s of av_sync, light_asd, lr_asd and talknet on the same tracks.

    python benchmarks/asd_speed.py --source demo --clips data/demo/MELD.Raw/train_splits --limit 8
    python benchmarks/asd_speed.py --source synthetic --clips-n 8 --tracks 3 --seconds 3 [--device cuda]

``demo``: the clips are decoded, detected and tracked once with the ``stage1`` section of
params.yaml; then, per scorer, the patches it declares are cut (timed as ``patch``) and scored
(``score``, one call per clip: all its tracks in one batch). ``synthetic``: random patches of
``--tracks`` tracks x ``--seconds`` s at 23.976 fps plus noise audio per clip (no decoding: runs
where PyAV or the demo corpus are missing). The learned scorers run with random weights (the speed
does not depend on them) and ``--windows`` (``published``: their default average over windows of
1, 2, 3, 4, 5 and 6 s; ``whole``: one window per track). The VAD is ``--vad`` for every scorer
(energy by default, so the numbers compare the scorers, not silero). Reported: tracks/s and frames/s
of ``score`` (and of ``patch + score`` for demo) and the cost relative to av_sync. One warm-up clip
per scorer first.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from stage1_face_extraction.asd import create_scorer
from stage1_face_extraction.clock import ClipClock

FPS = 24000 / 1001


def _scorer_cfg(name: str, args) -> dict:
    if name == "av_sync":
        return {"vad": args.vad}
    cfg = {"random_init": True, "device": args.device, "vad": args.vad}
    if args.windows == "whole":
        cfg["windows_s"] = None
    return cfg


def synthetic_clips(n: int, tracks: int, seconds: float, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    frames = round(seconds * FPS)
    clips = []
    for _ in range(n):
        times = [np.arange(frames) / FPS for _ in range(tracks)]
        audio = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
        clips.append({"times": times, "audio": audio, "rng": int(rng.integers(1 << 31))})
    return clips


def synthetic_patches(clip: dict, spec) -> list[np.ndarray]:
    rng = np.random.default_rng(clip["rng"])
    h, w = spec.size
    return [rng.random((len(t), h, w), dtype=np.float32) for t in clip["times"]]


def demo_clips(args) -> list[dict]:
    from stage1_face_extraction.common.config import load_section
    from stage1_face_extraction.pipeline import AUDIO_SR, FacePipeline
    from stage1_face_extraction.section import Stage1Config
    from stage1_face_extraction.tracking import track_faces
    from stage1_face_extraction.video import read_audio

    cfg = load_section(args.params, "stage1", Stage1Config)
    cfg.asd = {"name": "av_sync", "vad": args.vad}
    pipe = FacePipeline(cfg)
    paths = sorted(Path(args.clips).glob("*.mp4"))[: args.limit]
    if not paths:
        raise SystemExit(f"no clips under {args.clips} (run `dvc repro make_demo` first)")
    clips = []
    for p in paths:
        dets, times, shot_ids = pipe._detect_pass(str(p), ClipClock(None))
        tracks = track_faces(dets, np.arange(len(dets)), shot_ids, cfg.tracking)
        if tracks:
            clips.append({"path": str(p), "tracks": tracks, "times": [times[t.frames] for t in tracks],
                          "audio": read_audio(p, AUDIO_SR), "pipe": pipe})
    return clips


def demo_patches(clip: dict, scorer) -> list[np.ndarray]:
    pipe = clip["pipe"]
    saved = pipe.scorer
    pipe.scorer = scorer  # the patch pass cuts what this scorer declares
    try:
        patches, _ = pipe._patch_pass(clip["path"], clip["tracks"], ClipClock(None))
    finally:
        pipe.scorer = saved
    return patches


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", choices=["demo", "synthetic"], default="demo")
    ap.add_argument("--clips", default="data/demo/MELD.Raw/train_splits")
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--clips-n", type=int, default=8, help="synthetic: clips")
    ap.add_argument("--tracks", type=int, default=3, help="synthetic: tracks per clip")
    ap.add_argument("--seconds", type=float, default=3.0, help="synthetic: track length")
    ap.add_argument("--scorers", nargs="+", default=["av_sync", "light_asd", "lr_asd", "talknet"])
    ap.add_argument("--device", default="auto", help="learned scorers: auto | cpu | cuda")
    ap.add_argument("--windows", choices=["published", "whole"], default="published")
    ap.add_argument("--vad", default="energy", choices=["energy", "silero", "none"])
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    clips = demo_clips(args) if args.source == "demo" else synthetic_clips(args.clips_n, args.tracks, args.seconds)
    n_tracks = sum(len(c["times"]) for c in clips)
    n_frames = sum(len(t) for c in clips for t in c["times"])
    print(f"{args.source}: {len(clips)} clips, {n_tracks} tracks, {n_frames} track-frames; torch threads "
          f"{torch.get_num_threads()}, cuda available {torch.cuda.is_available()}, windows {args.windows}")
    rows = []
    for name in args.scorers:
        scorer = create_scorer(name, **_scorer_cfg(name, args))
        device = getattr(scorer, "device", "cpu")

        def patches_of(c, scorer=scorer):
            return demo_patches(c, scorer) if args.source == "demo" else synthetic_patches(c, scorer.input_spec)

        warm = patches_of(clips[0])
        scorer.score(warm, clips[0]["times"], clips[0]["audio"], 16000, FPS)  # warm-up
        t_patch = t_score = 0.0
        forwards = 0
        for c in clips:
            t0 = time.perf_counter()
            patches = patches_of(c)
            t1 = time.perf_counter()
            scorer.score(patches, c["times"], c["audio"], 16000, FPS)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t_score += time.perf_counter() - t1
            t_patch += t1 - t0
            forwards += int(scorer.last_info.get("forwards", 0))
        rows.append((name, device, t_patch, t_score, forwards))
    base = next((r for r in rows if r[0] == "av_sync"), None)
    print(f"{'scorer':<10} {'device':<6} {'score s':>8} {'tracks/s':>9} {'frames/s':>9} {'x av_sync':>9} "
          + (f"{'patch+score tracks/s':>21} {'x av_sync':>9}" if args.source == "demo" else "") + "  forwards/clip")
    for name, device, tp, ts, fw in rows:
        rel = f"{ts / base[3]:9.2f}" if base else f"{'-':>9}"
        line = f"{name:<10} {device:<6} {ts:8.2f} {n_tracks / ts:9.1f} {n_frames / ts:9.0f} {rel}"
        if args.source == "demo":
            rel2 = f"{(tp + ts) / (base[2] + base[3]):9.2f}" if base else f"{'-':>9}"
            line += f" {n_tracks / (tp + ts):21.1f} {rel2}"
        print(line + f"  {fw / len(clips):.1f}")
    print("x av_sync = time relative to av_sync on the same tracks (higher = slower)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
