"""Resume an interrupted stage run, also under ``dvc repro``, without ever mixing two runs' outputs.

DVC deletes a stage's outputs before it runs the stage again, which would throw away hours of
finished work after a crash. Stages whose work is long (``extract_faces``) therefore declare their
output ``persist: true`` in ``dvc.yaml`` and use a :class:`RunState`: at the start of a run a marker
``<out>/.run-in-progress.json`` records a fingerprint of everything the outputs depend on (the
stage's params section, the input files' hashes or sizes and mtimes, the package's code). A rerun
with the same fingerprint resumes; anything else (another fingerprint, or an earlier run that
finished and so left no marker) starts over from an empty folder. The marker is removed when the
run finishes, so a finished output holds exactly what an uninterrupted run writes. A run that
reaches its end with clips whose processing raised (manifest status ``error``) has not finished:
it keeps the marker (and exits 1), so a rerun with the same inputs resumes and retries those clips.

    state = RunState(out, fingerprint({"stage1": to_dict(cfg), "table": file_digest(table)}))
    if state.begin() != "resume":
        remove(outputs_of_an_earlier_run)
    ...                                   # write the outputs (resumable, see store.py)
    state.finish()
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .store import atomic_write_bytes

log = logging.getLogger(__name__)

MARKER = ".run-in-progress.json"


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def package_code_digest(package_dir: str | Path) -> str:
    """sha256 over the ``*.py`` files of a package folder (relative names and bytes, sorted)."""
    root = Path(package_dir)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def stat_digest(paths: Iterable[str | Path]) -> str:
    """sha256 over (path, size, mtime) of many files (missing ones count too): cheap, for large
    inputs such as video clips that cannot be hashed at every start."""
    h = hashlib.sha256()
    for p in paths:
        try:
            st = Path(p).stat()
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()


def fingerprint(parts: Mapping[str, Any]) -> str:
    """One sha256 of JSON-able ``parts`` (keys sorted)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class RunState:
    """The in-progress marker of a resumable run writing into ``out`` (see the module docstring)."""

    def __init__(self, out: str | Path, fp: str) -> None:
        self.out = Path(out)
        self.fp = fp
        self.marker = self.out / MARKER

    def _stored(self) -> str | None:
        try:
            return json.loads(self.marker.read_text(encoding="utf-8"))["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def begin(self) -> str:
        """Start (or resume) the run; returns ``"resume"`` (an interrupted run with the same
        fingerprint), ``"changed"`` (an interrupted run with other inputs: remove its outputs with
        :func:`remove`) or ``"new"`` (no interrupted run: outputs found in ``out`` come from a
        finished earlier run). Then the marker is (re)written."""
        stored = self._stored() if self.marker.exists() else None
        if stored == self.fp:
            log.info("%s: resuming an interrupted run with the same inputs", self.out)
            state = "resume"
        elif self.marker.exists():
            log.warning("%s: the interrupted run there had other inputs (params, data or code): starting over",
                        self.out)
            state = "changed"
        else:
            state = "new"
        atomic_write_bytes(self.marker, (json.dumps({"fingerprint": self.fp}) + "\n").encode())
        return state

    def finish(self) -> None:
        """The run is complete: remove the marker (a later run starts over)."""
        self.marker.unlink(missing_ok=True)


def remove(paths: Iterable[str | Path]) -> None:
    """Delete files and folders (symlinks themselves, never their targets); missing ones are fine."""
    for p in map(Path, paths):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
