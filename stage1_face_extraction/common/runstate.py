"""Resume an interrupted stage run, also under ``dvc repro``, without ever mixing two runs' outputs.

DVC deletes a stage's outputs before it runs the stage again, which would throw away hours of
finished work after a crash. Stages whose work is long (``extract_faces``) therefore declare their
output ``persist: true`` in ``dvc.yaml`` and use a :class:`RunState`: at the start of a run a marker
``<out>/.run-in-progress.json`` records a fingerprint of everything the outputs depend on (the
stage's params section, the input files' hashes or sizes and mtimes, the package's code). A rerun
with the same fingerprint resumes; anything else (another fingerprint, or an earlier run that
finished and so left no marker) starts over from an empty folder. The marker is written only after
the outputs of another run are deleted (a kill during the deletion leaves the old marker, or none:
the rerun deletes again, never mistaking half-deleted folders for its own). The marker is removed
when the run finishes, so a finished output holds exactly what an uninterrupted run writes. A run that
reaches its end with clips whose processing raised (manifest status ``error``) has not finished:
it keeps the marker (and exits 1), so a rerun with the same inputs resumes and retries those clips.

    check_own_output(out, "extract_faces")  # never empty a folder that is not the stage's own
    state = RunState(out, fingerprint({"stage1": to_dict(cfg), "table": file_digest(table)}))
    state.begin(clear=lambda how: how != "resume" and remove(outputs_of_an_earlier_run))
    ...                                   # write the outputs (resumable, see the store package)
    state.finish()

A stage that empties its output folder first checks that the folder is its own
(:func:`check_own_output`): never the current folder or one above it, never a folder holding a
repository (``.git``, ``.dvc``, ``dvc.yaml``), and a non-empty folder only when it carries the
stage's ownership file (``.facialmmt-output.json``, written by :meth:`RunState.begin` and
:func:`claim_output`) or has the stage's own layout (``legacy``: outputs written before that file).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .atomic import atomic_write_bytes

log = logging.getLogger(__name__)

MARKER = ".run-in-progress.json"
OWNER = ".facialmmt-output.json"


class ForeignOutputError(ValueError):
    """A stage was asked to empty a folder that is not its own output."""


def check_own_output(out: str | Path, stage: str, legacy: Callable[[Path], bool] | None = None) -> None:
    """Raise :class:`ForeignOutputError` unless ``out`` is a folder ``stage`` may empty (module docstring)."""
    out = Path(out)
    real = out.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents or real == Path.home().resolve():
        raise ForeignOutputError(f"refusing to empty {out}: it is the current folder, a folder above it or the "
                                 "home folder; give the stage an output folder of its own (e.g. under data/)")
    for mark in (".git", ".dvc", "dvc.yaml"):
        if (real / mark).exists():
            raise ForeignOutputError(f"refusing to empty {out}: it holds {mark} (a repository); give the stage "
                                     "an output folder of its own (e.g. under data/)")
    if not real.exists():
        return
    if not real.is_dir():
        raise ForeignOutputError(f"refusing to use {out}: it is not a folder")
    if not any(real.iterdir()):
        return
    owner = real / OWNER
    if owner.is_file():
        try:
            who = json.loads(owner.read_text(encoding="utf-8")).get("stage")
        except (OSError, ValueError, AttributeError):
            who = None
        if who == stage:
            return
        raise ForeignOutputError(f"refusing to empty {out}: it is the output of {who!r}, not of {stage!r}")
    if legacy is not None and legacy(real):
        return
    raise ForeignOutputError(f"refusing to empty {out}: a non-empty folder that is not an output of {stage} "
                             f"(no {OWNER}); delete it yourself or name another folder")


def claim_output(out: str | Path, stage: str) -> None:
    """Mark ``out`` as ``stage``'s own output folder (see :func:`check_own_output`)."""
    atomic_write_bytes(Path(out) / OWNER, (json.dumps({"stage": stage}) + "\n").encode())


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

    def __init__(self, out: str | Path, fp: str, stage: str | None = None) -> None:
        self.out = Path(out)
        self.fp = fp
        self.stage = stage  # with a stage name, begin() also claims ``out`` as its own (OWNER)
        self.marker = self.out / MARKER

    def _stored(self) -> str | None:
        try:
            return json.loads(self.marker.read_text(encoding="utf-8"))["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def begin(self, clear: Callable[[str], object] | None = None) -> str:
        """Start (or resume) the run; returns ``"resume"`` (an interrupted run with the same
        fingerprint), ``"changed"`` (an interrupted run with other inputs: remove its outputs with
        :func:`remove`) or ``"new"`` (no interrupted run: outputs found in ``out`` come from a
        finished earlier run). ``clear(state)`` is called next, to delete another run's outputs;
        only then is the marker (re)written (and, with ``stage``, the ownership file)."""
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
        if clear is not None:
            clear(state)  # a kill in here leaves the old marker (or none): the rerun clears again
        if self.stage is not None:
            claim_output(self.out, self.stage)
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
