"""Active-speaker scorers: registry + the training-free ``av_sync`` default.

    from stage1_face_extraction.asd import create_scorer, extract_patch
    scorer = create_scorer("av_sync")            # unknown names / config keys -> ConfigError
    spec = scorer.input_spec                      # FaceInputSpec: which patch to cut per track row
"""

from __future__ import annotations

from . import av_sync  # noqa: F401  (registers "av_sync")
from .av_sync import AVSyncConfig, AVSyncScorer
from .base import (
    ActiveSpeakerScorer,
    FaceInputSpec,
    create_scorer,
    extract_patch,
    list_scorers,
    register_scorer,
)

__all__ = [
    "AVSyncConfig",
    "AVSyncScorer",
    "ActiveSpeakerScorer",
    "FaceInputSpec",
    "create_scorer",
    "extract_patch",
    "list_scorers",
    "register_scorer",
]
