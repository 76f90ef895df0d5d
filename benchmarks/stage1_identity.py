"""Stage-1 identity step on the demo corpus: naming quality, talking-over precision and its cost.

    python benchmarks/stage1_identity.py --work /tmp/id-bench [--corpus data/demo/MELD.Raw]
    python benchmarks/stage1_identity.py --work /tmp/id-bench --talking-over 0.5   # generated variant

Runs ``prepare`` + ``extract_faces`` twice on the same corpus with the ``stage1`` section of
``--params``: once with ``identity.scope: none`` (speaking scores alone) and once as configured
(dialogue clustering + naming), then prints for both the speaker-frame precision / recall /
coverage (``quality.score_manifest``), the precision on the clips where a listener talks over the
speaker, and, for the identity run, cluster naming accuracy and purity
(``quality.score_identities``), the wall time of each run and the identity step's share.

``--talking-over P`` first generates a demo corpus with ``demo.p_talking_over = P`` (a listener's
mouth moves with a second voice mixed into the audio in that share of the normal clips) into
``<work>/corpus``. Goals (issue 4): >= 95 % of clusters rightly named, talking-over precision >=
0.95, identity adds <= 25 % to stage-1 time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from stage1_face_extraction.quality import score_identities, score_manifest
from stage1_face_extraction.stages import extract_faces, make_demo, prepare
from stage1_face_extraction.store import read_identities, read_manifest


def run(params: dict, corpus: Path, work: Path, name: str, workers: int) -> tuple[float, dict, dict]:
    """prepare + extract_faces into ``work/name``; (wall seconds of extract_faces, records, identities)."""
    out = work / name
    out.mkdir(parents=True, exist_ok=True)
    pfile = out / "params.yaml"
    pfile.write_text(yaml.safe_dump(params, sort_keys=False))
    table = out / "utterances.parquet"
    if prepare.main(["--params", str(pfile), "--out", str(table)]) != 0:
        raise SystemExit("prepare failed")
    faces = out / "faces"
    t0 = time.perf_counter()
    if extract_faces.main(["--params", str(pfile), "--utterances", str(table), "--meld-root", str(corpus),
                           "--out", str(faces), "--workers", str(workers)]) != 0:
        raise SystemExit("extract_faces failed")
    wall = time.perf_counter() - t0
    records, identities = {}, {}
    for manifest in sorted(faces.glob("*/manifest.jsonl")):
        split = manifest.parent.name
        records.update({f"{split}/{r['utt_id']}": r for r in read_manifest(manifest, with_timings=True)})
        if (manifest.parent / "identities.jsonl").is_file():
            identities.update(read_identities(manifest.parent / "identities.jsonl"))
    return wall, records, identities


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="scratch folder (outputs of both runs)")
    ap.add_argument("--corpus", type=Path, default=Path("data/demo/MELD.Raw"), help="demo corpus with truth.json")
    ap.add_argument("--talking-over", type=float, help="generate a variant corpus with this p_talking_over")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)
    params = yaml.safe_load(args.params.read_text())
    corpus = args.corpus
    if args.talking_over is not None:
        params["demo"]["p_talking_over"] = float(args.talking_over)
        corpus = args.work / "corpus"
        pfile = args.work / "demo_params.yaml"
        args.work.mkdir(parents=True, exist_ok=True)
        pfile.write_text(yaml.safe_dump(params, sort_keys=False))
        if (
            not (corpus / "truth.json").is_file()
            and make_demo.main(["--params", str(pfile), "--out", str(corpus)]) != 0
        ):
            return 2
    if not (corpus / "truth.json").is_file():
        print(f"no demo corpus at {corpus} (run `dvc repro make_demo` first)", file=sys.stderr)
        return 2
    truth = json.loads((corpus / "truth.json").read_text(encoding="utf-8"))
    params["data"] = {**params["data"], "meld_root": str(corpus), "csv_dir": None}
    params["stage1"]["contact_sheets"] = 0
    over = {k for k, c in truth["clips"].items() if c.get("talking_over")}
    base = json.loads(json.dumps(params))
    base["stage1"]["identity"] = {**base["stage1"].get("identity", {}), "scope": "none"}
    result = {"corpus": str(corpus), "clips": len(truth["clips"]), "talking_over_clips": len(over)}
    for name, p in (("none", base), ("identity", params)):
        wall, records, identities = run(p, corpus, args.work, name, args.workers)
        q = score_manifest(records, truth, p["stage1"]["max_frames"])
        row = {"wall_s": round(wall, 1), "precision": q.precision, "recall": q.recall, "coverage": q.coverage,
               "statuses": q.statuses}
        if over:
            qo = score_manifest({k: records[k] for k in over}, {**truth, "clips": {k: truth["clips"][k] for k in over}})
            row.update(talking_over_precision=qo.precision, talking_over_recall=qo.recall,
                       talking_over_coverage=qo.coverage)
        cpu = {}
        for r in records.values():
            for k, v in r.get("timings", {}).items():
                cpu[k] = cpu.get(k, 0.0) + v
        row["cpu_s"] = {k: round(v, 1) for k, v in cpu.items()}
        if identities:
            iq = score_identities(records, identities, truth)
            row["identity"] = iq.as_dict()
        result[name] = row
        print(f"[{name}] extract_faces {wall:.1f} s wall; precision {q.precision:.4f} recall {q.recall:.4f} "
              f"coverage {q.coverage:.4f}; statuses {q.statuses}")
        if over:
            print(f"[{name}] talking over ({len(over)} clips): precision {row['talking_over_precision']:.4f} "
                  f"recall {row['talking_over_recall']:.4f} coverage {row['talking_over_coverage']:.4f}")
        if identities:
            print(f"[{name}] clusters {iq.clusters}: rightly named {iq.right} ({iq.accuracy:.1%}), named {iq.named} "
                  f"(precision {iq.naming_precision:.1%}), nameable {iq.nameable}, purity {iq.purity:.1%}")
            for e in iq.errors:
                print("   ", e)
    a, b = result["none"], result["identity"]
    extra = b["wall_s"] / a["wall_s"] - 1.0
    id_share = b["cpu_s"].get("identity_s", 0.0) / max(a["cpu_s"].get("total_s", 1e-9), 1e-9)
    result["identity_overhead_wall"] = extra
    result["identity_cpu_over_stage1_cpu"] = id_share
    print(f"identity adds {extra:+.1%} wall time ({a['wall_s']:.1f} s -> {b['wall_s']:.1f} s); embedding CPU time "
          f"{b['cpu_s'].get('identity_s', 0.0):.1f} s = {id_share:.1%} of the stage-1 CPU time without it")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
