"""Stage-1 speaker-frame precision / recall / coverage with different active-speaker scorers.

    python benchmarks/asd_quality.py --truth data/demo/MELD.Raw/truth.json --splits dev test \\
        --scorer av_sync --scorer light_asd:checkpoint=models/asd/light_asd_demo/light_asd.safetensors

Every clip of ``--splits`` is decoded, detected and tracked ONCE (the ``stage1`` section of
params.yaml, identity step off, as ``facialmmt faces`` runs without references); then each scorer
scores the same tracks and the selection + crops run per scorer. The manifests are scored against
the truth with ``stage1_face_extraction.quality.score_manifest`` (the Stage 1 issue's metrics,
restricted to these clips). ``--scorer NAME[:key=value,...]`` (values parsed as YAML) adds a scorer.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from stage1_face_extraction.asd import create_scorer
from stage1_face_extraction.clock import ClipClock
from stage1_face_extraction.common.config import load_section
from stage1_face_extraction.pipeline import AUDIO_SR, FacePipeline
from stage1_face_extraction.quality import score_manifest
from stage1_face_extraction.section import Stage1Config
from stage1_face_extraction.video import read_audio


def parse_scorer(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    cfg = {}
    for part in filter(None, rest.split(",")):
        key, _, value = part.partition("=")
        cfg[key.strip()] = yaml.safe_load(value)
    return name, cfg


def rescore(pipe: FacePipeline, a, scorer, audio: np.ndarray | None) -> float:
    """Replace the speaking scores (and voiced mask) of analysis ``a`` with ``scorer``'s. -> seconds."""
    t0 = time.perf_counter()
    saved = pipe.scorer
    pipe.scorer = scorer
    try:
        patches, _ = pipe._patch_pass(a.path, a.tracks, ClipClock(None))
    finally:
        pipe.scorer = saved
    scores = scorer.score(patches, [a.times[t.frames] for t in a.tracks], audio, AUDIO_SR, a.record["fps"])
    for t, s in zip(a.tracks, scores):
        t.speaking = np.asarray(s, np.float32)
    if audio is not None:
        a.voiced = np.asarray(scorer.voice_at(audio, AUDIO_SR, a.times)) >= 0.5
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--truth", type=Path, default=Path("data/demo/MELD.Raw/truth.json"))
    ap.add_argument("--splits", nargs="+", default=["dev", "test"])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--scorer", action="append", default=[], help="NAME[:key=value,...] (repeatable)")
    ap.add_argument("--limit", type=int, help="at most this many clips")
    ap.add_argument("--json", type=Path, help="write the reports here")
    args = ap.parse_args(argv)
    truth = json.loads(args.truth.read_text())
    keys = sorted(k for k, c in truth["clips"].items() if c["split"] in args.splits)[: args.limit]
    sub = dict(truth, clips={k: truth["clips"][k] for k in keys})
    cfg = load_section(args.params, "stage1", Stage1Config)
    pipe = FacePipeline(cfg)
    specs = [parse_scorer(s) for s in (args.scorer or ["av_sync"])]
    scorers = [(text, create_scorer(name, **c)) for text, (name, c) in zip(args.scorer or ["av_sync"], specs)]
    records: dict[str, dict[str, dict]] = {text: {} for text, _ in scorers}
    seconds = {text: 0.0 for text, _ in scorers}
    for key in tqdm(keys, desc="clips", unit="clip"):
        clip = truth["clips"][key]
        path = args.truth.parent / clip["path"]
        a0 = pipe.analyse(path, utt_id=clip["utt_id"], speaker=clip["speaker"], clip=key)
        audio = read_audio(path, AUDIO_SR) if a0.has_audio else None
        for text, scorer in scorers:
            a = copy.deepcopy(a0)
            if not a.final and a.tracks:
                seconds[text] += rescore(pipe, a, scorer, audio)
            records[text][key] = pipe.finish(a).record
    out = {}
    for text, _ in scorers:
        rep = score_manifest(records[text], sub, cfg.max_frames)
        out[text] = dict(rep.as_dict(), score_seconds=seconds[text])
        print(f"{text}: precision {rep.precision:.4f} ({rep.correct}/{rep.crops}), recall {rep.recall:.4f}, "
              f"coverage {rep.coverage:.4f} ({rep.covered}/{rep.speaker_visible}); statuses {rep.statuses}; "
              f"patch+score {seconds[text]:.1f} s")
        for f in rep.failures:
            print("   miss:", f)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
