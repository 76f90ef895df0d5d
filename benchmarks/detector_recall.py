"""Face detectors on REAL footage: recall and precision of face boxes against a composed scene set's truth, and speed.

    python benchmarks/detector_recall.py --scenes /tmp/eval360 \
        --detector '{"name": "mtcnn", "downscale": 0.5, "min_score": 0.9, "min_face_size": 40}' \
        --detector '{"name": "yunet", "model": "../shared/models/yunet/yunet_n_640_640.onnx",
                     "downscale": 0.5, "min_score": 0.7, "min_face_size": 40}' \
        [--every 2] [--limit 0] [--json out.json]

``--scenes``: a folder made by ``benchmarks/stage1_real_scenes.py`` (``truth.json`` and the clips;
every face on screen is in the truth, its box from MTCNN at full source resolution). Each
``--detector`` (a ``stage1.detector`` section as JSON; ``stride`` is ignored) runs on every
``--every``-th frame of every clip. A truth face is found when a detection overlaps it with
IoU >= 0.5 (one detection per face, greedy by IoU); precision counts the detections that match a
truth face. Speed: frames per second of ``detect`` alone (decoding excluded), one process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stage1_face_extraction.detectors import create_detector
from stage1_face_extraction.tracking import iou_matrix
from stage1_face_extraction.video import iter_frames


def match(truth_boxes: np.ndarray, found: np.ndarray, min_iou: float = 0.5) -> int:
    """Number of truth boxes (T, 4) matched one-to-one by found boxes (D, 4) at IoU >= min_iou."""
    if len(truth_boxes) == 0 or len(found) == 0:
        return 0
    iou = iou_matrix(truth_boxes, found)  # (T, D)
    hits = 0
    while iou.size and iou.max() >= min_iou:
        t, d = np.unravel_index(int(iou.argmax()), iou.shape)
        hits += 1
        iou[t, :] = -1.0
        iou[:, d] = -1.0
    return hits


def run(scenes: Path, section: dict, every: int, limit: int) -> dict:
    cfg = {k: v for k, v in section.items() if k not in ("name", "stride")}
    det = create_detector(section["name"], **cfg)
    truth = json.loads((scenes / "truth.json").read_text())
    keys = sorted(truth["clips"])[: limit or None]
    n_truth = n_found = n_det = n_frames = 0
    det_s = 0.0
    for key in tqdm(keys, desc=section["name"], unit="clip"):
        clip = truth["clips"][key]
        frames = [fr.image for fr in iter_frames(scenes / clip["path"]) if fr.index % every == 0]
        t0 = time.perf_counter()
        dets = det.detect(frames)
        det_s += time.perf_counter() - t0
        for k, d in enumerate(dets):
            faces = clip["frames"][k * every]["faces"]
            boxes = np.array([f["box"] for f in faces], np.float32).reshape(-1, 4)
            n_truth += len(boxes)
            n_det += len(d)
            n_found += match(boxes, d.boxes)
            n_frames += 1
    return {
        "detector": section, "clips": len(keys), "frames": n_frames, "truth_faces": n_truth,
        "detections": n_det, "recall": n_found / max(n_truth, 1), "precision": n_found / max(n_det, 1),
        "fps": n_frames / max(det_s, 1e-9),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=Path, required=True, help="a composed scene folder (truth.json)")
    ap.add_argument("--detector", action="append", required=True, help="a stage1.detector section as JSON (repeatable)")
    ap.add_argument("--every", type=int, default=2, help="detect on every Nth frame")
    ap.add_argument("--limit", type=int, default=0, help="first N clips only (0: all)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    if not (args.scenes / "truth.json").is_file():
        raise SystemExit(f"no truth.json in {args.scenes}: compose scenes with benchmarks/stage1_real_scenes.py first")
    results = [run(args.scenes, json.loads(d), args.every, args.limit) for d in args.detector]
    print(f"{'detector':60s} {'recall':>7s} {'prec':>6s} {'frames/s':>9s}")
    for r in results:
        print(f"{json.dumps(r['detector'])[:60]:60s} {r['recall']:7.3f} {r['precision']:6.3f} {r['fps']:9.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
