"""The emotion labels, in FacialMMT's order (reference §2.3): the index is the class id."""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")
LABEL_OF: dict[str, int] = {e: i for i, e in enumerate(EMOTIONS)}
