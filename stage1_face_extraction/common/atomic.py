"""Atomic file writes: readers never see half a file, and a full disk names the file and what to do."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

#: the errnos of a full disk (or an exhausted quota)
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full_error(path: Path, exc: OSError, size: int | None = None) -> OSError:
    """An OSError (same errno) whose message says which file could not be written and what to do."""
    need = f" ({size} bytes)" if size is not None else ""
    try:
        free = f"; {shutil.disk_usage(path.parent).free} bytes free on that file system"
    except OSError:
        free = ""
    return OSError(exc.errno, f"no space left on device writing {path}{need}{free}: the partial file was "
                              "removed and finished files are kept; free some space and rerun to resume", str(path))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file + fsync + rename (readers never see half a file).

    On any error (a full disk: an OSError naming ``path``, see :func:`disk_full_error`) the temp
    file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            raise disk_full_error(path, exc, len(data)) from exc
        raise
