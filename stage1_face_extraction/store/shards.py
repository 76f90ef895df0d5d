"""Face shards (the stage-1 -> stage-2 contract; schema in ``stage1_face_extraction/SCHEMA.md``).

``<root>/shard-00000.tar`` ...: uncompressed USTAR tars of JPEG crops, members
``<utt_id>/<k:04d>.jpg`` (k = 0..n-1 in frame order), at most ``utts_per_shard`` utterances each,
utterances sorted by id inside a shard. Bytes are reproducible: mtime 0, uid/gid 0, empty user and
group names, mode 0644, fixed OpenCV JPEG settings (quality, baseline, no optimisation, 4:2:0).

``<root>/index.jsonl``: one line per stored utterance, sorted by (shard, utt_id)::

    {"utt_id": "dia0_utt0", "shard": "shard-00000.tar", "n": 42, "height": 160, "width": 160,
     "offsets": [512, ...], "sizes": [10811, ...]}

``offsets``/``sizes`` locate each JPEG's bytes inside the tar, so a reader seeks straight to them.

Crash safety and resume: a shard is written to ``shard-XXXXX.tar.tmp`` then ``os.replace``-d; the
index is rewritten the same way right after. A shard is *finished* iff its utterances are in
``index.jsonl`` (the completion marker). A killed run leaves at worst a ``.tmp`` file or a tar that
the index does not list; a new writer deletes the ``.tmp`` files, treats every utterance in the index
as done (``utt_id in writer`` -> skip the work) and rewrites unfinished shards under the same names.
One writer per root at a time.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from stage1_face_extraction.common.atomic import DISK_FULL, atomic_write_bytes, disk_full_error
from stage1_face_extraction.store.jpeg import decode_jpeg, encode_jpeg
from stage1_face_extraction.store.jsonl import iter_jsonl

logger = logging.getLogger(__name__)

INDEX_NAME = "index.jsonl"
SHARD_FMT = "shard-{:05d}.tar"
_SHARD_RE = re.compile(r"^shard-(\d{5,})\.tar$")
_UTT_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


def check_utt_id(utt_id: str) -> str:
    """``utt_id`` when it can name a tar folder (letters, digits, ``_.-``), else ValueError."""
    if not isinstance(utt_id, str) or not _UTT_RE.match(utt_id) or utt_id in (".", ".."):
        raise ValueError(f"utt_id must match {_UTT_RE.pattern} (used as a tar folder), got {utt_id!r}")
    return utt_id


def _check_index_record(rec: object) -> str | None:
    """Why an ``index.jsonl`` record is unusable (None when it is fine). The file may come from
    elsewhere: its names become paths (shard, tar members), so they are checked, never trusted."""
    if not isinstance(rec, dict):
        return f"expected an object, got {type(rec).__name__}"
    for key in ("utt_id", "shard", "n", "offsets", "sizes"):
        if key not in rec:
            return f"missing key {key!r}"
    try:
        check_utt_id(rec["utt_id"])
    except ValueError as exc:
        return str(exc)
    if not isinstance(rec["shard"], str) or not _SHARD_RE.match(rec["shard"]):
        return f"shard must be a file name like {SHARD_FMT.format(0)}, got {rec['shard']!r}"
    n, offsets, sizes = rec["n"], rec["offsets"], rec["sizes"]
    ints = (isinstance(n, int) and n >= 0 and isinstance(offsets, list) and isinstance(sizes, list)
            and len(offsets) == len(sizes) == n
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in offsets + sizes))
    if not ints:
        return "n, offsets and sizes must be n >= 0 and two lists of n integers >= 0"
    return None


def _read_index(root: Path) -> dict[str, dict]:
    path = root / INDEX_NAME
    out: dict[str, dict] = {}
    if not path.is_file():
        return out
    for ln, rec in iter_jsonl(path):
        problem = _check_index_record(rec)
        if problem:
            raise ValueError(f"{path}:{ln}: {problem}")
        if rec["utt_id"] in out:
            raise ValueError(f"{path}:{ln}: duplicate utt_id {rec['utt_id']!r}")
        out[rec["utt_id"]] = rec
    return out



class FaceShardWriter:
    """Write face crops into tar shards of at most ``utts_per_shard`` utterances.

    Grouping: without ``plan`` utterances go into shards in the order they are added (shard k holds
    the k-th group); with ``plan`` (every utt_id of the run, in a fixed order) utterance ``plan[i]``
    goes to shard ``i // utts_per_shard`` and a shard is written once all its planned utterances
    were added, so parallel workers finishing in any order still give identical shards. Add planned
    utterances that yielded no face with an empty crop list. ``close()`` writes what is left.
    """

    def __init__(
        self,
        root: str | Path,
        utts_per_shard: int = 100,
        jpeg_quality: int = 95,
        plan: Sequence[str] | None = None,
    ) -> None:
        if utts_per_shard < 1:
            raise ValueError("utts_per_shard must be >= 1")
        if not 1 <= jpeg_quality <= 100:
            raise ValueError("jpeg_quality must be in [1, 100]")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.utts_per_shard = int(utts_per_shard)
        self.jpeg_quality = int(jpeg_quality)
        for tmp in self.root.glob("*.tmp"):  # leftovers of a killed run
            logger.info("removing leftover %s", tmp)
            tmp.unlink()
        self._index = _read_index(self.root)
        done_ids = [int(_SHARD_RE.match(r["shard"]).group(1)) for r in self._index.values()]
        self._next_id = max(done_ids) + 1 if done_ids else 0
        self._plan: dict[str, int] | None = None
        if plan is not None:
            self._plan = {}
            for i, u in enumerate(plan):
                if check_utt_id(u) in self._plan:
                    raise ValueError(f"duplicate utt_id {u!r} in plan")
                self._plan[u] = i // self.utts_per_shard
            self._planned: dict[int, set[str]] = {}
            for u, k in self._plan.items():
                self._planned.setdefault(k, set()).add(u)
        self._pending: dict[int, dict[str, tuple[list[bytes], int, int]]] = {}
        self._closed = False
        if self._index:
            logger.info("%s: resuming, %d utterances already stored", self.root, len(self._index))

    # -- queries -------------------------------------------------------------------------------
    def __contains__(self, utt_id: object) -> bool:
        """True when ``utt_id`` is in a finished shard (its work can be skipped)."""
        return utt_id in self._index

    def __len__(self) -> int:
        return len(self._index)

    def redo(self, utt_ids: Iterable[str]) -> set[str]:
        """Mark the finished shards holding any of ``utt_ids`` as unfinished (their index entries are
        dropped; the tar files are rewritten under the same names once their utterances are added
        again). Returns every utterance to add again: ``utt_ids`` and their shard-mates. Used to
        retry clips whose processing failed (manifest status ``error``)."""
        if self._plan is None:
            raise RuntimeError(
                "FaceShardWriter.redo needs a writer with a plan (shards are rewritten under their names)"
            )
        shards = {self._index[u]["shard"] for u in utt_ids if u in self._index}
        if not shards:
            return set()
        again = {u for u, r in self._index.items() if r["shard"] in shards}
        for u in again:
            del self._index[u]
        self._write_index()
        logger.info("%s: %d utterances to redo (shards %s)", self.root, len(again), ", ".join(sorted(shards)))
        return again

    @property
    def shard_names(self) -> list[str]:
        return sorted({r["shard"] for r in self._index.values()})

    # -- writing -------------------------------------------------------------------------------
    def add(self, utt_id: str, crops: np.ndarray | Sequence[np.ndarray]) -> dict:
        """Queue the crops ((N, H, W, 3) uint8 RGB, N may be 0) of one utterance.

        Returns the utterance's record ``{"utt_id", "shard", "n", "height", "width", "members"}``;
        an utterance that is already in a finished shard is not written again (its stored record is
        returned).
        """
        if self._closed:
            raise RuntimeError("writer is closed")
        check_utt_id(utt_id)
        if utt_id in self._index:
            logger.debug("%s already stored in %s: skipped", utt_id, self._index[utt_id]["shard"])
            return self._public(self._index[utt_id])
        if self._plan is not None:
            if utt_id not in self._plan:
                raise ValueError(f"utt_id {utt_id!r} is not in the writer's plan")
            shard_id = self._plan[utt_id]
        else:
            shard_id = self._next_id
        group = self._pending.setdefault(shard_id, {})
        if utt_id in group:
            raise ValueError(f"utt_id {utt_id!r} added twice")
        arrs = [np.asarray(c) for c in crops]
        if isinstance(crops, np.ndarray) and crops.ndim == 4:
            height, width = int(crops.shape[1]), int(crops.shape[2])
        else:
            height, width = (int(arrs[0].shape[0]), int(arrs[0].shape[1])) if arrs else (0, 0)
        for a in arrs:
            if a.shape != (height, width, 3) or a.dtype != np.uint8:
                raise ValueError(
                    f"{utt_id}: crops must all be ({height}, {width}, 3) uint8, got {a.dtype} {a.shape}"
                )
        jpegs = [encode_jpeg(a, self.jpeg_quality) for a in arrs]
        group[utt_id] = (jpegs, height, width)
        record = {
            "utt_id": utt_id,
            "shard": SHARD_FMT.format(shard_id),
            "n": len(jpegs),
            "height": height,
            "width": width,
            "members": [f"{utt_id}/{k:04d}.jpg" for k in range(len(jpegs))],
        }
        if self._plan is not None:
            if len(group) == len(self._planned[shard_id]):  # shards are all-or-nothing
                self._flush(shard_id)
        elif len(group) >= self.utts_per_shard:
            self._flush(shard_id)
            self._next_id = shard_id + 1
        return record

    def _flush(self, shard_id: int) -> None:
        group = self._pending.pop(shard_id, {})
        if not group:
            return
        name = SHARD_FMT.format(shard_id)
        path = self.root / name
        tmp = path.with_name(name + ".tmp")
        try:
            with open(tmp, "wb") as fh:
                with tarfile.open(fileobj=fh, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                    for utt_id in sorted(group):
                        for k, data in enumerate(group[utt_id][0]):
                            info = tarfile.TarInfo(f"{utt_id}/{k:04d}.jpg")
                            info.size = len(data)
                            info.mtime = 0
                            info.mode = 0o644
                            info.uid = info.gid = 0
                            info.uname = info.gname = ""
                            info.type = tarfile.REGTYPE
                            tar.addfile(info, io.BytesIO(data))
                fh.flush()
                os.fsync(fh.fileno())
            # locate each member's bytes (read back the headers we just wrote)
            where: dict[str, tuple[int, int]] = {}
            with tarfile.open(tmp, mode="r:") as tar:
                for m in tar.getmembers():
                    where[m.name] = (m.offset_data, m.size)
            os.replace(tmp, path)
        except BaseException as exc:  # a full disk, a kill signal turned exception...: no half shard left
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.errno in DISK_FULL:
                size = sum(len(d) + 512 for jpegs, _, _ in group.values() for d in jpegs)
                raise disk_full_error(path, exc, size) from exc
            raise
        for utt_id in sorted(group):
            jpegs, height, width = group[utt_id]
            spans = [where[f"{utt_id}/{k:04d}.jpg"] for k in range(len(jpegs))]
            self._index[utt_id] = {
                "utt_id": utt_id,
                "shard": name,
                "n": len(jpegs),
                "height": height,
                "width": width,
                "offsets": [s[0] for s in spans],
                "sizes": [s[1] for s in spans],
            }
        self._write_index()
        logger.info("wrote %s (%d utterances)", path, len(group))

    def _write_index(self) -> None:
        recs = sorted(self._index.values(), key=lambda r: (r["shard"], r["utt_id"]))
        lines = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in recs)
        atomic_write_bytes(self.root / INDEX_NAME, lines.encode("utf-8"))

    @staticmethod
    def _public(rec: dict) -> dict:
        return {
            "utt_id": rec["utt_id"],
            "shard": rec["shard"],
            "n": rec["n"],
            "height": rec["height"],
            "width": rec["width"],
            "members": [f"{rec['utt_id']}/{k:04d}.jpg" for k in range(rec["n"])],
        }

    def close(self) -> None:
        """Write the shards still pending (a partial last group, unfinished planned shards)."""
        if self._closed:
            return
        for shard_id in sorted(self._pending):
            self._flush(shard_id)
        if not (self.root / INDEX_NAME).exists():
            self._write_index()  # an empty run still leaves a (empty) index
        self._closed = True

    def __enter__(self) -> FaceShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        # on an exception pending shards are dropped: a rerun redoes them


class FaceShardReader:
    """Random access to the face crops of a shard folder (used by stage 2)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not (self.root / INDEX_NAME).is_file():
            raise FileNotFoundError(f"no {INDEX_NAME} in {self.root} (not a face-shard folder?)")
        self._index = _read_index(self.root)
        self._ids = sorted(self._index)

    def utt_ids(self) -> list[str]:
        return list(self._ids)

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in self._index

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def record(self, utt_id: str) -> dict:
        """The index entry of ``utt_id`` (KeyError when absent)."""
        if utt_id not in self._index:
            raise KeyError(f"{utt_id!r} not in {self.root / INDEX_NAME}")
        return self._index[utt_id]

    def num_frames(self, utt_id: str) -> int:
        return int(self.record(utt_id)["n"])

    def read_bytes(self, utt_id: str, indices: Sequence[int] | None = None) -> list[bytes]:
        """Raw JPEG bytes of the frames ``indices`` (default all) of ``utt_id``."""
        rec = self.record(utt_id)
        idx = range(rec["n"]) if indices is None else [int(i) for i in indices]
        out = []
        if not idx:
            return out
        with open(self.root / rec["shard"], "rb") as fh:
            for i in idx:
                if not 0 <= i < rec["n"]:
                    raise IndexError(f"{utt_id}: frame {i} out of range 0..{rec['n'] - 1}")
                fh.seek(rec["offsets"][i])
                data = fh.read(rec["sizes"][i])
                if len(data) != rec["sizes"][i]:
                    raise OSError(f"{rec['shard']} is truncated ({utt_id} frame {i})")
                out.append(data)
        return out

    def read(self, utt_id: str, indices: Sequence[int] | None = None) -> np.ndarray:
        """Decoded crops of ``utt_id`` -> (N, H, W, 3) uint8 RGB (N = 0 for a face-less utterance)."""
        rec = self.record(utt_id)
        frames = [decode_jpeg(b) for b in self.read_bytes(utt_id, indices)]
        if not frames:
            return np.zeros((0, rec["height"], rec["width"], 3), np.uint8)
        return np.stack(frames)
