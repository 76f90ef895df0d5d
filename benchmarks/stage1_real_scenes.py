"""Stage 1 on REAL footage: speaker-frame quality and speed on scenes composed from real talking heads.

    python benchmarks/stage1_real_scenes.py --scenes /tmp/scenes720 --width 1280 --height 720 \
        [--sources ../shared/data/talking_heads] [--per-type 7] [--seed 1] [--params params.yaml] \
        [--asd '{"name": "light_asd", "checkpoint": "../shared/models/light_asd/finetuning_TalkSet.model"}'] \
        [--label NAME] [--json out.json] [--markdown]

1. Composes the scenes (``stage1_face_extraction.composer``: speaker alone; two-shots with the
   speaker left / right; a cut to the listener while the speaker goes on off screen; the listener
   alone with the speaker's voice; each with a quiet and a talking-over listener) into ``--scenes``,
   unless a ``truth.json`` made with the same settings is already there.
2. Runs stage 1 (``FacePipeline.process``, the ``stage1`` section of ``--params``, ``--asd``
   replacing ``stage1.asd``) on every clip, writing ``--scenes/runs/<label>/manifest.jsonl``.
3. Scores the manifests against the truth (``quality.score_scenes``): precision, recall, coverage
   and false picks (listener-alone clips that got crops) for the quiet and talking-over groups and
   each scene type, plus the real-time factor (video seconds / processing seconds, one process).

Goals (issue 16), default params: quiet precision >= 0.97, coverage >= 0.95, false picks <= 5 %;
talking-over precision >= 0.90, coverage >= 0.60. The exit status is 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from stage1_face_extraction.composer import SceneConfig, compose_scenes, load_sources, save_box_cache
from stage1_face_extraction.params import from_dict, load_params
from stage1_face_extraction.pipeline import FacePipeline, Stage1Config
from stage1_face_extraction.quality import score_scenes
from stage1_face_extraction.store import write_manifest

ROOT = Path(__file__).resolve().parents[1]
GOALS = {"quiet": (0.97, 0.95), "talking": (0.90, 0.60)}  # precision, coverage
MAX_FALSE_PICKS = 0.05


def ensure_scenes(args: argparse.Namespace) -> dict:
    cfg = SceneConfig(seed=args.seed, width=args.width, height=args.height, per_type=args.per_type)
    truth_path = args.scenes / "truth.json"
    if truth_path.is_file():
        truth = json.loads(truth_path.read_text())
        if truth.get("config") == json.loads(json.dumps(asdict(cfg))):
            return truth
    if not args.sources.is_dir():
        raise SystemExit(f"source clips not found: {args.sources} (real talking heads, ../shared/data/talking_heads)")
    box_cache = args.box_cache or args.scenes / "source_boxes.json"
    sources = load_sources(args.sources, sample_rate=cfg.sample_rate, box_cache=box_cache)
    bar = tqdm(total=1, desc="composing scenes", unit="clip")

    def progress(k: int, n: int, name: str) -> None:
        bar.total = n
        bar.n = k
        bar.set_postfix_str(name)
        bar.refresh()

    truth = compose_scenes(sources, args.scenes, cfg, progress)
    bar.close()
    box_cache.parent.mkdir(parents=True, exist_ok=True)
    save_box_cache(sources, box_cache)
    return truth


def run(args: argparse.Namespace, truth: dict) -> tuple[dict, dict]:
    section = load_params(args.params).get("stage1", {}) if args.params else {}
    if args.asd:
        section = {**section, "asd": json.loads(args.asd)}
    section = {**section, "identity": {**section.get("identity", {}), "scope": "none"}}
    cfg = from_dict(Stage1Config, section, "stage1")
    pipe = FacePipeline(cfg)
    label = args.label or cfg.asd.get("name", "asd")
    out = args.scenes / "runs" / label
    out.mkdir(parents=True, exist_ok=True)
    records, speed = {}, {"video_s": 0.0, "wall_s": 0.0}
    keys = sorted(truth["clips"])
    for key in tqdm(keys, desc=f"stage 1 ({label})", unit="clip"):
        clip = truth["clips"][key]
        t0 = time.perf_counter()
        res = pipe.process(args.scenes / clip["path"], utt_id=clip["utt_id"], clip=clip["path"])
        speed["wall_s"] += time.perf_counter() - t0
        speed["video_s"] += clip["duration_s"]
        records[key] = res.record
    write_manifest(out / "manifest.jsonl", [records[k] for k in keys])
    speed["realtime_x"] = speed["video_s"] / max(speed["wall_s"], 1e-9)
    return records, {"label": label, "asd": cfg.asd, **speed}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", type=Path, default=ROOT.parent / "shared" / "data" / "talking_heads")
    ap.add_argument("--scenes", type=Path, required=True, help="folder of the composed scenes (made when absent)")
    ap.add_argument("--box-cache", type=Path, help="JSON of the sources' face boxes (default: SCENES/source_boxes.json)")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--per-type", type=int, default=7, help="clips per (scene type, listener kind)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--asd", help="JSON object replacing stage1.asd")
    ap.add_argument("--label", help="name of this run (default: the scorer's name)")
    ap.add_argument("--json", type=Path, help="also write the report here")
    ap.add_argument("--markdown", action="store_true", help="print README table rows")
    args = ap.parse_args(argv)
    truth = ensure_scenes(args)
    records, speed = run(args, truth)
    groups = score_scenes(records, truth)
    print(f"{speed['label']}: {len(records)} clips at {args.width}x{args.height}, "
          f"{speed['realtime_x']:.2f}x real time ({speed['video_s']:.1f} s of video in {speed['wall_s']:.1f} s)")
    print(f"{'group':34s} {'clips':>5s} {'prec':>6s} {'recall':>6s} {'cover':>6s} {'false':>7s}")
    for name, g in groups.items():
        false = f"{g.false_picks}/{g.listener_alone}" if g.listener_alone else "-"
        print(f"{name:34s} {g.clips:5d} {g.precision:6.3f} {g.recall:6.3f} {g.coverage:6.3f} {false:>7s}")
    if args.markdown:
        for name in ("quiet", "talking"):
            g = groups[name]
            print(f"| {speed['label']} | {name} | {g.precision:.3f} | {g.recall:.3f} | {g.coverage:.3f} | "
                  f"{g.false_picks}/{g.listener_alone} | {speed['realtime_x']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"speed": speed, "size": [args.width, args.height],
                                         "groups": {k: v.as_dict() for k, v in groups.items()}}, indent=2) + "\n")
    ok = all(groups[g].precision >= p and groups[g].coverage >= c for g, (p, c) in GOALS.items() if g in groups)
    ok = ok and groups["quiet"].false_pick_rate <= MAX_FALSE_PICKS if "quiet" in groups else ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
