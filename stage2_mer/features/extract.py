"""Run an extractor over a corpus: stage-1 face shards -> visual features, clips -> audio features.

Both loops read their inputs in ``torch.utils.data.DataLoader`` workers (JPEG decoding of the face
shards, PyAV decoding + resampling of the clips) while the main process runs the extractor, and
write one :class:`~stage2_mer.features.store.FeatureWriter` folder per split, utterances in utt_id
order (deterministic bytes).

* visual: the crops of consecutive utterances are pooled into batches of ``batch_size`` faces
  (one forward serves several short utterances), then cut back per utterance: one row per crop.
* audio: utterances are read in blocks of ``sort_window``, sorted by length inside the block and
  grouped into batches of at most ``batch_seconds`` of padded audio
  (:meth:`~stage2_mer.features.registry.AudioExtractor.extract_batch`), so little padding is
  encoded; each utterance keeps its own frames.

Progress goes to ``progress(n_done_utterances, info)`` callbacks (the stage draws tqdm bars).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stage1_face_extraction.common.config import ConfigError

from .registry import AudioExtractor, FeatureExtractor, VisualExtractor, create_extractor
from .store import FeatureWriter

log = logging.getLogger(__name__)

__all__ = ["FeatureStageConfig", "extract_visual_split", "extract_audio_split", "split_summary"]

Progress = Callable[[int, dict[str, Any]], None]


@dataclass
class FeatureStageConfig:
    """``features.visual`` / ``features.audio`` section of params.yaml.

    ``name`` picks the extractor (``stage2_mer.features.list_extractors()``); ``extractors`` holds
    each extractor's own keys under its name (``{wav2vec2: {model: ...}, fbank: {...}}``) so that
    ``-S features.audio.name=fbank`` needs nothing else; the registry checks the chosen one's keys
    (an unknown key fails with the valid ones). ``dtype`` of the
    stored features (all rows are kept: the trainer applies the length cap, ``train.max_*_len``);
    ``workers``: DataLoader
    processes decoding the inputs; ``batch_size`` (visual): faces per forward, pooled across
    utterances; ``batch_seconds`` (audio): padded seconds per forward (0 = one utterance at a
    time; ``auto`` = 30 on CUDA, 0 on the CPU, where padding costs more than batching saves:
    measured by benchmarks/features_speed.py); ``sort_window`` (audio): utterances sorted by
    length together.
    """

    name: str
    extractors: dict[str, dict[str, Any]] = field(default_factory=dict)
    dtype: str = "float16"
    workers: int = 1
    batch_size: int = 64
    batch_seconds: float | str = "auto"
    sort_window: int = 64
    rows_per_shard: int = 65536

    def __post_init__(self) -> None:
        if self.dtype not in ("float16", "float32"):
            raise ConfigError(f"features dtype must be float16 or float32, got {self.dtype!r}")
        if self.batch_seconds != "auto" and (isinstance(self.batch_seconds, str) or self.batch_seconds < 0):
            raise ConfigError(f"features batch_seconds must be 'auto' or >= 0, got {self.batch_seconds!r}")
        if self.workers < 0 or self.batch_size < 1 or self.sort_window < 1:
            raise ConfigError("features: workers >= 0, batch_size >= 1, sort_window >= 1")
        if not all(isinstance(v, dict) or v is None for v in self.extractors.values()):
            raise ConfigError("features.<modality>.extractors must map extractor names to their keys")

    @property
    def options(self) -> dict[str, Any]:
        """The chosen extractor's keys."""
        return dict(self.extractors.get(self.name) or {})

    def create(self) -> FeatureExtractor:
        return create_extractor(self.name, **self.options)


def _first(batch):  # DataLoader collate for batch_size=None items: keep numpy as is
    return batch


class _FaceCrops:
    """Map-style dataset: utterance i -> (utt_id, crops (N, H, W, 3) uint8). Opens the shard
    reader lazily, once per DataLoader worker."""

    def __init__(self, folder: Path, utt_ids: Sequence[str]) -> None:
        self.folder, self.utt_ids, self._reader = Path(folder), list(utt_ids), None

    def __len__(self) -> int:
        return len(self.utt_ids)

    def __getitem__(self, i: int):
        if self._reader is None:
            from stage1_face_extraction.store import FaceShardReader

            self._reader = FaceShardReader(self.folder)
        return self.utt_ids[i], self._reader.read(self.utt_ids[i])


class _ClipAudio:
    """Map-style dataset: utterance i -> (utt_id, wave (n,) float32 at ``sr``; empty when the clip
    is missing, has no audio or cannot be decoded: a length-0 feature, logged)."""

    def __init__(self, items: Sequence[tuple[str, Path]], sr: int) -> None:
        self.items, self.sr = list(items), int(sr)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from stage1_face_extraction.video import DecodeError, NoAudioError, read_audio

        utt_id, path = self.items[i]
        try:
            return utt_id, read_audio(path, self.sr)
        except (NoAudioError, DecodeError, FileNotFoundError) as exc:
            log.warning("%s: no audio features (%s)", path, exc)
            return utt_id, np.zeros(0, np.float32)


def _loader(dataset, workers: int) -> Iterator:
    from torch.utils.data import DataLoader

    return iter(DataLoader(dataset, batch_size=None, shuffle=False, num_workers=int(workers), collate_fn=_first,
                           prefetch_factor=4 if workers > 0 else None))


def extract_visual_split(
    ext: VisualExtractor, faces_dir: Path, out_dir: Path, cfg: FeatureStageConfig, progress: Progress | None = None,
    info: dict | None = None,
) -> list[int]:
    """Features of every utterance of one stage-1 split folder (``faces_dir``: shards + index) into
    ``out_dir``; returns the lengths (rows per utterance) in utt_id order."""
    from stage1_face_extraction.store import FaceShardReader

    utt_ids = sorted(FaceShardReader(faces_dir).utt_ids())
    lengths: list[int] = []
    pending: list[tuple[str, np.ndarray]] = []
    with FeatureWriter(out_dir, dim=ext.dim, dtype=cfg.dtype, rows_per_shard=cfg.rows_per_shard, overwrite=True,
                       info=info) as writer:

        def flush() -> None:
            if not pending:
                return
            faces = np.concatenate([c for _, c in pending if len(c)], 0) if any(len(c) for _, c in pending) else None
            feats = ext.extract(faces) if faces is not None else np.zeros((0, ext.dim), np.float32)  # (sum N, D)
            k = 0
            for utt, crops in pending:
                writer.add(utt, feats[k : k + len(crops)])
                lengths.append(len(crops))
                k += len(crops)
            if progress:
                progress(len(pending), {"faces": k})
            pending.clear()

        n_faces = 0
        for utt, crops in _loader(_FaceCrops(faces_dir, utt_ids), cfg.workers):
            pending.append((utt, crops))
            n_faces += len(crops)
            if n_faces >= cfg.batch_size:
                flush()
                n_faces = 0
        flush()
    return lengths


def extract_audio_split(
    ext: AudioExtractor, items: Sequence[tuple[str, Path]], out_dir: Path, cfg: FeatureStageConfig,
    progress: Progress | None = None, info: dict | None = None,
) -> list[int]:
    """Features of ``items`` (``(utt_id, clip path)``, any order) into ``out_dir``; returns the lengths
    (encoder frames per utterance) in utt_id order."""
    items = sorted(items)
    sr = ext.contract.sample_rate
    seconds_per_batch = cfg.batch_seconds
    if seconds_per_batch == "auto":
        seconds_per_batch = 30.0 if str(getattr(ext, "device", "cpu")).startswith("cuda") else 0.0
    lengths: list[int] = []
    block: list[tuple[str, np.ndarray]] = []
    with FeatureWriter(out_dir, dim=ext.dim, dtype=cfg.dtype, rows_per_shard=cfg.rows_per_shard, overwrite=True,
                       info=info) as writer:

        def flush() -> None:
            if not block:
                return
            order = sorted(range(len(block)), key=lambda i: len(block[i][1]))  # by length
            feats: dict[int, np.ndarray] = {}
            budget = int(seconds_per_batch * sr)
            batch: list[int] = []
            for i in order + [None]:
                # padded cost of the batch if i joins it: (size + 1) * longest (the sort makes i the longest)
                if i is not None and (not batch or (len(batch) + 1) * len(block[i][1]) <= budget):
                    batch.append(i)
                    continue
                if batch:
                    for j, f in zip(batch, ext.extract_batch([block[j][1] for j in batch])):
                        feats[j] = f
                    if progress:  # per forward, so the bar moves during a block
                        progress(len(batch), {"audio_s": sum(len(block[j][1]) for j in batch) / sr})
                batch = [] if i is None else [i]
            for i, (utt, _) in enumerate(block):  # utt_id order
                writer.add(utt, feats[i])
                lengths.append(len(feats[i]))
            block.clear()

        for utt, wave in _loader(_ClipAudio(items, sr), cfg.workers):
            block.append((utt, np.asarray(wave, np.float32)))
            if len(block) >= cfg.sort_window:
                flush()
        flush()
    return lengths


def split_summary(lengths: Sequence[int]) -> dict[str, Any]:
    """Counts and length statistics of one split (``summary.json``)."""
    arr = np.asarray(list(lengths), np.float64)
    return {
        "utterances": int(arr.size),
        "empty": int((arr == 0).sum()),
        "rows": int(arr.sum()),
        "mean_length": round(float(arr.mean()), 3) if arr.size else 0.0,
        "max_length": int(arr.max()) if arr.size else 0,
    }
