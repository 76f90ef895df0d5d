"""``learned_sync``: a learned "is this face talking" score times a lip-sync "is it the voice we hear" term.

The published TalkNet / Light-ASD / LR-ASD weights answer whether a face is talking while speech is
heard: a listener who talks too (a muted voice, a dubbed or overlapping line) scores ~0.99 next to
the real speaker (``benchmarks/asd_reference_check.py``, docs/stage1.md "Learned active-speaker scorers").
``av_sync`` answers the other question, weakly (a correlation of mouth motion with the speech
envelope), but it does tell the heard voice from a silent mouth movement. Per track and frame::

    p_i(t) = learned scorer's speaking probability                 # (T_i,) in [0, 1]
    y_i(t) = av_sync score of the mouth region of the same crops   # (T_i,) in [0, 1]
    score_i(t) = p_i(t) * y_i(t) ** g                             # g = sync_power

Real lips that barely move with the voice give a weak sync term even for the true speaker; the
plain product (``g`` = 1) turns it into speaking evidence of a few hundredths, too little for the
identity step to name the speaker's face from the transcript (it weighs faces by that evidence) or
for the selection to accept it. ``g`` < 1 spreads the low end of the sync term (0.04 -> 0.2 at
``g`` = 0.5) while keeping its order, so two talking faces are still told apart by it. 0.5, the
default, was chosen on composed calibration scenes of real talking heads
(``benchmarks/learned_sync_sweep.py``; benchmarks/README.md): a floor under the sync term
(``p * (f + (1 - f) * y)``) was tried there too and let a talking, unheard listener through.

Inputs: the learned scorer's face crops (``FaceInputSpec(kind="face", size=(112, 112), gray=True,
scale=0.7, offset=0.2)``, a mouth-centred lower-face square). The mouth patch for the sync term is
the sub-rectangle ``mouth_rows`` x ``mouth_cols`` (fractions of the crop) resized to av_sync's
``patch_size``: one patch pass serves both terms.

Config (``stage1.asd``)::

    name: learned_sync
    learned: {name: lr_asd, checkpoint: models/finetuning_TalkSet.model}   # any learned scorer's keys
    sync: {}                                                               # av_sync keys (its defaults)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ..common.config import from_dict
from .av_sync import AVSyncConfig, AVSyncScorer
from .base import ActiveSpeakerScorer, FaceInputSpec, create_scorer, register_scorer
from .learned import LearnedASDScorer

logger = logging.getLogger(__name__)


@dataclass
class LearnedSyncConfig:
    """``stage1.asd`` keys of ``learned_sync`` (besides ``name``)."""

    learned: dict[str, Any] = field(default_factory=dict)  # {name: talknet | light_asd | lr_asd, checkpoint, ...}
    sync: dict[str, Any] = field(default_factory=dict)  # av_sync config of the lip-sync term
    mouth_rows: tuple[float, float] = (0.45, 0.85)  # mouth region of the learned crop, fractions of its height
    mouth_cols: tuple[float, float] = (0.15, 0.85)  # ... and of its width
    sync_power: float = 0.5  # g in p * y ** g: 1 = the plain product (module docstring)

    def __post_init__(self) -> None:
        if not isinstance(self.learned, dict) or "name" not in self.learned:
            raise ValueError(
                "asd.learned must be a learned scorer's section with a name (talknet | light_asd | lr_asd)"
            )
        if not isinstance(self.sync, dict):
            raise ValueError("asd.sync must be a mapping of av_sync keys")
        for key in ("mouth_rows", "mouth_cols"):
            lo, hi = (float(v) for v in getattr(self, key))
            if not 0.0 <= lo < hi <= 1.0:
                raise ValueError(f"asd.{key} must be two fractions 0 <= lo < hi <= 1, got {getattr(self, key)}")
            setattr(self, key, (lo, hi))
        if not 0.0 < float(self.sync_power) <= 1.0:
            raise ValueError(f"asd.sync_power must be in (0, 1], got {self.sync_power}")
        self.sync_power = float(self.sync_power)


def combine_terms(p: np.ndarray, y: np.ndarray, sync_power: float = 1.0) -> np.ndarray:
    """(T,) learned probability ``p`` and (T,) sync score ``y`` -> (T,) ``p * y ** sync_power`` in [0, 1]."""
    p = np.asarray(p, np.float32)
    y = np.clip(np.asarray(y, np.float32), 0.0, 1.0)
    return np.clip(p * y**sync_power, 0.0, 1.0).astype(np.float32)


@register_scorer("learned_sync")
class LearnedSyncScorer(ActiveSpeakerScorer):
    """Learned speaking probability x ``av_sync`` lip-sync score (see the module docstring)."""

    Config = LearnedSyncConfig

    def __init__(self, cfg: LearnedSyncConfig) -> None:
        super().__init__(cfg)
        section = dict(cfg.learned)
        name = section.pop("name")
        learned = create_scorer(name, **section)
        if not isinstance(learned, LearnedASDScorer):
            raise ValueError(f"asd.learned.name must be a learned scorer (talknet | light_asd | lr_asd), got {name!r}")
        self.learned = learned
        self.sync = AVSyncScorer(from_dict(AVSyncConfig, cfg.sync, where="asd.sync"))  # unknown keys: ConfigError

    @property
    def input_spec(self) -> FaceInputSpec:
        return self.learned.input_spec

    def voice_at(self, audio: np.ndarray, sr: int, times: np.ndarray) -> np.ndarray:
        """Voice probability (T,) at ``times`` from the sync term's VAD."""
        return self.sync.voice_at(audio, sr, times)

    def mouth_patches(self, faces: np.ndarray) -> np.ndarray:
        """(T, 112, 112) learned crops -> (T, h, w) mouth patches of the sync term's size."""
        faces = np.asarray(faces, np.float32)
        if faces.ndim == 4:
            faces = faces @ np.array([0.299, 0.587, 0.114], np.float32)
        t_len, H, W = faces.shape
        r0, r1 = (int(round(f * H)) for f in self.cfg.mouth_rows)
        c0, c1 = (int(round(f * W)) for f in self.cfg.mouth_cols)
        h, w = self.sync.input_spec.size
        out = np.empty((t_len, h, w), np.float32)
        for k in range(t_len):
            out[k] = cv2.resize(faces[k, r0:r1, c0:c1], (w, h), interpolation=cv2.INTER_AREA)
        return out

    def score(
        self,
        tracks_patches: list[np.ndarray],
        frame_times: list[np.ndarray],
        audio: np.ndarray | None,
        sr: int,
        fps: float,
    ) -> list[np.ndarray]:
        self.check_inputs(tracks_patches, frame_times)
        p = self.learned.score(tracks_patches, frame_times, audio, sr, fps)  # per track (T_i,)
        y = self.sync.score([self.mouth_patches(x) for x in tracks_patches], frame_times, audio, sr, fps)
        # lag_s: the sync term's; the two terms per track, for calibration (benchmarks/learned_sync_sweep.py)
        self.last_info = {**self.sync.last_info, **self.learned.last_info, "learned": p, "sync": y}
        return [combine_terms(a, b, self.cfg.sync_power) for a, b in zip(p, y)]
