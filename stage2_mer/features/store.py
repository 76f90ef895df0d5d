"""Feature shards: per-utterance (L, D) matrices in safetensors shards + a JSONL index.

Layout of one feature folder (e.g. ``data/features/visual/inception_resnet_v1/``; see ``SCHEMA.md``)::

    shard-00000.safetensors   one tensor "features": (R, D) float16|float32, utterances' rows
                              concatenated in the order they were added
    index.jsonl               {"utt_id": ..., "shard": "shard-00000.safetensors", "row": r, "length": L}
    meta.json                 {"dim": D, "dtype": "float16", "format": 1, "info": {...}}

Bytes are deterministic for the same inputs added in the same order (add utterances sorted by id).
Every file is written to ``<name>.tmp`` then renamed; ``index.jsonl`` and ``meta.json`` are written
last (by ``close()``), so a folder without them is unfinished. Never pickle.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from stage1_face_extraction.common.atomic import atomic_write_bytes
from stage1_face_extraction.store import check_utt_id

logger = logging.getLogger(__name__)

__all__ = ["FeatureWriter", "FeatureReader", "length_cap", "INDEX_NAME", "META_NAME"]

INDEX_NAME = "index.jsonl"
META_NAME = "meta.json"
SHARD_FMT = "shard-{:05d}.safetensors"
_SHARD_RE = re.compile(r"^shard-\d{5,}\.safetensors$")
TENSOR_KEY = "features"
DTYPES = ("float16", "float32")
FORMAT_VERSION = 1


class FeatureWriter:
    """Write per-utterance ``(L, D)`` features into safetensors shards of ~``rows_per_shard`` rows.

    An utterance is never split across shards (a shard is flushed once it holds at least
    ``rows_per_shard`` rows). ``L`` may be 0 (no face / no audio): it gets an index entry with
    ``length`` 0. A folder that already holds features is refused unless ``overwrite``.

        with FeatureWriter(root, dim=512, dtype="float16") as w:
            for utt in sorted(utts):
                w.add(utt, feats)  # (L, 512)
    """

    def __init__(
        self,
        root: str | Path,
        dim: int | None = None,
        dtype: str = "float16",
        rows_per_shard: int = 65536,
        overwrite: bool = False,
        info: dict | None = None,
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if int(rows_per_shard) < 1:
            raise ValueError("rows_per_shard must be >= 1")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        for tmp in self.root.glob("*.tmp"):
            tmp.unlink()
        old = [p for p in self.root.iterdir() if p.name in (INDEX_NAME, META_NAME) or p.name.startswith("shard-")]
        if old:
            if not overwrite:
                raise FileExistsError(f"{self.root} already holds features ({old[0].name}); pass overwrite=True")
            for p in old:
                p.unlink()
        self.dim = None if dim is None else int(dim)
        self.dtype = dtype
        self.rows_per_shard = int(rows_per_shard)
        self.info = dict(info or {})
        self._index: list[dict] = []
        self._seen: set[str] = set()
        self._buf: list[np.ndarray] = []
        self._buf_rows = 0
        self._shard = 0
        self._closed = False

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in self._seen

    def __len__(self) -> int:
        return len(self._index)

    def add(self, utt_id: str, feats: np.ndarray) -> dict:
        """Queue ``feats`` ((L, D), any float dtype) of ``utt_id``; returns its index record."""
        if self._closed:
            raise RuntimeError("writer is closed")
        check_utt_id(utt_id)
        if utt_id in self._seen:
            raise ValueError(f"utt_id {utt_id!r} added twice")
        feats = np.asarray(feats)
        if feats.ndim != 2:
            raise ValueError(f"{utt_id}: features must be (L, D), got shape {feats.shape}")
        if self.dim is None:
            self.dim = int(feats.shape[1])
        if feats.shape[1] != self.dim:
            raise ValueError(f"{utt_id}: feature dim {feats.shape[1]} != {self.dim}")
        if not np.all(np.isfinite(feats)):
            raise ValueError(f"{utt_id}: features hold NaN/inf")
        rec = {"utt_id": utt_id, "shard": SHARD_FMT.format(self._shard), "row": self._buf_rows,
               "length": int(feats.shape[0])}
        self._buf.append(feats.astype(self.dtype))
        self._buf_rows += feats.shape[0]
        self._index.append(rec)
        self._seen.add(utt_id)
        if self._buf_rows >= self.rows_per_shard:
            self._flush()
        return dict(rec)

    def _flush(self) -> None:
        from safetensors.numpy import save

        if not self._buf:  # every added utterance (even L = 0) sits in _buf until flushed
            return
        arr = np.concatenate(self._buf, 0)  # (R, D)
        name = SHARD_FMT.format(self._shard)
        atomic_write_bytes(self.root / name, save({TENSOR_KEY: np.ascontiguousarray(arr)}))
        logger.info("wrote %s (%d rows)", self.root / name, arr.shape[0])
        self._buf, self._buf_rows = [], 0
        self._shard += 1

    def close(self) -> None:
        """Write the last shard, then ``index.jsonl`` and ``meta.json`` (the completion markers)."""
        if self._closed:
            return
        self._flush()
        lines = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in self._index)
        atomic_write_bytes(self.root / INDEX_NAME, lines.encode("utf-8"))
        meta = {"format": FORMAT_VERSION, "dim": self.dim, "dtype": self.dtype, "num_utterances": len(self._index),
                "num_rows": sum(r["length"] for r in self._index), "info": self.info}
        atomic_write_bytes(self.root / META_NAME, (json.dumps(meta, sort_keys=True, indent=1) + "\n").encode())
        self._closed = True

    def __enter__(self) -> FeatureWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


def _index_record(line: str, where: str) -> dict:
    """One ``index.jsonl`` line, checked: feature folders travel between people, and the names in
    them become paths (``shard``), so nothing in them is trusted. Errors name ``where`` (file:line)."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: bad JSON ({exc})") from None
    if not isinstance(rec, dict) or not {"utt_id", "shard", "row", "length"} <= set(rec):
        raise ValueError(f"{where}: an index record needs utt_id, shard, row and length, got {line.strip()[:200]!r}")
    try:
        check_utt_id(rec["utt_id"])
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if not isinstance(rec["shard"], str) or not _SHARD_RE.match(rec["shard"]):
        raise ValueError(f"{where}: shard must be a file name like {SHARD_FMT.format(0)}, got {rec['shard']!r}")
    for key in ("row", "length"):
        if not isinstance(rec[key], int) or isinstance(rec[key], bool) or rec[key] < 0:
            raise ValueError(f"{where}: {key} must be an integer >= 0, got {rec[key]!r}")
    return rec


class FeatureReader:
    """Random access to a feature folder (used by the trainer)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        for name in (INDEX_NAME, META_NAME):
            if not (self.root / name).is_file():
                raise FileNotFoundError(f"no {name} in {self.root} (not a finished feature folder?)")
        self.meta = json.loads((self.root / META_NAME).read_text(encoding="utf-8"))
        if self.meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{self.root}: unsupported feature format {self.meta.get('format')!r}")
        self._index: dict[str, dict] = {}
        path = self.root / INDEX_NAME
        with path.open("r", encoding="utf-8") as fh:
            for ln, line in enumerate(fh, 1):
                if line.strip():
                    rec = _index_record(line, f"{path}:{ln}")
                    if rec["utt_id"] in self._index:
                        raise ValueError(f"{path}:{ln}: duplicate utt_id {rec['utt_id']!r}")
                    self._index[rec["utt_id"]] = rec
        self._shards: dict[str, np.ndarray] = {}

    @property
    def dim(self) -> int:
        return int(self.meta["dim"] or 0)

    @property
    def dtype(self) -> str:
        return str(self.meta["dtype"])

    def utt_ids(self) -> list[str]:
        return sorted(self._index)

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in self._index

    def __len__(self) -> int:
        return len(self._index)

    def length(self, utt_id: str) -> int:
        return int(self._rec(utt_id)["length"])

    def lengths(self, utt_ids: Iterable[str] | None = None) -> list[int]:
        return [self.length(u) for u in (self.utt_ids() if utt_ids is None else utt_ids)]

    def _rec(self, utt_id: str) -> dict:
        try:
            return self._index[utt_id]
        except KeyError:
            raise KeyError(f"{utt_id!r} not in {self.root / INDEX_NAME}") from None

    def _shard(self, name: str) -> np.ndarray:
        if name not in self._shards:
            from safetensors.numpy import load_file

            self._shards[name] = load_file(str(self.root / name))[TENSOR_KEY]  # (R, D)
        return self._shards[name]

    def read(self, utt_id: str, dtype: str | None = "float32") -> np.ndarray:
        """``(L, D)`` features of ``utt_id`` (float32 by default; ``dtype=None`` keeps the stored one)."""
        rec = self._rec(utt_id)
        if rec["length"] == 0:
            out = np.zeros((0, self.dim), self.dtype)
        else:
            shard = self._shard(rec["shard"])
            out = shard[rec["row"] : rec["row"] + rec["length"]]
            if out.shape[0] != rec["length"]:
                raise ValueError(f"{self.root / rec['shard']}: {utt_id} needs rows {rec['row']}.."
                                 f"{rec['row'] + rec['length'] - 1}, the shard has {shard.shape[0]}")
        return out.astype(dtype) if dtype is not None else out.copy()

    def padded(self, utt_ids: Sequence[str], max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Batch ``(B, max_len, D) float32`` zero-padded + mask ``(B, max_len) float32`` (1 valid, 0 pad).

        Longer utterances keep their FIRST ``max_len`` rows (as FacialMMT truncated); ``max_len``
        None = the longest of the batch.
        """
        lens = [self.length(u) for u in utt_ids]
        if max_len is None:
            max_len = max(lens, default=0)
        max_len = int(max_len)
        if max_len < 0:
            raise ValueError("max_len must be >= 0")
        x = np.zeros((len(utt_ids), max_len, self.dim), np.float32)
        mask = np.zeros((len(utt_ids), max_len), np.float32)
        for b, u in enumerate(utt_ids):
            n = min(lens[b], max_len)
            if n:
                x[b, :n] = self.read(u)[:n]
                mask[b, :n] = 1.0
        return x, mask


def length_cap(lengths: Sequence[int], rule: int | str = "mean+3std") -> int:
    """Padding width for a split: an int as is, or ``"mean+3std"`` (FacialMMT's rule).

    ``mean+3std`` = ``ceil(mean + 3 * std)`` (population std) of ``lengths`` (use the train split),
    at most ``max(lengths)`` and at least 1.
    """
    if isinstance(rule, bool):
        raise ValueError(f"bad length cap rule {rule!r}")
    if isinstance(rule, int):
        if rule < 1:
            raise ValueError(f"max_len must be >= 1, got {rule}")
        return rule
    if rule.replace(" ", "") != "mean+3std":
        raise ValueError(f"length cap rule must be an int or 'mean+3std', got {rule!r}")
    arr = np.asarray(list(lengths), np.float64)
    if arr.size == 0:
        raise ValueError("mean+3std needs at least one length")
    cap = math.ceil(float(arr.mean() + 3.0 * arr.std()) - 1e-9)
    return int(max(1, min(cap, int(arr.max()))))
