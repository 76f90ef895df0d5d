"""``facialmmt doctor``: a preflight check of a run before it starts, in seconds.

    facialmmt doctor [--params params.yaml] [--root DIR] [--sample 3] [--affwild2 DIR] [--dvc-yaml FILE]
                     [--json report.json | --json -]

Checks, each reported as OK, WARN or FAIL with one message and, for a problem, one fix:

* **config**: every params.yaml section through the loader its stage uses (strict: an unknown key
  is a FAIL naming the valid ones), and the registry keys of the components it picks (detector,
  speaking scorer, identity embedder, feature extractors);
* **data**: ``data.meld_root``, the three CSVs (read by the stage's own strict reader) and the clip
  folders: clips present / missing per split against the CSV rows (one directory listing each), and
  ``--sample`` clips per split opened and probed (resolution, frame rate);
* **weights**: every file the configured components read, located with the library's own
  resolvers (stage-1 detector, voice activity, identity embedder; the visual and audio extractors;
  ``model.text_encoder`` incl. ``pkg:``; ``fer.checkpoint``; the Aff-Wild2 folder). Nothing is
  loaded: only paths are resolved. ``random_init: true`` is a WARN (demo only);
* **machine**: the GPU (name, memory, bf16) against ``train.precision`` and the configured devices;
  CPU cores against ``runtime.stage1.workers``; free disk at the outputs, the DVC cache and the default
  DVC remote against what the run will write;
* an **estimate** of the run time per stage from the corpus size and :data:`RATES`; stage 1's from
  the measured whole-stage benchmark :data:`STAGE1_BENCHMARK` (``benchmarks/stage1_speed.py --stage
  --json``) when that file is there, its machine and date named in the report (else the assumed
  :data:`STAGE1_PARTS`, and the report says so).

Relative paths in params.yaml are resolved against ``--root`` (default: the folder of the params
file, the repository root for the project's params.yaml), where ``dvc repro`` runs the stages.
Exit status 1 when any check FAILs, 0 otherwise (2 for bad arguments). The checks are the
modules of this package (:mod:`stage2_mer.doctor`); this one is the command line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from .report import Doctor


def param_sections() -> dict[str, type]:
    """Every params.yaml section a stage reads -> its config dataclass (both stage packages)."""
    from stage1_face_extraction.stages import param_sections as stage1_sections
    from stage2_mer.stages import param_sections as stage2_sections

    return {**stage1_sections(), **stage2_sections()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="facialmmt doctor", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    ap.add_argument("--root", help="folder the params paths are relative to (default: the params file's folder)")
    ap.add_argument("--sample", type=int, default=3, help="clips per split opened to check they decode (default 3)")
    ap.add_argument("--affwild2", help="Aff-Wild2 folder train will read (default: train's --affwild2 in dvc.yaml)")
    ap.add_argument("--dvc-yaml", help="pipeline file (default: <root>/dvc.yaml)")
    ap.add_argument("--json", metavar="PATH", help="also write the report as JSON to PATH ('-': JSON on stdout only)")
    args = ap.parse_args(argv)
    params = Path(args.params)
    root = Path(args.root) if args.root else params.absolute().parent
    doctor = Doctor(params, root, sections=param_sections(), sample=args.sample, affwild2=args.affwild2,
                    dvc_yaml=Path(args.dvc_yaml) if args.dvc_yaml else None)
    doctor.run()
    report = doctor.to_dict()
    if args.json == "-":
        print(json.dumps(report, indent=2))
    else:
        print(doctor.render(width=max(80, min(shutil.get_terminal_size((110, 20)).columns, 140))))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 1 if doctor.failed else 0


if __name__ == "__main__":
    sys.exit(main())
