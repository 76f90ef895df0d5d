"""Data checks and the workload: ``data.meld_root``, the three CSVs (read by the stage's own strict
reader) and the clip folders: clips present / missing per split against the CSV rows (one
directory listing each), ``--sample`` clips per split opened and probed (resolution, frame rate).
What they find is the :class:`Workload` the run-time estimate is computed from (MELD's official
sizes when the CSVs cannot be read, the ``demo`` section before the demo corpus exists)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .base import FAIL, OK, WARN, Checkup, quiet_logs

#: MELD's official sizes (train, dev, test): utterances, dialogues; mean utterance length 3.13 s
#: (CSV EndTime - StartTime, clipped to 0.2-30 s); clips 1280x720 at 23.976 fps
MELD_SIZES = {"train": (9989, 1038), "dev": (1109, 114), "test": (2610, 280)}
MELD_MEAN_S = 3.13
#: share of a clip's frames that become speaker crops (demo: 4,321 crops of 5,318 frames)
CROP_COVERAGE = 0.81


@dataclass
class Workload:
    """What the run will process: per split the clip durations (seconds) and dialogue counts."""

    source: str  # where the counts come from
    durations: dict[str, list[float]] = field(default_factory=dict)
    dialogues: dict[str, int] = field(default_factory=dict)
    width: int = 1280
    height: int = 720
    fps: float = 23.976

    def utterances(self, split: str | None = None) -> int:
        return sum(len(v) for k, v in self.durations.items() if split in (None, k))

    def seconds(self, split: str | None = None) -> float:
        return float(sum(sum(v) for k, v in self.durations.items() if split in (None, k)))

    def crops(self, max_frames: int, split: str | None = None) -> float:
        return float(sum(min(max_frames, d * self.fps) * CROP_COVERAGE
                         for k, v in self.durations.items() if split in (None, k) for d in v))


def check_data(doc: Checkup) -> Workload | None:
    """The data checks; the workload they find (None without a ``data`` section)."""
    data, demo = doc.cfg.get("data"), doc.cfg.get("demo")
    if data is None:
        return None
    root = doc.path(data.meld_root)
    if not root.is_dir():
        stage = doc.pipeline.produced_by(str(data.meld_root))
        if stage and demo is not None:
            doc.add(OK, "data.meld_root", f"{doc.show(data.meld_root)} does not exist yet: the {stage} stage "
                    "generates it at the start of `dvc repro`")
            return _demo_workload(demo)
        doc.add(FAIL, "data.meld_root", f"{doc.show(data.meld_root)} does not exist",
                "point data.meld_root at your MELD.Raw folder (docs/real-meld.md)")
        return _meld_workload()
    from stage1_face_extraction.meld import MeldFormatError, read_split_csv

    work = Workload(source=f"the CSVs under {root}")
    sizes: list[tuple[int, int, float]] = []
    for split, spec in data.splits.items():
        csv_path = doc.path(data.csv_root) / spec.csv
        try:
            with quiet_logs():
                rows = read_split_csv(csv_path, split)
        except (OSError, MeldFormatError) as exc:
            fix = ("set data.csv_dir to the folder of the CSVs" if isinstance(exc, FileNotFoundError)
                   else "use the official MELD CSV (UTF-8)")
            doc.add(FAIL, f"data {split} csv", str(exc), fix)
            continue
        work.durations[split] = [min(max(r["end_s"] - r["start_s"], 0.2), 30.0) for r in rows]
        work.dialogues[split] = len({r["dialogue_id"] for r in rows})
        clips = root / spec.clips
        expected = [f"{r['utt_id']}{data.clip_ext}" for r in rows]
        if not clips.is_dir():
            doc.add(
                FAIL,
                f"data {split} clips",
                f"{clips} does not exist ({len(rows)} clips expected by {spec.csv})",
                f"unpack MELD.Raw's {spec.clips}/ there, or set data.splits.{split}.clips",
            )
            continue
        present = set(os.listdir(clips))
        have = [e for e in expected if e in present]
        missing = [e for e in expected if e not in present]
        msg = f"{len(have)} of {len(rows)} clips present in {clips}"
        if not have:
            doc.add(FAIL, f"data {split} clips", msg + f" (first expected: {expected[0]})",
                    f"put the {split} clips there (names dia{{D}}_utt{{U}}{data.clip_ext}) or fix data.clip_ext")
            continue
        if missing:
            doc.add(WARN, f"data {split} clips", f"{msg}; missing: {', '.join(missing[:3])}"
                    + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""),
                    "missing clips get status 'missing' (MELD itself lacks dev dia110_utt7); "
                    "re-extract the archive if many are missing")
        else:
            doc.add(OK, f"data {split} clips", msg)
        sizes += _probe(doc, split, clips, have)
    if sizes:
        w, h, fps = max(sizes, key=lambda s: s[0] * s[1])
        work.width, work.height, work.fps = w, h, fps
    return work if work.durations else _meld_workload()


def _meld_workload() -> Workload:
    work = Workload(source="MELD's official sizes (the CSVs could not be read)")
    for split, (n, dialogues) in MELD_SIZES.items():
        work.durations[split] = [MELD_MEAN_S] * n
        work.dialogues[split] = dialogues
    return work


def _probe(doc: Checkup, split: str, folder: Path, names: list[str]) -> list[tuple[int, int, float]]:
    if doc.sample <= 0:
        return []
    from stage1_face_extraction.video import probe

    picks = sorted({round(i) for i in _spread(len(names), doc.sample)})
    out, bad = [], []
    for i in picks:
        try:
            info = probe(folder / names[i])
            out.append((info.width, info.height, info.fps))
        except Exception as exc:  # noqa: BLE001 - any decode problem is reported, none is fatal
            bad.append(f"{names[i]} ({type(exc).__name__}: {str(exc)[:120]})")
    desc = ", ".join(sorted({f"{w}x{h} @ {f:.2f} fps" for w, h, f in out}))
    if bad:
        doc.add(WARN, f"data {split} probe", f"{len(bad)} of {len(picks)} sampled clips do not decode: "
                + "; ".join(bad[:2]), "such clips get status decode_error; check the archive if many fail")
    else:
        doc.add(OK, f"data {split} probe", f"{len(picks)} sampled clips decode: {desc}")
    return out


def _demo_workload(demo) -> Workload:
    from fractions import Fraction

    mean_utts = (demo.utterances_min + demo.utterances_max) / 2
    mean_s = (demo.duration_min_s + demo.duration_max_s) / 2
    work = Workload(source="the demo section (the corpus is not generated yet)", width=demo.width,
                    height=demo.height, fps=float(Fraction(demo.fps)))
    for split, n in demo.dialogues_per_split.items():
        work.durations[split] = [mean_s] * round(n * mean_utts)
        work.dialogues[split] = int(n)
    return work


def _spread(n: int, k: int) -> list[float]:
    """``k`` indices spread over ``range(n)`` (first, last and evenly between)."""
    if n <= 0:
        return []
    if k >= n:
        return list(range(n))
    return [i * (n - 1) / max(k - 1, 1) for i in range(k)]
