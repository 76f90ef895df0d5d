"""The stage-2 multimodal emotion-recognition model (FacialMMT), batched per dialogue.

    from stage2_mer.model import ModelConfig, create_model
    cfg = load_section("params.yaml", "model", ModelConfig)
    model = create_model(cfg)                  # loads cfg.text_encoder (local folder)
    logits = model(batch)                      # (U, num_labels); batch keys in facialmmt.py
    text_params, new_params = model.param_groups()
"""

from __future__ import annotations

from .config import MODALITY_ORDER, ModelConfig, parse_modalities
from .facialmmt import FacialMMT, build_text_encoder, create_model
from .layers import (
    AdditivePooling,
    CrossModalEncoder,
    CrossModalLayer,
    MultiHeadAttention,
    SequenceEncoder,
    TransformerBlock,
    masked_softmax,
    sinusoidal_positions,
    valid_positions,
)

__all__ = [
    "MODALITY_ORDER",
    "AdditivePooling",
    "CrossModalEncoder",
    "CrossModalLayer",
    "FacialMMT",
    "ModelConfig",
    "MultiHeadAttention",
    "SequenceEncoder",
    "TransformerBlock",
    "build_text_encoder",
    "create_model",
    "masked_softmax",
    "parse_modalities",
    "sinusoidal_positions",
    "valid_positions",
]
