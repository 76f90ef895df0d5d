"""The emotion labels, in FacialMMT's order (the index is the class id, as in the released MELD features)."""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")
LABEL_OF: dict[str, int] = {e: i for i, e in enumerate(EMOTIONS)}
