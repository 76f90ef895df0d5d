"""The resume journals of a stage-1 split folder: append-only JSON lines, each made durable at once.

``<split>/.journal.jsonl`` (:data:`JOURNAL`) holds one manifest record per finished clip, written
(flushed and fsynced) *before* the clip's crops go to a shard, so a clip in a finished shard always
has its record; ``<split>/.identities.journal.jsonl`` (:data:`ID_JOURNAL`) holds one identity report
per group, written before any of the group's clips is finished. A run killed at any point leaves at
worst a last line cut short: reading skips it, and reopening for append starts a fresh line after it.
A split folder is finished once its journal is gone (removed last, :func:`split_finished`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

JOURNAL = ".journal.jsonl"
ID_JOURNAL = ".identities.journal.jsonl"


def load_journal(path: Path, key: str = "utt_id") -> dict[str, dict]:
    """``{rec[key]: rec}`` of the journal at ``path`` (empty when there is none); a line cut by a
    kill is skipped, a later line of the same key wins."""
    out: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
                continue
            out[rec[key]] = rec
    return out


class Journal:
    """A journal open for appending (a context manager): :meth:`append` returns once the line is on
    disk (flushed and fsynced). Opening ends a line cut by a kill, so the next line starts afresh.
    ``default``: ``json.dumps``' hook for values JSON does not know (e.g. ``float`` for numpy numbers)."""

    def __init__(self, path: Path, default: Callable[[Any], Any] | None = None) -> None:
        self.path = Path(path)
        self.default = default
        if self.path.is_file() and self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n"):
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write("\n")
        self._fh: TextIO = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def append(self, rec: dict) -> None:
        """Add ``rec`` as one line, durable when this returns."""
        self._fh.write(json.dumps(rec, default=self.default) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def split_finished(folder: Path) -> bool:
    """A split folder that a run completed (its journal, removed last, is gone)."""
    return (folder / "manifest.jsonl").is_file() and not (folder / JOURNAL).exists()
