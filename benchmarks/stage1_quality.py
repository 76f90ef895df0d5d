"""Stage-1 quality on the demo corpus: speaker-frame precision, recall and coverage.

    python benchmarks/stage1_quality.py --faces data/faces --truth data/demo/MELD.Raw/truth.json

Reads the manifests written by the ``extract_faces`` stage (``<faces>/<split>/manifest.jsonl``)
and scores them against the demo ground truth (see stage1_face_extraction/quality.py for the
definitions). Goals: precision >= 0.98, recall >= 0.90, coverage >= 0.97.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stage1_face_extraction.quality import score_manifest
from stage1_face_extraction.store import read_manifest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=Path, default=Path("data/faces"))
    ap.add_argument("--truth", type=Path, default=Path("data/demo/MELD.Raw/truth.json"))
    ap.add_argument("--max-frames", type=int, default=160)
    ap.add_argument("--json", type=Path, help="also write the report here")
    args = ap.parse_args(argv)
    truth = json.loads(args.truth.read_text())
    records = {}
    for manifest in sorted(args.faces.glob("*/manifest.jsonl")):
        split = manifest.parent.name
        for rec in read_manifest(manifest):
            records[f"{split}/{rec['utt_id']}"] = rec
    rep = score_manifest(records, truth, args.max_frames)
    print(f"utterances {rep.utterances}, speaker visible in {rep.speaker_visible}, statuses {rep.statuses}")
    print(f"precision {rep.precision:.4f}  ({rep.correct}/{rep.crops} crops on the true speaker; goal >= 0.98)")
    print(f"recall    {rep.recall:.4f}  (goal >= 0.90)")
    print(f"coverage  {rep.coverage:.4f}  ({rep.covered}/{rep.speaker_visible} utterances; goal >= 0.97)")
    for f in rep.failures:
        print("  miss:", f)
    if args.json:
        args.json.write_text(json.dumps(rep.as_dict(), indent=2) + "\n")
    ok = rep.precision >= 0.98 and rep.recall >= 0.90 and rep.coverage >= 0.97
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
