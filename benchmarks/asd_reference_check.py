"""Do the pipeline's learned ASD scorers give what the published Light-ASD / LR-ASD code would?

    python benchmarks/asd_reference_check.py                       # light_asd TalkSet weights, 7 clips
    python benchmarks/asd_reference_check.py --model light_asd=../shared/models/light_asd/pretrain_AVA_CVPR.model \\
        --model lr_asd=../shared/models/lr_asd/finetuning_TalkSet.model --json /tmp/asd_ref.json

For every clip of ``--clips`` (default ``../shared/data/talking_heads``: one real face speaking, its
own audio) two preprocessings feed the SAME network with the same weights:

* **pipeline**: what ``facialmmt faces`` does - native-rate decode, the ``stage1`` detector and
  tracker of params.yaml, ``extract_patch`` with the scorer's ``input_spec``, then
  ``scorer.score`` (25 fps grid, whole-clip MFCC, windowed averaging, smoothing, softmax).
* **reference**: a re-implementation of the authors' ``Columbia_test.py`` inference (identical in
  the Light-ASD and LR-ASD repositories), step by step: the clip re-timed to 25 fps by taking the
  source frame nearest each ``n / 25`` s (``ffmpeg -r 25``); face boxes on EVERY 25 fps frame
  (the published scripts use S3FD, whose weights are not available: the pipeline's detector is used
  here, so box-size differences between detectors are NOT part of this comparison); the best box
  per frame, gaps linearly interpolated; box half-side ``max(w, h) / 2`` and centre median-filtered
  over 13 frames (``scipy.signal.medfilt``, zero-padded ends); the frame padded with grey 110, the
  ``[cy - s, cy + 2.8 s) x [cx - 1.4 s, cx + 1.4 s)`` crop (crop scale 0.4, integer-truncated)
  resized to 224x224 (bilinear), grey, the central 112x112; 16 kHz audio quantised to int16, cut
  from the track's first frame ``/ 25`` s, MFCC (python_speech_features settings); the track
  length cut to the whole 40 ms steps of the audio; windows of d = 1, 2, 3, 4, 5, 6 s (the
  published ``{1,1,1,2,2,2,3,3,4,5,6}`` is a Python SET, so each duration counts once), one
  forward per window at batch 1; per frame the mean over durations of the raw speaking logit
  (``lossAV`` ``FC(x)[:, 1]``), rounded to 0.1, smoothed over frames ``[i - 2, min(i + 3, n - 1))``;
  speaking when the smoothed logit is > 0 (``evaluate_col_ASD``). The MPEG-4 / JPEG re-encodes of
  the published scripts are skipped.

The reference also yields, with the same crops and windows, the mean softmax probability of
"speaking" (the pipeline's score definition), so that the two preprocessings can be compared on
the same quantity: per clip the mean absolute difference and the correlation of the per-frame
probabilities (at the 25 fps frames, the pipeline's score of the source frame each one was taken
from), and the share of frames called speaking by the pipeline (p > 0.5), by the reference
probability (p > 0.5) and by the published decision (smoothed logit > 0).

``--negatives``: every clip is ALSO scored with the audio of the next clip (a real voice that does
not match the lips) and with quiet white noise (-50 dBFS, nobody speaks). With the noise the
AVA-trained weights say "not speaking", so the correlation then spans both states; with another
voice the published files still mostly say "speaking" (they detect speech + moving lips, not
lip-sync), and the TalkSet-finetuned files say "speaking" even with the noise.

Measured (all four published files, 7 clips, 1 torch thread; numbers in ``asd/learned.py``)::

    python benchmarks/asd_reference_check.py --negatives --threads 1 \
        --model light_asd=../shared/models/light_asd/finetuning_TalkSet.model \
        --model light_asd=../shared/models/light_asd/pretrain_AVA_CVPR.model \
        --model lr_asd=../shared/models/lr_asd/finetuning_TalkSet.model \
        --model lr_asd=../shared/models/lr_asd/pretrain_AVA.model

``score fps``: frames per second of ``scorer.score`` alone (patches already cut; the
clip's native frames / seconds), on this machine with ``--threads`` torch threads.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.signal import medfilt

from stage1_face_extraction.asd import create_scorer
from stage1_face_extraction.asd.mfcc import mfcc_13
from stage1_face_extraction.clock import ClipClock
from stage1_face_extraction.common.config import load_section
from stage1_face_extraction.pipeline import AUDIO_SR, FacePipeline
from stage1_face_extraction.section import Stage1Config
from stage1_face_extraction.tracking import track_faces
from stage1_face_extraction.video import iter_frames, read_audio

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEFAULT_CLIPS = SHARED / "data" / "talking_heads"
DEFAULT_MODEL = f"light_asd={SHARED / 'models' / 'light_asd' / 'finetuning_TalkSet.model'}"

REF_FPS = 25
CROP_SCALE = 0.40  # the published cropScale
PAD_VALUE = 110
DURATIONS = (1, 2, 3, 4, 5, 6)  # set({1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 6})


# ------------------------------------------------------------------------------------------------
# reference preprocessing


def nearest_frames(times: np.ndarray, fps_src: float, fps: int = REF_FPS) -> np.ndarray:
    """Source frame index for each output frame ``n / fps`` of a constant-rate re-timing: the
    nearest source frame (ties to the earlier one); as many output frames as fit before the end
    of the last source frame."""
    end = times[-1] + 1.0 / fps_src
    n = np.arange(int(math.floor(end * fps - 1e-9)) + 1)
    n = n[n / fps < end]
    g = n / fps
    j = np.clip(np.searchsorted(times, g), 1, max(len(times) - 1, 1))
    if len(times) == 1:
        return np.zeros(len(n), np.int64)
    return np.where(np.abs(times[j - 1] - g) <= np.abs(times[j] - g), j - 1, j).astype(np.int64)


def reference_track(dets: list) -> tuple[np.ndarray, np.ndarray] | None:
    """One face per clip: the best box of every frame that has one, linear interpolation between
    (the published tracker's ``interp1d``); frames before the first / after the last detection are
    dropped, as the published track starts and ends at detections. -> (frames (N,), boxes (N, 4))."""
    idx, boxes = [], []
    for i, d in enumerate(dets):
        if d is not None and len(d):
            idx.append(i)
            boxes.append(d.boxes[int(np.argmax(d.scores))])
    if len(idx) < 2:
        return None
    idx_a, boxes_a = np.asarray(idx), np.asarray(boxes, np.float64)
    frames = np.arange(idx_a[0], idx_a[-1] + 1)
    out = np.stack([np.interp(frames, idx_a, boxes_a[:, c]) for c in range(4)], axis=1)
    return frames, out


def reference_crops(images: list[np.ndarray], boxes: np.ndarray, cs: float = CROP_SCALE) -> np.ndarray:
    """The published ``crop_video`` + the evaluation's grey / 224 / centre-112 steps, on RGB
    frames: (N, 112, 112) uint8."""
    s = medfilt(np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2, kernel_size=13)
    y = medfilt((boxes[:, 1] + boxes[:, 3]) / 2, kernel_size=13)
    x = medfilt((boxes[:, 0] + boxes[:, 2]) / 2, kernel_size=13)
    out = []
    for img, bs, cy, cx in zip(images, s, y, x):
        bsi = int(bs * (1 + 2 * cs))
        padded = np.pad(img, ((bsi, bsi), (bsi, bsi), (0, 0)), "constant", constant_values=PAD_VALUE)
        my, mx = cy + bsi, cx + bsi
        face = padded[int(my - bs):int(my + bs * (1 + 2 * cs)), int(mx - bs * (1 + cs)):int(mx + bs * (1 + cs))]
        face = cv2.resize(face, (224, 224))
        grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
        out.append(grey[56:168, 56:168])
    return np.stack(out)


def int16_audio(audio: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> the int16 values a pcm_s16le WAV holds, as float [-1, 1] again."""
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.float32) / 32768.0


@dataclass
class ReferenceScores:
    logit: np.ndarray  # (N,) smoothed, rounded mean speaking logit (the published score)
    prob: np.ndarray  # (N,) the same windows' mean softmax probability, smoothed the same way
    frames: np.ndarray  # (N,) 25 fps frame indices the scores belong to
    forwards: int = 0
    extra: dict = field(default_factory=dict)


def _published_smooth(x: np.ndarray) -> np.ndarray:
    n = len(x)
    return np.array([np.mean(x[max(i - 2, 0):min(i + 3, n - 1)]) if min(i + 3, n - 1) > max(i - 2, 0) else x[i]
                     for i in range(n)])


def reference_scores(net: torch.nn.Module, crops: np.ndarray, frames: np.ndarray, audio16k: np.ndarray,
                     device: str = "cpu", durations: tuple[int, ...] = DURATIONS) -> ReferenceScores:
    """The published ``evaluate_network`` on one track's crops (N, 112, 112) uint8 at 25 fps frames
    ``frames`` and the clip's 16 kHz audio (float, already int16-quantised). ``durations``: the
    window lengths in seconds (published: 1..6; fewer for a quick check)."""
    a0 = int(round(frames[0] / REF_FPS * AUDIO_SR))
    a1 = int(round((frames[-1] + 1) / REF_FPS * AUDIO_SR))
    mfcc = mfcc_13(audio16k[a0:a1], AUDIO_SR)
    length = min((mfcc.shape[0] - mfcc.shape[0] % 4) / 100, crops.shape[0])  # seconds vs frames, as published
    mfcc = mfcc[: int(round(length * 100))]
    video = crops[: int(round(length * 25))].astype(np.float32) / 255.0  # the nets take [0, 1]
    logits_all, probs_all, forwards = [], [], 0
    with torch.inference_mode():
        for d in durations:
            lo, pr = [], []
            for i in range(int(math.ceil(length / d))):
                a = torch.from_numpy(np.ascontiguousarray(mfcc[i * d * 100:(i + 1) * d * 100])).unsqueeze(0).to(device)
                v = torch.from_numpy(np.ascontiguousarray(video[i * d * 25:(i + 1) * d * 25])).unsqueeze(0).to(device)
                out = net(a, v)["av"][0].float()  # (L, 2)
                forwards += 1
                lo.append(out[:, 1].cpu().numpy())
                pr.append(torch.softmax(out, dim=-1)[:, 1].cpu().numpy())
            logits_all.append(np.concatenate(lo))
            probs_all.append(np.concatenate(pr))
    logit = np.round(np.mean(logits_all, axis=0), 1)
    prob = np.mean(probs_all, axis=0)
    n = len(logit)
    return ReferenceScores(_published_smooth(logit), _published_smooth(prob), frames[:n], forwards)


# ------------------------------------------------------------------------------------------------
# one clip, both ways


@dataclass
class ClipInputs:
    """What both paths need from one clip, decoded once."""

    path: Path
    fps: float
    times: np.ndarray  # native frame times
    audio: np.ndarray  # 16 kHz float
    # pipeline path
    patches: list[np.ndarray]
    track_times: list[np.ndarray]
    track_frames: list[np.ndarray]
    # reference path
    ref_src: np.ndarray  # native frame index of every 25 fps frame
    ref_frames: np.ndarray  # 25 fps frames of the reference track
    ref_crops: np.ndarray  # (N, 112, 112) uint8


def prepare_clip(pipe: FacePipeline, path: Path) -> ClipInputs | None:
    from stage1_face_extraction.video import probe

    info = probe(path)
    clock = ClipClock(None)  # the pipeline's per-clip deadline, here without a limit
    dets, times, shot_ids = pipe._detect_pass(str(path), clock)
    tracks = track_faces(dets, np.arange(len(dets)), shot_ids, pipe.cfg.tracking)
    if not tracks:
        return None
    patches, _ = pipe._patch_pass(str(path), tracks, clock)
    audio = read_audio(path, AUDIO_SR)
    ref_src = nearest_frames(times, info.fps)
    wanted = set(ref_src.tolist())
    native = {fr.index: fr.image for fr in _frames(path, wanted)}
    images25 = [native[j] for j in ref_src]
    dets25 = []
    bs = pipe.detector.batch_size
    for b in range(0, len(images25), bs):
        dets25.extend(pipe.detector.detect(images25[b:b + bs]))
    tr = reference_track(dets25)
    if tr is None:
        return None
    ref_frames, boxes = tr
    crops = reference_crops([images25[f] for f in ref_frames], boxes)
    return ClipInputs(path, info.fps, times, audio, patches, [times[t.frames] for t in tracks],
                      [t.frames for t in tracks], ref_src, ref_frames, crops)


def _frames(path: Path, wanted: set[int]):
    last = max(wanted)
    for fr in iter_frames(path):
        if fr.index > last:
            break
        if fr.index in wanted:
            yield fr


def compare(scorer, ci: ClipInputs, audio: np.ndarray, durations: tuple[int, ...] = DURATIONS) -> dict:
    """Score ``ci`` both ways with ``audio`` (the clip's own or another's). Per-frame arrays on the
    reference track's 25 fps frames: pipeline prob, reference prob, reference logit. ``durations``:
    the reference's window lengths (the scorer's ``windows_s`` should be the same)."""
    t0 = time.perf_counter()
    pipe_scores = scorer.score(ci.patches, ci.track_times, audio, AUDIO_SR, ci.fps)
    score_s = time.perf_counter() - t0
    n_native = sum(len(t) for t in ci.track_times)
    # pipeline score of each native frame (the longest track holding it)
    by_frame: dict[int, float] = {}
    for frames, sc in sorted(zip(ci.track_frames, pipe_scores), key=lambda fs: len(fs[0])):
        by_frame.update(zip(frames.tolist(), sc.tolist()))
    ref = reference_scores(scorer.net, ci.ref_crops, ci.ref_frames, int16_audio(audio), scorer.device, durations)
    src = ci.ref_src[ref.frames]
    keep = np.array([s in by_frame for s in src.tolist()])
    pipe_p = np.array([by_frame[s] for s in src[keep].tolist()])
    return {"pipe": pipe_p, "ref_prob": ref.prob[keep], "ref_logit": ref.logit[keep], "score_s": score_s,
            "native_frames": n_native, "frames25": int(keep.sum())}


def summarise(parts: list[dict]) -> dict:
    pipe = np.concatenate([p["pipe"] for p in parts])
    rp = np.concatenate([p["ref_prob"] for p in parts])
    rl = np.concatenate([p["ref_logit"] for p in parts])
    corr = float(np.corrcoef(pipe, rp)[0, 1]) if len(pipe) > 2 and pipe.std() > 0 and rp.std() > 0 else float("nan")
    return {
        "frames": int(len(pipe)),
        "mean_abs_diff": float(np.mean(np.abs(pipe - rp))) if len(pipe) else float("nan"),
        "corr": corr,
        "pipe_mean": float(pipe.mean()), "ref_mean": float(rp.mean()),
        "pipe_speaking": float(np.mean(pipe > 0.5)),
        "ref_speaking": float(np.mean(rp > 0.5)),
        "ref_published_speaking": float(np.mean(rl > 0)),
        "decision_agreement": float(np.mean((pipe > 0.5) == (rl > 0))),
    }


def other_audio(audio: np.ndarray, donor: np.ndarray) -> np.ndarray:
    """``donor`` tiled / cut to the length of ``audio``."""
    reps = int(math.ceil(len(audio) / max(len(donor), 1)))
    return np.tile(donor, reps)[: len(audio)].astype(np.float32)


def parse_model(text: str) -> tuple[str, str]:
    name, _, path = text.partition("=")
    if not path:
        raise SystemExit(f"--model wants NAME=PATH, got {text!r}")
    return name, path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=Path, default=DEFAULT_CLIPS)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--model", action="append", help="NAME=CHECKPOINT (repeatable; default the light_asd TalkSet file)")
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument(
        "--windows", help="pipeline scorer windows_s: comma-separated seconds or 'whole' (default: the scorer's)"
    )
    ap.add_argument("--negatives", action="store_true",
                    help="also score every clip with the next clip's speech and with quiet noise (-50 dBFS)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    paths = sorted(args.clips.glob("*.mp4"))[: args.limit]
    if not paths:
        raise SystemExit(f"no clips under {args.clips}")
    cfg = load_section(args.params, "stage1", Stage1Config)
    extra = {}
    if args.windows:
        extra["windows_s"] = None if args.windows == "whole" else [float(w) for w in args.windows.split(",")]
    scorers = []
    for text in args.model or [DEFAULT_MODEL]:
        name, ckpt = parse_model(text)
        scorers.append((name, ckpt, create_scorer(name, checkpoint=ckpt, vad="none", device=args.device, **extra)))
    specs = {s.input_spec for _, _, s in scorers}
    if len(specs) > 1:
        raise SystemExit(f"the scorers want different patches ({specs}); compare them in separate runs")
    cfg.asd = {"name": "av_sync", "vad": "none"}
    pipe = FacePipeline(cfg)
    pipe.scorer = scorers[0][2]  # the patch pass cuts what the learned scorers declare
    t0 = time.perf_counter()
    clips = {}
    for p in paths:
        ci = prepare_clip(pipe, p)
        if ci is None:
            print(f"{p.name}: no face track, skipped")
            continue
        clips[p.name] = ci
    print(f"{len(clips)} clips prepared in {time.perf_counter() - t0:.1f} s (decode, detect, track, patches, "
          f"reference crops); torch threads {torch.get_num_threads()}")
    names = list(clips)
    report = {}
    for name, ckpt, scorer in scorers:
        rows, pos_all, neg_all = {}, [], {}
        score_s = native = 0
        print(f"\n== {name} {Path(ckpt).name} (pipeline windows {scorer.cfg.windows_s})")
        print(
            f"{'clip':<46} {'frames':>6} {'pipe p':>7} {'ref p':>7} {'|diff|':>7} {'pipe spk':>8} {'ref spk':>8} "
            f"{'pub spk':>8} {'score fps':>9}"
            + ("   other speech: pipe p ref p   noise: pipe p ref p" if args.negatives else "")
        )
        for i, key in enumerate(names):
            ci = clips[key]
            pos = compare(scorer, ci, ci.audio)
            score_s += pos["score_s"]
            native += pos["native_frames"]
            s = summarise([pos])
            row = {"own_audio": s, "score_fps": pos["native_frames"] / pos["score_s"]}
            pos_all.append(pos)
            line = (f"{key:<46} {s['frames']:6d} {s['pipe_mean']:7.3f} {s['ref_mean']:7.3f} {s['mean_abs_diff']:7.3f} "
                    f"{s['pipe_speaking']:8.2f} {s['ref_speaking']:8.2f} {s['ref_published_speaking']:8.2f} "
                    f"{row['score_fps']:9.0f}")
            if args.negatives:
                donor = clips[names[(i + 1) % len(names)]].audio
                rng = np.random.default_rng(i)
                for cond, audio in (
                    ("other_speech", other_audio(ci.audio, donor)),
                    ("noise", (10 ** (-50 / 20) * rng.standard_normal(len(ci.audio))).astype(np.float32)),
                ):
                    neg = compare(scorer, ci, audio)
                    n = summarise([neg])
                    row[cond] = n
                    neg_all.setdefault(cond, []).append(neg)
                    line += f"   {n['pipe_mean']:8.3f} {n['ref_mean']:6.3f}"
            rows[key] = row
            print(line)
        total = {"own_audio": summarise(pos_all), "score_fps": native / score_s}
        for cond, parts in neg_all.items():
            total[cond] = summarise(parts)
        if neg_all:
            total["all_conditions"] = summarise(pos_all + [p for parts in neg_all.values() for p in parts])
        t = total["own_audio"]
        print(f"all own-audio frames: mean |p_pipe - p_ref| {t['mean_abs_diff']:.4f}, corr {t['corr']:.3f}, speaking "
              f"pipe {t['pipe_speaking']:.3f} / ref {t['ref_speaking']:.3f} / published decision "
              f"{t['ref_published_speaking']:.3f}; score {total['score_fps']:.0f} native frames/s")
        if neg_all:
            for k in (*neg_all, "all_conditions"):
                t = total[k]
                print(
                    f"{k} frames: mean |diff| {t['mean_abs_diff']:.4f}, corr {t['corr']:.3f}, speaking pipe "
                    f"{t['pipe_speaking']:.3f} / ref {t['ref_speaking']:.3f} / "
                    f"published {t['ref_published_speaking']:.3f}, "
                    f"decision agreement {t['decision_agreement']:.3f}"
                )
        report[f"{name}:{Path(ckpt).name}"] = {"clips": rows, "total": total}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
