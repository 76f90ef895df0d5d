"""The doctor's run and its report: :class:`Doctor` runs every check in order (config first: without
a readable params file nothing else runs) and renders what they found as text or JSON."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import Any

from . import estimate
from .base import FAIL, OK, WARN, Checkup, fmt_duration
from .data import check_data
from .machine import check_cpu, check_disk, check_gpu
from .params import check_config
from .training import check_affwild2, check_fer, check_text_encoder
from .weights import check_features, check_stage1


class Doctor(Checkup):
    """Runs every check; :attr:`checks`, :attr:`estimate` and :attr:`facts` hold the report.

    ``sections`` maps every params.yaml section a stage reads (dotted for nested ones) to the config
    dataclass it is read with (the command line gathers them from the stage packages).
    """

    def __init__(self, params: Path, root: Path, *, sections: dict[str, type] | None = None, sample: int = 3,
                 affwild2: str | None = None, dvc_yaml: Path | None = None) -> None:
        super().__init__(params, root, sample=sample, affwild2=affwild2, dvc_yaml=dvc_yaml)
        self.sections = dict(sections or {})

    def run(self) -> None:
        if not check_config(self, self.sections):
            return
        check_gpu(self)
        check_cpu(self)
        work = check_data(self)
        check_stage1(self)
        feats = check_features(self)
        text_params = check_text_encoder(self)
        fer_used = check_fer(self)
        check_affwild2(self, fer_used)
        need = estimate.run_estimate(self, work, feats, text_params, fer_used)
        if need is not None:
            check_disk(self, need)

    def to_dict(self) -> dict[str, Any]:
        counts = {s: sum(c.status == s for c in self.checks) for s in (OK, WARN, FAIL)}
        return {
            "params": str(self.params_path), "root": str(self.root), "ok": not self.failed, "counts": counts,
            "checks": [dataclasses.asdict(c) for c in self.checks], "estimate": self.estimate,
            "estimate_total_s": round(sum(r["seconds"] for r in self.estimate)), "disk": self.disk,
            "facts": self.facts, "rates": {k: dataclasses.asdict(v) for k, v in estimate.RATES.items()},
        }

    def render(self, width: int = 100) -> str:
        lines = [f"facialmmt doctor: {self.params_path} (paths relative to {self.root})", ""]
        name_w = min(34, max((len(c.name) for c in self.checks), default=10))
        indent = " " * (6 + name_w + 2)
        for c in self.checks:
            head = f"{c.status:<5} {c.name:<{name_w}}  "
            if len(c.name) > name_w:
                lines.append(f"{c.status:<5} {c.name}")
                head = indent
            body = textwrap.wrap(c.message, width - len(indent)) or [""]
            lines.append(head + body[0])
            lines += [indent + b for b in body[1:]]
            if c.fix:
                fix = textwrap.wrap("fix: " + c.fix, width - len(indent) - 2)
                lines += [indent + "  " + f for f in fix]
        counts = {s: sum(c.status == s for c in self.checks) for s in (OK, WARN, FAIL)}
        lines += ["", f"{counts[OK]} OK, {counts[WARN]} WARN, {counts[FAIL]} FAIL"]
        if self.estimate:
            lines += ["", ("Run-time estimate (ROUGH, +-50 % at best: CPU rates measured on 2 cores, GPU speed-ups "
                           "guessed; see RATES in stage2_mer/doctor/estimate.py)"),
                      f"  from {self.facts['workload']['source']}"]
            w1 = max(len(r["stage"]) for r in self.estimate)
            w2 = max(len(r["units"]) for r in self.estimate)
            for r in self.estimate:
                lines.append(
                    f"  {r['stage']:<{w1}}  {r['units']:<{w2}}  {r['device']:<7} ~{fmt_duration(r['seconds']):>8}"
                    f"   {r['rate']}" + (f"; {r['note']}" if r.get("note") else "")
                )
            total = sum(r["seconds"] for r in self.estimate)
            lines.append(f"  {'total':<{w1}}  {'':<{w2}}  {'':<7} ~{fmt_duration(total):>8}")
        return "\n".join(lines)
