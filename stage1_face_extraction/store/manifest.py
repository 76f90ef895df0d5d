"""The per-clip manifest (``manifest.jsonl``, its ``timings.jsonl`` sidecar) and ``identities.jsonl``.

``manifest.jsonl``: one JSON object per clip (schema in ``stage1_face_extraction/SCHEMA.md``), keys in a fixed order,
floats rounded to 4 decimals, records sorted by utt_id, so a rerun gives identical bytes. Wall
times vary from run to run, so ``timings`` are split off into a sidecar ``timings.jsonl`` (same
order, ``{"utt_id", "clip", "timings"}``) that determinism checks simply ignore. During a run,
:class:`ManifestAppender` appends each clip's row (flushed and fsynced) as the clip finishes, so a
crash or kill keeps the finished clips' rows; the run then rewrites the file sorted.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stage1_face_extraction.common.atomic import DISK_FULL, atomic_write_bytes
from stage1_face_extraction.store.jsonl import iter_jsonl

logger = logging.getLogger(__name__)

#: a clip's manifest status. Bad input: missing, decode_error (undecodable file), no_face, no_speaker,
#: no_audio; ``error``: the processing itself raised (a bug, an exhausted resource), with the
#: exception in ``reason``; a rerun retries such clips.
STATUSES = ("ok", "no_face", "no_speaker", "no_audio", "decode_error", "missing", "error")
NO_FRAMES = (
    "missing",
    "decode_error",
    "error",
)  # the statuses of clips with no frames and no tracks (nothing to preview)
TOP_KEYS = ("clip", "utt_id", "status", "fps", "n_frames", "frames", "tracks")
FRAME_KEYS = ("frame", "t", "box", "det_score", "speaking", "track")


def _plain(x: Any, ndigits: int) -> Any:
    """JSON-safe copy: numpy -> python, floats rounded, NaN/inf -> None, dict keys ordered."""
    if isinstance(x, dict):
        return {str(k): _plain(v, ndigits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v, ndigits) for v in x]
    if isinstance(x, np.ndarray):
        return [_plain(v, ndigits) for v in x.tolist()]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        f = float(x)
        if not math.isfinite(f):
            return None
        r = round(f, ndigits)
        return 0.0 if r == 0 else r  # no "-0.0"
    if x is None or isinstance(x, str):
        return x
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"cannot store {type(x).__name__} in the manifest")


def _sorted_deep(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _sorted_deep(x[k]) for k in sorted(x)}
    if isinstance(x, list):
        return [_sorted_deep(v) for v in x]
    return x


def _ordered(d: dict, first: Sequence[str]) -> dict:
    """Keys in ``first`` (in that order) first, then the rest sorted; nested dicts sorted."""
    out = {k: _sorted_deep(d[k]) for k in first if k in d}
    for k in sorted(d):
        if k not in out:
            out[k] = _sorted_deep(d[k])
    return out


def validate_record(rec: dict) -> None:
    """Raise ValueError when a manifest record breaks the schema (see SCHEMA.md)."""
    if not isinstance(rec, dict):
        raise ValueError(f"manifest record must be a dict, got {type(rec).__name__}")
    for k in ("clip", "utt_id", "status"):
        if k not in rec:
            raise ValueError(f"manifest record lacks {k!r}: {sorted(rec)}")
    if rec["status"] not in STATUSES:
        raise ValueError(f"{rec['utt_id']}: unknown status {rec['status']!r}; valid: {', '.join(STATUSES)}")
    if "n_frames" in rec and (not isinstance(rec["n_frames"], (int, np.integer)) or rec["n_frames"] < 0):
        raise ValueError(f"{rec['utt_id']}: n_frames must be an int >= 0, got {rec['n_frames']!r}")
    frames = rec.get("frames", [])
    if not isinstance(frames, (list, tuple)):
        raise ValueError(f"{rec['utt_id']}: frames must be a list")
    for f in frames:
        if not isinstance(f, dict) or "frame" not in f:
            raise ValueError(f"{rec['utt_id']}: every frames[] entry needs a 'frame' index")


def canonical_record(rec: dict, ndigits: int = 4) -> dict:
    """Validated, JSON-safe, fixed-key-order copy of a record WITHOUT ``timings``."""
    validate_record(rec)
    body = {k: v for k, v in rec.items() if k != "timings"}
    plain = _plain(body, ndigits)
    out = _ordered(plain, TOP_KEYS)
    if "frames" in out:
        out["frames"] = [_ordered(f, FRAME_KEYS) for f in out["frames"]]
    return out


def _dump(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(", ", ": "))


def write_manifest(
    path: str | Path,
    records: Iterable[dict],
    timings_path: str | Path | None = "auto",
    ndigits: int = 4,
    sort: bool = True,
) -> Path:
    """Write ``manifest.jsonl`` atomically (deterministic bytes, see module docstring).

    timings_path: "auto" -> ``timings.jsonl`` beside ``path``; None -> timings are dropped.
    Returns the manifest path.
    """
    path = Path(path)
    recs = list(records)
    for r in recs:
        validate_record(r)
    if sort:
        recs = sorted(recs, key=lambda r: (str(r["utt_id"]), str(r["clip"])))
    lines = [_dump(canonical_record(r, ndigits)) + "\n" for r in recs]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, "".join(lines).encode("utf-8"))
    if timings_path is not None:
        tpath = path.with_name("timings.jsonl") if timings_path == "auto" else Path(timings_path)
        tlines = [
            _dump({"utt_id": r["utt_id"], "clip": str(r["clip"]), "timings": _plain(r["timings"], ndigits)}) + "\n"
            for r in recs
            if "timings" in r
        ]
        atomic_write_bytes(tpath, "".join(tlines).encode("utf-8"))
    return path


class ManifestAppender:
    """``manifest.jsonl`` (and ``timings.jsonl``) written row by row as clips finish, so that a crash
    or a kill later in the run leaves the finished clips' rows on disk.

    Opening starts both files afresh with ``records`` (clips finished earlier: a resumed run),
    written as :func:`write_manifest` writes them; each :meth:`append` adds one row, in the format
    of a :func:`write_manifest` line, flushed and fsynced (its timings line is flushed only: wall
    times are a sidecar). The rows come in finishing order: at the end of a run the caller rewrites
    the file with :func:`write_manifest` (sorted: the same bytes as a run that only wrote at the
    end). Close it first.
    """

    def __init__(self, path: str | Path, records: Iterable[dict] = (), ndigits: int = 4) -> None:
        self.path = Path(path)
        self.timings_path = self.path.with_name("timings.jsonl")
        self.ndigits = ndigits
        records = list(records)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if records:
            write_manifest(self.path, records, ndigits=ndigits)
        else:  # nothing to keep: empty files (no rows to make durable yet)
            for p in (self.path, self.timings_path):
                p.open("w", encoding="utf-8").close()
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        try:
            self._tfh = open(self.timings_path, "a", encoding="utf-8")  # noqa: SIM115
        except BaseException:
            self._fh.close()
            raise

    def append(self, rec: dict) -> None:
        """Add one clip's row (validated; ValueError for a record that breaks the schema)."""
        line = _dump(canonical_record(rec, self.ndigits)) + "\n"
        rows = [(self._fh, self.path, line, True)]
        if "timings" in rec:
            t = {"utt_id": rec["utt_id"], "clip": str(rec["clip"]), "timings": _plain(rec["timings"], self.ndigits)}
            rows.append((self._tfh, self.timings_path, _dump(t) + "\n", False))
        for fh, path, text, durable in rows:
            try:
                fh.write(text)
                fh.flush()
                if durable:
                    os.fsync(fh.fileno())
            except OSError as exc:
                if exc.errno in DISK_FULL:
                    raise OSError(exc.errno, f"no space left on device appending a row of {rec['utt_id']} to "
                                  f"{path}: the rows written before are kept; free some space and rerun",
                                  str(path)) from exc
                raise

    def close(self) -> None:
        for fh in (self._fh, self._tfh):
            try:
                fh.close()
            except OSError as exc:  # every row was flushed already: nothing is lost here
                logger.warning("closing %s: %s", fh.name, exc)

    def __enter__(self) -> ManifestAppender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_identities(path: str | Path, reports: Iterable[dict]) -> Path:
    """Write ``identities.jsonl`` atomically: one identity report per group (``GroupIdentity.report``),
    sorted by ``group``, compact JSON (deterministic bytes)."""
    path = Path(path)
    recs = sorted(reports, key=lambda r: str(r["group"]))
    atomic_write_bytes(path, "".join(_dump(r) + "\n" for r in recs).encode("utf-8"))
    return path


def read_identities(path: str | Path) -> dict[str, dict]:
    """``{group: report}`` from an ``identities.jsonl``."""
    out = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            out[rec["group"]] = rec
    return out


def read_manifest(
    path: str | Path, with_timings: bool = False, timings_path: str | Path | None = "auto"
) -> list[dict]:
    """Records of a manifest (validated); ``with_timings`` merges ``timings`` back from the sidecar."""
    path = Path(path)
    recs: list[dict] = []
    for _, rec in iter_jsonl(path):
        validate_record(rec)
        recs.append(rec)
    if with_timings:
        tpath = path.with_name("timings.jsonl") if timings_path == "auto" else Path(timings_path or "")
        if tpath.is_file():
            times: dict[tuple[str, str], dict] = {}
            with tpath.open("r", encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        t = json.loads(line)
                        times[(t["utt_id"], t["clip"])] = t["timings"]
            for r in recs:
                if (r["utt_id"], r["clip"]) in times:
                    r["timings"] = times[(r["utt_id"], r["clip"])]
    return recs
