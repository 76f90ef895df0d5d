"""Small helpers shared by the stage entry points (logging set-up, atomic writes)."""

from __future__ import annotations

import logging
import os
from pathlib import Path


def setup_logging(level: int = logging.INFO) -> None:
    """One-line log format for entry points; libraries only use ``logging.getLogger(__name__)``."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file + rename (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
