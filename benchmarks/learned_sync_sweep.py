"""Calibrate ``learned_sync``: analyse real scenes once, then replay the identity step and the
selection for a grid of ``asd.sync_power`` and ``select.min_speaking`` values.

    python benchmarks/learned_sync_sweep.py --scenes /tmp/cal --seeds 12,13 --per-type 12 \
        --sync-power 1,0.7,0.5,0.33 --min-speaking 0.1,0.2,0.3 [--json out.json]

``learned_sync`` scores a track ``p * y ** g`` (``stage1_face_extraction/asd/learned_sync.py``):
``p`` the learned scorer's speaking probability, ``y`` the lip-sync term, ``g`` the sync power. Both
terms are kept from ONE analysis of every clip (detection, tracking, both scorers, identity
embeddings: the slow part), so each grid point costs only the identity step, the selection and the
crop pass, exactly as ``benchmarks/stage1_real_scenes.py --identity dialogue`` runs them (same
scenes, same dialogue groups, same scoring). Calibrate on sets of their own (seeds never used to
report a result); report on held-out sets with ``stage1_real_scenes.py``.

Prints one line per grid point: the pooled quiet / talking-over precision, coverage and false
picks, then each set's, and ``*`` where the learned-scorer goals are met (quiet precision >= 0.99,
coverage >= 0.98; talking-over precision >= 0.95, coverage >= 0.80; false picks <= 5 %).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stage1_real_scenes import ROOT, dialogue_groups, ensure_scenes, same_person_arg, seed_runs  # noqa: E402

from stage1_face_extraction.asd.learned_sync import combine_terms  # noqa: E402
from stage1_face_extraction.common.config import from_dict, load_params  # noqa: E402
from stage1_face_extraction.identity.group import identify_group  # noqa: E402
from stage1_face_extraction.pipeline import ClipAnalysis, FacePipeline  # noqa: E402
from stage1_face_extraction.quality import score_scenes  # noqa: E402
from stage1_face_extraction.section import Stage1Config  # noqa: E402
from stage1_face_extraction.selection import track_evidence  # noqa: E402

LIGHT_ASD = "../shared/models/light_asd/finetuning_TalkSet.model"
DEFAULT_ASD = {"name": "learned_sync", "learned": {"name": "light_asd", "checkpoint": LIGHT_ASD}}
GOALS = {"quiet": (0.99, 0.98), "talking": (0.95, 0.80)}  # precision, coverage with the published weights
MAX_FALSE_PICKS = 0.05


def floats(value: str) -> list[float]:
    return [float(v) for v in value.split(",") if v.strip()]


def analyse_set(pipe: FacePipeline, scenes: Path, truth: dict, seed: int) -> dict[str, tuple[str, ClipAnalysis]]:
    """``{clip key: (dialogue, analysis)}``; every track carries its two terms in ``extra``
    (``learned``, ``sync``: (T,) float32)."""
    group = dialogue_groups(truth, "dialogue", 8, seed)
    keys = sorted(truth["clips"], key=lambda k: (group.get(k, ""), k))
    out = {}
    for k in tqdm(keys, desc=f"analysing {scenes.name}", unit="clip"):
        c = truth["clips"][k]
        pipe.scorer.last_info = {}
        a = pipe.analyse(str(scenes / c["path"]), utt_id=c["utt_id"], speaker=c.get("speaker_person", c["speaker"]),
                         clip=c["path"], embed=True)
        info = pipe.scorer.last_info
        for i, t in enumerate(a.tracks):
            t.extra["learned"], t.extra["sync"] = info["learned"][i], info["sync"][i]
        out[k] = (group[k], a)
    return out


def replay(pipe: FacePipeline, analyses: dict[str, tuple[str, ClipAnalysis]], sync_power: float) -> dict[str, dict]:
    """Manifest records of every clip with the tracks rescored at ``sync_power`` (``pipe.cfg.select`` as set)."""
    ident = pipe.cfg.identity
    by_group: dict[str, list[tuple[str, ClipAnalysis]]] = {}
    for k, (g, a) in analyses.items():
        a = copy.deepcopy(a)
        for t in a.tracks:
            t.speaking = combine_terms(t.extra["learned"], t.extra["sync"], sync_power)
        tracks = {t.track_id: t for t in a.tracks}
        for f in a.faces:  # the identity step weighs each face by its speaking evidence
            f.evidence = track_evidence(tracks[f.track_id], a.voiced)
        by_group.setdefault(g, []).append((k, a))
    records = {}
    for g, items in by_group.items():
        faces = [f for _, a in items for f in a.faces]
        speakers = {a.record["utt_id"]: a.record["speaker"] for _, a in items}
        gi = identify_group(g, faces, speakers, ident, pipe.identity_embedder.distance_threshold)
        for k, a in items:
            records[k] = pipe.finish(a, gi.of(a.record["utt_id"])).record
    return records


def meets(groups: dict) -> bool:
    ok = all(groups[g].precision >= p and groups[g].coverage >= c for g, (p, c) in GOALS.items())
    return ok and all(groups[g].false_pick_rate <= MAX_FALSE_PICKS for g in GOALS)


def line(groups: dict) -> str:
    q, t = groups["quiet"], groups["talking"]
    return (f"quiet {q.precision:.3f} / {q.coverage:.3f} {q.false_picks}/{q.listener_alone}, "
            f"talking {t.precision:.3f} / {t.coverage:.3f} {t.false_picks}/{t.listener_alone}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", type=Path, default=ROOT.parent / "shared" / "data" / "talking_heads")
    ap.add_argument("--scenes", type=Path, required=True, help="folder of the composed sets (SCENES/seed<N>)")
    ap.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",") if x.strip()], required=True)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--per-type", type=int, default=12, help="clips per (scene type, listener kind)")
    ap.add_argument("--same-person", type=same_person_arg, default="auto")
    ap.add_argument("--box-cache", type=Path,
                    help="JSON of the sources' face boxes (default: SCENES/source_boxes.json)")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--asd", default=json.dumps(DEFAULT_ASD), help="JSON stage1.asd of a learned_sync scorer")
    ap.add_argument("--sync-power", type=floats, default=[1.0, 0.7, 0.5, 0.33])
    ap.add_argument("--min-speaking", type=floats, help="select.min_speaking values (default: params.yaml's)")
    ap.add_argument("--json", type=Path, help="also write every grid point's pooled and per-set groups here")
    args = ap.parse_args(argv)

    section = load_params(args.params).get("stage1", {})
    asd = json.loads(args.asd)
    if asd.get("name") != "learned_sync":
        raise SystemExit(f"--asd must be a learned_sync scorer, got {asd.get('name')!r}")
    section = {**section, "asd": asd, "identity": {**section.get("identity", {}), "scope": "dialogue"}}
    pipe = FacePipeline(from_dict(Stage1Config, section, "stage1"))
    if pipe.identity_embedder is None:
        raise SystemExit("stage1.identity has no embedder: the sweep replays the identity step")
    sets = {}
    for sub in seed_runs(args):  # each set in --scenes/seed<N>, as stage1_real_scenes.py --seeds
        truth = ensure_scenes(sub)
        sets[sub.seed] = (truth, analyse_set(pipe, sub.scenes, truth, sub.seed))
    min_speaking = args.min_speaking or [pipe.cfg.select.min_speaking]
    report = []
    for power in args.sync_power:
        for ms in min_speaking:
            pipe.cfg.select.min_speaking = ms
            pooled_truth: dict = {"clips": {}}
            pooled: dict[str, dict] = {}
            per_set = {}
            for seed, (truth, analyses) in sets.items():
                records = replay(pipe, analyses, power)
                per_set[seed] = score_scenes(records, truth)
                pooled_truth["clips"].update({f"seed{seed}:{k}": c for k, c in truth["clips"].items()})
                pooled.update({f"seed{seed}:{k}": r for k, r in records.items()})
            groups = score_scenes(pooled, pooled_truth)
            mark = "*" if meets(groups) else " "
            sets_text = "; ".join(f"seed {s}: {line(g)}" for s, g in per_set.items())
            print(f"{mark} sync_power {power:.2f} min_speaking {ms:.2f}: pooled {line(groups)} | {sets_text}")
            report.append({
                "sync_power": power, "min_speaking": ms, "meets_goals": meets(groups),
                "pooled": {k: v.as_dict() for k, v in groups.items()},
                "seeds": {str(s): {k: v.as_dict() for k, v in g.items()} for s, g in per_set.items()},
            })
    if args.json:
        args.json.write_text(json.dumps({"asd": asd, "seeds": args.seeds, "grid": report}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
