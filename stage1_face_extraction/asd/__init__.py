"""Active-speaker scorers: registry, the training-free ``av_sync`` default and the learned
``talknet`` / ``light_asd`` / ``lr_asd`` (``asd/learned.py``, weights from a local checkpoint), and
``learned_sync`` (a learned score times av_sync's lip-sync term, ``asd/learned_sync.py``).

    from stage1_face_extraction.asd import create_scorer, extract_patch
    scorer = create_scorer("av_sync")            # unknown names / config keys -> ConfigError
    scorer = create_scorer("light_asd", checkpoint="models/finetuning_TalkSet.model")
    spec = scorer.input_spec                      # FaceInputSpec: which patch to cut per track row
"""

from __future__ import annotations

from . import av_sync, learned, learned_sync  # noqa: F401  (register "av_sync", "talknet", "light_asd", "lr_asd", "learned_sync")
from .av_sync import AVSyncConfig, AVSyncScorer
from .base import (
    ActiveSpeakerScorer,
    FaceInputSpec,
    create_scorer,
    extract_patch,
    list_scorers,
    register_scorer,
)
from .learned import CheckpointError, LearnedASDConfig, LightASDScorer, LRASDScorer, TalkNetScorer
from .learned_sync import LearnedSyncConfig, LearnedSyncScorer

__all__ = [
    "AVSyncConfig",
    "AVSyncScorer",
    "ActiveSpeakerScorer",
    "CheckpointError",
    "FaceInputSpec",
    "LearnedASDConfig",
    "LearnedSyncConfig",
    "LearnedSyncScorer",
    "LightASDScorer",
    "LRASDScorer",
    "TalkNetScorer",
    "create_scorer",
    "extract_patch",
    "list_scorers",
    "register_scorer",
]
