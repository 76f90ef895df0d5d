"""What every doctor check shares: the statuses, one report line (:class:`Check`), the run's state
(:class:`Checkup`: the params, the root the paths are relative to, the loaded sections, the lines
so far, the facts) and the formatting helpers (the byte helpers are the components' own, from
:mod:`stage1_face_extraction.common.local_weights`)."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stage1_face_extraction.common.local_weights import FAIL, OK, WARN, fmt_bytes, folder_bytes

from .pipeline import DvcPipeline

__all__ = ["FAIL", "OK", "SPLITS", "WARN", "Check", "Checkup", "fmt_bytes", "fmt_duration", "folder_bytes",
           "quiet_logs"]

SPLITS = ("train", "dev", "test")


@dataclass
class Check:
    """One line of the report."""

    name: str
    status: str  # OK | WARN | FAIL
    message: str
    fix: str = ""


class Checkup:
    """The state the checks share: inputs (params file, root, ``--sample``, ``--affwild2``, the
    pipeline file), what they found (:attr:`checks`, :attr:`facts`, :attr:`estimate`,
    :attr:`disk`) and the loaded params sections (:attr:`cfg`, by section name)."""

    def __init__(self, params: Path, root: Path, *, sample: int = 3, affwild2: str | None = None,
                 dvc_yaml: Path | None = None) -> None:
        self.params_path, self.root = params, root
        self.sample, self.affwild2_arg = int(sample), affwild2
        self.pipeline = DvcPipeline(dvc_yaml if dvc_yaml is not None else root / "dvc.yaml")
        self.checks: list[Check] = []
        self.facts: dict[str, Any] = {}
        self.estimate: list[dict[str, Any]] = []
        self.disk: list[dict[str, Any]] = []
        self.cfg: dict[str, Any] = {}
        self.raw: dict[str, Any] = {}
        self.cuda = False

    def add(self, status: str, name: str, message: str, fix: str = "") -> None:
        self.checks.append(Check(name, status, message, fix))

    def path(self, value: str | os.PathLike) -> Path:
        p = Path(os.path.expanduser(str(value)))
        return p if p.is_absolute() else self.root / p

    def show(self, value: str | os.PathLike) -> str:
        """``value`` as configured, with the resolved path when it differs."""
        p = self.path(value)
        return str(value) if str(p) == str(value) else f"{value} ({p})"

    @property
    def failed(self) -> bool:
        return any(c.status == FAIL for c in self.checks)

    @property
    def is_demo(self) -> bool:
        """The demo corpus (its generator writes truth.json; dvc.yaml's make_demo stage writes it)."""
        data = self.cfg.get("data")
        if data is None:
            return False
        from stage2_mer.fer.affwild2 import is_demo_corpus

        return is_demo_corpus(self.path(data.meld_root)) or bool(self.pipeline.produced_by(str(data.meld_root)))


def fmt_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


@contextlib.contextmanager
def quiet_logs(level: int = logging.ERROR):
    """Library warnings (mojibake repaired, ...) are not the doctor's output."""
    root = logging.getLogger()
    before = root.level
    root.setLevel(level)
    try:
        yield
    finally:
        root.setLevel(before)
