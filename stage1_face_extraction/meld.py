"""MELD ingest: the official ``{split}_sent_emo.csv`` files -> one validated utterance table.

The official CSVs are UTF-8 with CRLF line ends and quoted fields (commas, quotes and curly
apostrophes inside utterances); times are ``h:mm:ss,mmm`` or ``hh:mm:ss,mmm``. This module reads
them strictly: a missing column, an unknown emotion, a non-integer id or a bad time is a
:class:`MeldFormatError` that names the file and the line. A UTF-8 byte-order mark is accepted,
and UTF-8 text that was mis-decoded as cp1252 somewhere upstream ("mojibake": ``â€™`` for ``’``)
is repaired with a warning. A missing clip is not an error: it is recorded in ``clip_exists``.

Table columns (one row per utterance, in CSV order, splits concatenated train, dev, test):

    split         str   train | dev | test
    sr_no         int   the CSV's "Sr No." (-1 when the column is absent)
    dialogue_id   int   Dialogue_ID
    utterance_id  int   Utterance_ID
    utt_id        str   dia{D}_utt{U} (unique within a split, as in FacialMMT's file names)
    speaker       str
    text          str
    emotion       str   one of EMOTIONS
    label         int   index in EMOTIONS (FacialMMT's order)
    sentiment     str   positive | negative | neutral
    season        int
    episode       int
    start_s       float StartTime in seconds
    end_s         float EndTime in seconds
    clip          str   clip path relative to the MELD root, e.g. train_splits/dia0_utt0.mp4
    clip_exists   bool
"""

from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from stage1_face_extraction.common.labels import EMOTIONS, LABEL_OF

log = logging.getLogger(__name__)

SENTIMENTS: tuple[str, ...] = ("positive", "negative", "neutral")
SPLITS: tuple[str, ...] = ("train", "dev", "test")

REQUIRED_COLUMNS: tuple[str, ...] = (
    "Utterance",
    "Speaker",
    "Emotion",
    "Sentiment",
    "Dialogue_ID",
    "Utterance_ID",
    "Season",
    "Episode",
    "StartTime",
    "EndTime",
)

#: The official header, in order (what the demo generator writes).
MELD_COLUMNS: tuple[str, ...] = ("Sr No.", *REQUIRED_COLUMNS)

TABLE_COLUMNS: tuple[str, ...] = (
    "split",
    "sr_no",
    "dialogue_id",
    "utterance_id",
    "utt_id",
    "speaker",
    "text",
    "emotion",
    "label",
    "sentiment",
    "season",
    "episode",
    "start_s",
    "end_s",
    "clip",
    "clip_exists",
)

_TIME_RE = re.compile(r"^(\d{1,2}):([0-5]\d):([0-5]\d)[,.](\d{1,3})$")
_INT_RE = re.compile(r"^\d{1,9}$")
# Byte sequences that appear when UTF-8 text is decoded as cp1252 / latin-1.
_MOJIBAKE_RE = re.compile(
    "[\u00c2\u00c3\u00e2][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]"
)


class MeldFormatError(ValueError):
    """A MELD CSV does not follow the official format; the message names file and line."""


@dataclass
class SplitSpec:
    """Where one split lives under the MELD root."""

    csv: str  # file name of the annotation CSV inside ``csv_dir``
    clips: str  # folder of the split's clips under ``meld_root``


def _default_splits() -> dict[str, SplitSpec]:
    return {
        "train": SplitSpec("train_sent_emo.csv", "train_splits"),
        "dev": SplitSpec("dev_sent_emo.csv", "dev_splits_complete"),
        "test": SplitSpec("test_sent_emo.csv", "output_repeated_splits_test"),
    }


@dataclass
class DataConfig:
    """``data`` section of params.yaml."""

    meld_root: str = "data/demo/MELD.Raw"  # folder holding the split folders (real MELD.Raw or the demo)
    csv_dir: str | None = None  # folder of the CSVs; None = meld_root
    splits: dict[str, SplitSpec] = field(default_factory=_default_splits)
    clip_ext: str = ".mp4"

    def __post_init__(self) -> None:
        parsed: dict[str, SplitSpec] = {}
        for name, spec in (self.splits or {}).items():
            if name not in SPLITS:
                raise MeldFormatError(f"data.splits: unknown split '{name}' (valid: {', '.join(SPLITS)})")
            if isinstance(spec, dict):
                unknown = set(spec) - {"csv", "clips"}
                if unknown:
                    raise MeldFormatError(f"data.splits.{name}: unknown key(s) {sorted(unknown)} (valid: clips, csv)")
                spec = SplitSpec(**{**_default_splits()[name].__dict__, **spec})
            parsed[name] = spec
        self.splits = parsed

    @property
    def csv_root(self) -> Path:
        return Path(self.csv_dir if self.csv_dir else self.meld_root)


def parse_time(value: str) -> float:
    """``h:mm:ss,mmm`` or ``hh:mm:ss,mmm`` -> seconds. Raises ValueError on anything else."""
    m = _TIME_RE.match(value.strip())
    if not m:
        raise ValueError(f"bad time {value!r} (expected hh:mm:ss,mmm)")
    h, mi, s, ms = m.groups()
    return int(h) * 3600 + int(mi) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000.0


def fix_mojibake(text: str) -> str:
    """Undo UTF-8-decoded-as-cp1252 damage (``He\u00e2\u20ac\u2122s`` -> ``He’s``); else return unchanged."""
    if not _MOJIBAKE_RE.search(text):
        return text
    for codec in ("cp1252", "latin-1"):
        try:
            fixed = text.encode(codec).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        if fixed != text:
            return fixed
    return text


def clip_name(dialogue_id: int, utterance_id: int) -> str:
    """FacialMMT / MELD utterance name ``dia{D}_utt{U}``."""
    return f"dia{int(dialogue_id)}_utt{int(utterance_id)}"


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise MeldFormatError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "MELD CSVs are UTF-8: re-save the file as UTF-8"
        ) from None


def read_split_csv(path: str | Path, split: str) -> list[dict]:
    """Read and validate one official MELD CSV; returns one dict per utterance (table columns
    except ``clip`` / ``clip_exists``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MELD annotation CSV not found: {path}")
    text = _decode(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise MeldFormatError(
            f"{path}:1: missing column(s) {', '.join(missing)}; header is {', '.join(header) or '(empty)'}"
        )
    rows: list[dict] = []
    seen: dict[tuple[int, int], int] = {}
    n_fixed = 0
    for rec in reader:
        line = reader.line_num
        if None in rec:  # more fields than the header
            raise MeldFormatError(f"{path}:{line}: {len(header) + len(rec[None])} fields, header has {len(header)}")
        if any(rec.get(c) is None for c in REQUIRED_COLUMNS):
            raise MeldFormatError(f"{path}:{line}: too few fields ({sum(v is not None for v in rec.values())})")
        emotion = rec["Emotion"].strip().lower()
        if emotion not in LABEL_OF:
            raise MeldFormatError(
                f"{path}:{line}: unknown emotion {rec['Emotion']!r} (valid: {', '.join(EMOTIONS)})"
            )
        sentiment = rec["Sentiment"].strip().lower()
        if sentiment not in SENTIMENTS:
            raise MeldFormatError(
                f"{path}:{line}: unknown sentiment {rec['Sentiment']!r} (valid: {', '.join(SENTIMENTS)})"
            )
        ints = {}
        for col in ("Dialogue_ID", "Utterance_ID", "Season", "Episode"):
            v = rec[col].strip()
            if not _INT_RE.match(v):
                raise MeldFormatError(f"{path}:{line}: {col} must be a non-negative integer, got {rec[col]!r}")
            ints[col] = int(v)
        try:
            start_s, end_s = parse_time(rec["StartTime"]), parse_time(rec["EndTime"])
        except ValueError as exc:
            raise MeldFormatError(f"{path}:{line}: {exc}") from None
        if end_s < start_s:
            log.warning("%s:%d: EndTime %s is before StartTime %s", path, line, rec["EndTime"], rec["StartTime"])
        key = (ints["Dialogue_ID"], ints["Utterance_ID"])
        if key in seen:
            raise MeldFormatError(
                f"{path}:{line}: duplicate utterance {clip_name(*key)} (first seen on line {seen[key]})"
            )
        seen[key] = line
        utterance = fix_mojibake(rec["Utterance"])
        speaker = fix_mojibake(rec["Speaker"]).strip()
        if utterance != rec["Utterance"] or speaker != rec["Speaker"].strip():
            n_fixed += 1
        if not utterance.strip():
            log.warning("%s:%d: empty utterance text for %s", path, line, clip_name(*key))
        sr = (rec.get("Sr No.") or "").strip()
        rows.append(
            {
                "split": split,
                "sr_no": int(sr) if _INT_RE.match(sr) else -1,
                "dialogue_id": ints["Dialogue_ID"],
                "utterance_id": ints["Utterance_ID"],
                "utt_id": clip_name(*key),
                "speaker": speaker,
                "text": utterance,
                "emotion": emotion,
                "label": LABEL_OF[emotion],
                "sentiment": sentiment,
                "season": ints["Season"],
                "episode": ints["Episode"],
                "start_s": start_s,
                "end_s": end_s,
            }
        )
    if n_fixed:
        log.warning("%s: repaired mojibake (UTF-8 read as cp1252) in %d row(s)", path, n_fixed)
    if not rows:
        raise MeldFormatError(f"{path}: no utterances")
    return rows


def build_utterance_table(cfg: DataConfig, splits: tuple[str, ...] | None = None) -> pd.DataFrame:
    """All splits' CSVs -> one validated table (see module docstring), with clip paths and
    whether each clip exists under ``cfg.meld_root``."""
    root = Path(cfg.meld_root)
    rows: list[dict] = []
    for split in splits or tuple(cfg.splits):
        spec = cfg.splits[split]
        split_rows = read_split_csv(cfg.csv_root / spec.csv, split)
        for r in split_rows:
            rel = f"{spec.clips}/{r['utt_id']}{cfg.clip_ext}"
            r["clip"] = rel
            r["clip_exists"] = (root / rel).is_file()
        n_missing = sum(not r["clip_exists"] for r in split_rows)
        if n_missing:
            log.warning("%s: %d of %d clips missing under %s", split, n_missing, len(split_rows), root / spec.clips)
        rows.extend(split_rows)
    df = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    return df.astype(
        {
            "sr_no": "int64",
            "dialogue_id": "int64",
            "utterance_id": "int64",
            "label": "int64",
            "season": "int64",
            "episode": "int64",
            "start_s": "float64",
            "end_s": "float64",
            "clip_exists": "bool",
        }
    )


def summarize(df: pd.DataFrame) -> dict:
    """Counts per split: utterances, dialogues, emotions, missing clips (JSON-ready)."""
    out: dict = {}
    for split, g in df.groupby("split", sort=False):
        out[str(split)] = {
            "utterances": int(len(g)),
            "dialogues": int(g["dialogue_id"].nunique()),
            "dialogue_id_span": int(g["dialogue_id"].max()) + 1,  # ids 0..max (MELD train skips id 60)
            "clips_missing": int((~g["clip_exists"]).sum()),
            "emotions": {e: int((g["emotion"] == e).sum()) for e in EMOTIONS},
        }
    return out


def _plain_name(name: object) -> bool:
    from .store import check_utt_id

    try:
        check_utt_id(name)  # type: ignore[arg-type]
    except ValueError:
        return False
    return True


def check_table_names(df: pd.DataFrame, where: str | Path) -> None:
    """Raise :class:`MeldFormatError` (naming ``where`` and the row) when a name of the table that
    later becomes a path is unsafe: ``split`` (an output folder) must be a known split, ``utt_id``
    (shard members, previews, sheets) must be a plain name (``store.check_utt_id``: letters,
    digits, ``_.-``; MELD's read ``dia{D}_utt{U}``), ``clip`` must be a relative path
    inside the MELD root (no ``..``, not absolute). A table may come from elsewhere: never trusted."""
    for i, (split, utt_id, clip) in enumerate(zip(df["split"], df["utt_id"], df["clip"])):
        problem = None
        if split not in SPLITS:
            problem = f"split {split!r} is not one of {', '.join(SPLITS)}"
        elif not _plain_name(utt_id):
            problem = f"utt_id {utt_id!r} is not a plain name (letters, digits, '_', '.', '-')"
        elif (not isinstance(clip, str) or not clip or "\\" in clip or "\0" in clip
              or Path(clip).is_absolute() or ".." in Path(clip).parts):
            problem = f"clip {clip!r} is not a relative path inside the MELD root"
        if problem:
            raise MeldFormatError(f"{where}: row {i}: {problem}")


def read_utterance_table(path: str | Path) -> pd.DataFrame:
    """Read the table written by the ``prepare`` stage and check its columns and the names that
    become paths (:func:`check_table_names`)."""
    df = pd.read_parquet(path)
    missing = [c for c in TABLE_COLUMNS if c not in df.columns]
    if missing:
        raise MeldFormatError(f"{path}: not an utterance table, missing column(s) {', '.join(missing)}")
    check_table_names(df, path)
    return df
