"""MELD dialogues as training items, and the collate that turns several into one model batch.

One item is one DIALOGUE (so the text encoder sees it once and classifies all its utterances):
its utterances' ids, labels, the dialogue's tokens with each utterance's span, and per utterance
the audio features ``(La_i, Da)``, the face features ``(Lv_i, Dv)`` and, for the facial-expression
branch, the face crops ``(Lv_i, S, S, 3) uint8`` aligned row for row with the face features. Each
modality is optional (a text-only model needs no feature folder).

:func:`collate` pads a list of items into the batch dict of ``stage2_mer.model`` (masks are bool,
True = valid)::

    input_ids (B, T) long, attention_mask (B, T) bool      token rows: one per dialogue (text context
                                                           "dialogue") or one per utterance ("past:N")
    utt_dialogue (U,) long, utt_start (U,), utt_end (U,)   each utterance's row and span in it
    audio (U, La, Da) float, audio_mask (U, La) bool
    visual (U, Lv, Dv) float, visual_mask (U, Lv) bool
    faces (N, S, S, 3) uint8, face_index (N, 2) long       the real face crops and their (utt, row)
    labels (U,) long

Sequences longer than the modality's ``max_len`` keep their FIRST ``max_len`` rows (FacialMMT).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .text import DialogueTokenizer, DialogueTokens

log = logging.getLogger(__name__)

__all__ = ["DialogueItem", "MELDDialogues", "collate", "DialogueBatchSampler"]


@dataclass
class DialogueItem:
    """One dialogue (see the module docstring)."""

    key: str  # "<split>/dia<D>"
    utt_ids: list[str]
    labels: list[int]
    input_ids: list[int] | None = None
    spans: list[tuple[int, int]] | None = None
    token_rows: list[list[int]] | None = None  # text context past:N: one row per utterance (input_ids None)
    audio: list[np.ndarray] | None = None  # per utterance (La_i, Da) float32
    visual: list[np.ndarray] | None = None  # per utterance (Lv_i, Dv) float32
    faces: list[np.ndarray] | None = None  # per utterance (Lv_i, S, S, 3) uint8
    extra: dict = field(default_factory=dict)

    def set_text(self, enc: DialogueTokens) -> None:
        """Take the token rows and spans of ``DialogueTokenizer.encode``: the dialogue's one row
        (text context ``dialogue``) or one row per utterance (``past:N``)."""
        self.spans = enc.spans
        if enc.rows:
            self.token_rows = enc.rows
        else:
            self.input_ids = enc.input_ids


class MELDDialogues:
    """Map-style dataset of the dialogues of one split.

    Args:
        table: the ``prepare`` stage's utterance table (a pandas DataFrame), any splits.
        split: which split to serve.
        tokenizer: a :class:`DialogueTokenizer` (None: no text).
        audio, visual: :class:`~stage2_mer.features.FeatureReader` of this split (None: modality off).
        faces: :class:`~stage1_face_extraction.store.FaceShardReader` of this split, for the
            facial-expression branch (None: no crops).
        max_audio, max_visual: length caps (the features stage's ``max_len``).
    """

    def __init__(self, table, split: str, tokenizer: DialogueTokenizer | None = None, audio=None, visual=None,
                 faces=None, max_audio: int | None = None, max_visual: int | None = None) -> None:
        rows = table[table["split"] == split].sort_values(["dialogue_id", "utterance_id"])
        if rows.empty:
            raise ValueError(f"no utterances of split {split!r} in the table")
        self.split = split
        self.tokenizer, self.audio, self.visual, self.faces = tokenizer, audio, visual, faces
        self.max_audio, self.max_visual = max_audio, max_visual
        self.dialogues: list[tuple[int, list]] = [
            (int(d), list(g.itertuples())) for d, g in rows.groupby("dialogue_id", sort=True)
        ]
        for name, reader in (("audio", audio), ("visual", visual), ("faces", faces)):
            if reader is not None:
                have = set(reader.utt_ids())
                missing = [r.utt_id for _, g in self.dialogues for r in g if r.utt_id not in have]
                if missing:
                    raise KeyError(f"{len(missing)} {split} utterances have no {name} entry (first: {missing[0]}); "
                                   "were the features made from the same utterance table?")

    def __len__(self) -> int:
        return len(self.dialogues)

    def n_utterances(self, i: int) -> int:
        return len(self.dialogues[i][1])

    def __getitem__(self, i: int) -> DialogueItem:
        dia, rows = self.dialogues[i]
        item = DialogueItem(f"{self.split}/dia{dia}", [r.utt_id for r in rows], [int(r.label) for r in rows])
        if self.tokenizer is not None:
            item.set_text(self.tokenizer.encode([r.text for r in rows], [r.speaker for r in rows]))
        if self.audio is not None:
            item.audio = [self.audio.read(u)[: self.max_audio] for u in item.utt_ids]
        if self.visual is not None:
            item.visual = [self.visual.read(u)[: self.max_visual] for u in item.utt_ids]
        if self.faces is not None:
            item.faces = [self.faces.read(u)[: self.max_visual] for u in item.utt_ids]
            if item.visual is not None:
                for u, f, v in zip(item.utt_ids, item.faces, item.visual):
                    if len(f) != len(v):
                        raise ValueError(f"{u}: {len(f)} face crops but {len(v)} visual feature rows")
        return item


def _pad(seqs: Sequence[np.ndarray], dim: int) -> tuple[np.ndarray, np.ndarray]:
    n = max((len(s) for s in seqs), default=0)
    n = max(n, 1)  # keep a (U, 1, D) all-masked tensor rather than a zero-length axis
    x = np.zeros((len(seqs), n, dim), np.float32)
    m = np.zeros((len(seqs), n), bool)
    for i, s in enumerate(seqs):
        if len(s):
            x[i, : len(s)] = s
            m[i, : len(s)] = True
    return x, m


def collate(items: Sequence[DialogueItem], pad_id: int = 0):
    """Pad dialogues into one batch dict of torch tensors (module docstring)."""
    import torch

    out: dict[str, object] = {}
    utt_dialogue = [b for b, it in enumerate(items) for _ in it.utt_ids]
    out["utt_ids"] = [u for it in items for u in it.utt_ids]
    out["labels"] = torch.tensor([lab for it in items for lab in it.labels], dtype=torch.long)
    out["utt_dialogue"] = torch.tensor(utt_dialogue, dtype=torch.long)
    if items[0].input_ids is not None or items[0].token_rows is not None:
        rows: list[list[int]] = []  # R token rows (R = B dialogues, or U utterances with token_rows)
        utt_row: list[int] = []  # (U,) row of each utterance
        for it in items:
            if it.token_rows is not None:  # one row per utterance
                if len(it.token_rows) != len(it.utt_ids):
                    raise ValueError(f"{it.key}: {len(it.token_rows)} token rows for {len(it.utt_ids)} utterances")
                utt_row.extend(range(len(rows), len(rows) + len(it.token_rows)))
                rows.extend(it.token_rows)
            else:
                utt_row.extend([len(rows)] * len(it.utt_ids))
                rows.append(it.input_ids)
        t = max(len(r) for r in rows)
        ids = torch.full((len(rows), t), pad_id, dtype=torch.long)  # (R, T)
        att = torch.zeros((len(rows), t), dtype=torch.bool)  # (R, T)
        for b, r in enumerate(rows):
            ids[b, : len(r)] = torch.tensor(r)
            att[b, : len(r)] = True
        out["input_ids"], out["attention_mask"] = ids, att
        out["utt_dialogue"] = torch.tensor(utt_row, dtype=torch.long)  # (U,) row in input_ids
        out["utt_start"] = torch.tensor([s for it in items for s, _ in it.spans], dtype=torch.long)
        out["utt_end"] = torch.tensor([e for it in items for _, e in it.spans], dtype=torch.long)
    for key in ("audio", "visual"):
        if getattr(items[0], key) is not None:
            seqs = [s for it in items for s in getattr(it, key)]
            x, m = _pad(seqs, seqs[0].shape[1] if seqs else 0)
            out[key], out[f"{key}_mask"] = torch.from_numpy(x), torch.from_numpy(m)
    if items[0].faces is not None:
        crops = [f for it in items for f in it.faces]
        index = [(u, k) for u, f in enumerate(crops) for k in range(len(f))]
        real = [f for f in crops if len(f)]
        out["faces"] = torch.from_numpy(np.concatenate(real, 0)) if real else torch.zeros((0, 1, 1, 3), dtype=torch.uint8)
        out["face_index"] = torch.tensor(index, dtype=torch.long).reshape(-1, 2)
    return out


class DialogueBatchSampler:
    """Batches of whole dialogues: at most ``max_dialogues`` dialogues and (unless one dialogue
    alone is larger) ``max_utterances`` utterances per batch; shuffled with ``seed + epoch``."""

    def __init__(self, dataset: MELDDialogues, max_dialogues: int, max_utterances: int = 64, shuffle: bool = True,
                 seed: int = 0) -> None:
        if max_dialogues < 1 or max_utterances < 1:
            raise ValueError("max_dialogues and max_utterances must be >= 1")
        self.sizes = [dataset.n_utterances(i) for i in range(len(dataset))]
        self.max_dialogues, self.max_utterances = int(max_dialogues), int(max_utterances)
        self.shuffle, self.seed, self.epoch = shuffle, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _batches(self) -> list[list[int]]:
        order = np.arange(len(self.sizes))
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(order)
        batches, cur, n = [], [], 0
        for i in order.tolist():
            if cur and (len(cur) >= self.max_dialogues or n + self.sizes[i] > self.max_utterances):
                batches.append(cur)
                cur, n = [], 0
            cur.append(i)
            n += self.sizes[i]
        if cur:
            batches.append(cur)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


def feature_folder(root: str | Path, modality: str, name: str, split: str) -> Path:
    """``<root>/<modality>/<name>/<split>`` (the features stage's layout)."""
    return Path(root) / modality / name / split
