"""Stage-2 data: dialogues as items (text tokens with utterance spans, features, face crops) and batches."""

from .dialogues import DialogueBatchSampler, DialogueItem, MELDDialogues, collate, feature_folder
from .text import ROBERTA_SPECIALS, DialogueTokenizer, DialogueTokens, word_level_tokenizer

__all__ = ["ROBERTA_SPECIALS", "word_level_tokenizer", "DialogueBatchSampler", "DialogueItem", "DialogueTokenizer", "DialogueTokens", "MELDDialogues", "collate",
           "feature_folder"]
