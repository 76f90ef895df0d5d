"""Print what ``dvc repro`` produced: every stage's outputs, metrics and plots from dvc.yaml.

    python -m stage1_face_extraction.stages.report [--dvc-yaml dvc.yaml]

``make demo`` ends with this, so a user sees where the utterance table, face sequences, contact
sheets, identity sheets, preview videos, metrics and plots are without reading dvc.yaml.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml


def _entries(items) -> list[str]:
    out = []
    for it in items or []:
        out.append(next(iter(it)) if isinstance(it, dict) else str(it))
    return out


def _expand(stages: dict) -> dict:
    """``foreach`` stages as their instances (``name@key``; ``${key}`` / ``${item}`` substituted in paths)."""
    out = {}
    for name, stage in (stages or {}).items():
        if isinstance(stage, dict) and "foreach" in stage and "do" in stage:
            items = stage["foreach"]
            keys = list(items) if isinstance(items, (dict, list)) else []
            for key in keys:
                do = json.dumps(stage["do"]).replace("${key}", str(key)).replace("${item}", str(key))
                out[f"{name}@{key}"] = json.loads(do)
        else:
            out[name] = stage
    return out


def _size(p: Path) -> str:
    if p.is_dir():
        files = [f for f in p.rglob("*") if f.is_file()]
        return f"{len(files)} files, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB"
    return f"{p.stat().st_size / 1e6:.2f} MB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="facialmmt report", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dvc-yaml", default="dvc.yaml")
    args = ap.parse_args(argv)
    spec = yaml.safe_load(Path(args.dvc_yaml).read_text(encoding="utf-8")) or {}
    print("\nPipeline outputs (dvc.yaml):")
    stages = _expand(spec.get("stages") or {})
    for name, stage in stages.items():
        print(f"  [{name}]")
        for kind in ("outs", "metrics", "plots"):
            for path in _entries(stage.get(kind)):
                p = Path(path)
                state = _size(p) if p.exists() else "not produced yet"
                print(f"    {kind:<8} {path}  ({state})")
                if kind == "metrics" and p.is_file() and p.suffix == ".json":
                    print("             " + json.dumps(json.loads(p.read_text()), separators=(", ", ": "))[:300])
    media: dict[Path, dict[str, int]] = {}  # folder -> {suffix: count}
    for stage in stages.values():
        for path in _entries(stage.get("outs")) + _entries(stage.get("plots")):
            p = Path(path)
            for f in (p.rglob("*") if p.is_dir() else [p]):
                if f.suffix in (".png", ".mp4", ".gif") and f.is_file():
                    kinds = media.setdefault(f.parent, {})
                    kinds[f.suffix] = kinds.get(f.suffix, 0) + 1
    if media:
        print("\nPictures and videos to look at:")
        for folder, kinds in sorted(media.items()):
            what = ", ".join(f"{n} {suffix[1:].upper()}" for suffix, n in sorted(kinds.items()))
            print(f"  {folder}/  ({what})")
    plots = [path for stage in stages.values() for path in _entries(stage.get("plots"))]
    if plots:
        print("\nPlots: `dvc plots show` renders " + ", ".join(plots) + " into dvc_plots/index.html; "
              "`dvc metrics show` prints the metrics above.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
