"""Stage-2 data: dialogues as items (text tokens with utterance spans, features, face crops) and batches."""

from .dialogues import DialogueBatchSampler, DialogueItem, MELDDialogues, collate, feature_folder
from .text import DialogueTokenizer, DialogueTokens

__all__ = ["DialogueBatchSampler", "DialogueItem", "DialogueTokenizer", "DialogueTokens", "MELDDialogues", "collate",
           "feature_folder"]
