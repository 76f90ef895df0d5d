"""Auxiliary facial-expression branch (FER) and its coupling to the MER model.

    from stage2_mer.fer import FERConfig, build_fer, scan_affwild2, AffWild2Dataset, fer_distributions
    model = build_fer(FERConfig(checkpoint="models/Swin_tiny_Ms-Celeb-1M.pt"))  # SwinFER
    logits = model(images)                                   # (N, 3, 224, 224) -> (N, 7), MELD order
    probs = fer_distributions(model, crops, samples=0)  # crops (M, H, W, 3) uint8 -> (M, 7)
    x, mask = filter_frames(feats, scatter_frames(probs, mask), mask)  # (U, Lv, 512 + 7), (U, Lv)

Modules: :mod:`.swin` (model, MS-Celeb checkpoint loader), :mod:`.affwild2` (ABAW3 expression
reader, dataset, demo writer), :mod:`.frames` (per-frame distributions, importance filter).
"""

from __future__ import annotations

from .affwild2 import (
    AFFWILD2_EXPRESSIONS,
    AFFWILD2_TO_MELD,
    MELD_TO_AFFWILD2,
    AffWild2Config,
    AffWild2Dataset,
    AffWild2FormatError,
    AffWild2Index,
    AugmentConfig,
    check_affwild2_source,
    is_affwild2_standin,
    is_demo_corpus,
    read_expression_file,
    scan_affwild2,
    write_demo_affwild2,
)
from .frames import (
    IMPORTANCE_THRESHOLD,
    faces_to_input,
    fer_distributions,
    filter_counts,
    filter_frames,
    frame_distributions,
    importance,
    keep_mask,
    pack_kept,
    scatter_frames,
)
from .swin import (
    CHANNEL_ORDERS,
    CheckpointError,
    CheckpointReport,
    FERConfig,
    SwinFER,
    build_fer,
    fer_to_official_key,
    load_face_checkpoint,
    official_to_fer_key,
)

__all__ = [
    "CHANNEL_ORDERS",
    "AFFWILD2_EXPRESSIONS",
    "AFFWILD2_TO_MELD",
    "IMPORTANCE_THRESHOLD",
    "MELD_TO_AFFWILD2",
    "AffWild2Config",
    "AffWild2Dataset",
    "AffWild2FormatError",
    "AffWild2Index",
    "AugmentConfig",
    "CheckpointError",
    "CheckpointReport",
    "check_affwild2_source",
    "is_affwild2_standin",
    "is_demo_corpus",
    "FERConfig",
    "SwinFER",
    "build_fer",
    "faces_to_input",
    "fer_distributions",
    "fer_to_official_key",
    "filter_counts",
    "filter_frames",
    "frame_distributions",
    "importance",
    "keep_mask",
    "load_face_checkpoint",
    "official_to_fer_key",
    "pack_kept",
    "read_expression_file",
    "scan_affwild2",
    "scatter_frames",
    "write_demo_affwild2",
]
