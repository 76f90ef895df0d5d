"""``facialmmt predict``: one clip -> stage 1 -> features -> the model -> emotion distribution and
an annotated MP4/GIF.

    from stage2_mer.predict import Predictor, write_annotated
    pred = Predictor("data/model", params).predict("clip.mp4", "Oh my God!", speaker="Rachel")

Modules: :mod:`.core` (the prediction, built as the trainer's batches are), :mod:`.render` (the
annotated clip), :mod:`.cli` (``main(argv)``, what ``facialmmt predict`` runs; not imported
here: the command sits on top of the library).
"""

from __future__ import annotations

from .core import (
    CHECKPOINT_HINT,
    InputSpec,
    PredictError,
    Prediction,
    Predictor,
    check_checkpoint,
    parse_turn,
)
from .render import draw_prediction, write_annotated

__all__ = ["CHECKPOINT_HINT", "InputSpec", "PredictError", "Prediction", "Predictor", "check_checkpoint",
           "draw_prediction", "parse_turn", "write_annotated"]
