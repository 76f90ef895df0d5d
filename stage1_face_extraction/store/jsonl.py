"""JSON Lines reading shared by the shard index and the manifest: one record per non-blank line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path


def iter_jsonl(path: Path) -> Iterator[tuple[int, object]]:
    """``(line number, parsed record)`` for every non-blank line of ``path``; a line that is not JSON
    raises ValueError naming the file and line."""
    with path.open("r", encoding="utf-8") as fh:
        for ln, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield ln, json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{ln}: bad JSON ({exc})") from None
