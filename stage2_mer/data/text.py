"""A whole dialogue as ONE token sequence, with every utterance's token span.

FacialMMT gives the text encoder the whole dialogue (past and future turns) and cuts the target
utterance out of the contextual output. Here the dialogue is tokenized once and the model encodes
it once for all its utterances (``spans``).

Layout follows the tokenizer's own pair template: BERT-style ``[CLS] u1 [SEP] u2 [SEP] ...``, or
RoBERTa-style ``<s> u1 </s></s> u2 </s> ...`` when the tokenizer puts two separators between the
segments of a pair. When the dialogue is longer than ``max_tokens``, tokens are removed from the end
of the currently longest utterance until it fits (FacialMMT's rule; every utterance keeps at
least one token). ``speaker_names`` prefixes each utterance with ``"Name: "``.

``context`` chooses what the encoder sees around each utterance:

* ``"dialogue"`` (default): the layout above, ONE row per dialogue (past and future turns).
* ``"past:N"``: ONE row PER UTTERANCE, the utterance FIRST and then its up to ``N`` previous turns
  in dialogue order, ``[CLS] u_i [SEP] u_{i-N} [SEP] ... u_{i-1} [SEP]`` (RoBERTa: double
  separators between segments), like a plain per-utterance fine-tune with context; the row's first
  token is then the utterance's own [CLS]. Over ``max_tokens``, the oldest context turns go first,
  then the end of the utterance. ``past:0`` is the utterance alone. Costs ~N+1 times the tokens
  of ``dialogue`` per epoch.
* ``"past:N,future:M"``: the same rows with the up to ``M`` FOLLOWING turns after the previous
  ones, and an empty turn (one more separator) where the utterance stands between them:
  ``[CLS] u_i [SEP] u_{i-N} [SEP] ... u_{i-1} [SEP] [SEP] u_{i+1} [SEP] ... u_{i+M} [SEP]``. Over
  ``max_tokens`` the farthest context turn goes first (the older one of two as far).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["DialogueTokens", "DialogueTokenizer", "word_level_tokenizer", "ROBERTA_SPECIALS", "parse_context"]

ROBERTA_SPECIALS = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}


def parse_context(spec: str) -> tuple[int, int] | None:
    """``"dialogue"`` -> None (whole dialogue, one row); ``"past:N"`` -> (N, 0) and
    ``"past:N,future:M"`` -> (N, M) (one row per utterance with its N previous and M following
    turns, N, M >= 0); anything else raises ``ValueError``."""
    if spec == "dialogue":
        return None
    m = re.fullmatch(r"past:(\d+)(?:,\s*future:(\d+))?", str(spec).strip()) if isinstance(spec, str) else None
    if m is None:
        raise ValueError(f"text context must be 'dialogue', 'past:N' or 'past:N,future:M' (N, M >= 0), got {spec!r}")
    return int(m.group(1)), int(m.group(2) or 0)


@dataclass
class DialogueTokens:
    """Token rows and, per utterance, its span ``[start, end)`` of content tokens.

    ``context: dialogue``: ``input_ids`` (T,) is the dialogue's one row, ``rows`` is empty.
    ``context: past:N``: ``rows`` holds one row per utterance (utterance u's span lies in
    ``rows[u]``) and ``input_ids`` is empty. :meth:`token_rows` / :meth:`span_rows` give both cases
    one shape.
    """

    input_ids: list[int]
    spans: list[tuple[int, int]]
    truncated: int  # tokens removed to fit max_tokens
    rows: list[list[int]] = field(default_factory=list)

    def token_rows(self) -> list[list[int]]:
        """The token rows: ``rows``, or ``[input_ids]``."""
        return self.rows if self.rows else [self.input_ids]

    def span_rows(self) -> list[int]:
        """Per utterance, the index of its row in :meth:`token_rows`."""
        return list(range(len(self.spans))) if self.rows else [0] * len(self.spans)


class DialogueTokenizer:
    """Wraps a transformers tokenizer: ``encode(utterances, speakers) -> DialogueTokens``."""

    def __init__(self, tokenizer, max_tokens: int = 512, speaker_names: bool = False,
                 context: str = "dialogue") -> None:
        self.tok = tokenizer
        self.max_tokens = int(max_tokens)
        self.speaker_names = bool(speaker_names)
        self.context = context
        self.window = parse_context(context)  # None: whole dialogue; else (past, future) turns
        cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        if cls is None or sep is None:
            raise ValueError(f"{type(tokenizer).__name__} has no CLS/BOS or SEP/EOS token")
        self.cls, self.sep = int(cls), int(sep)
        pair = tokenizer("a", "b")["input_ids"]
        self.double_sep = any(x == y == self.sep for x, y in zip(pair, pair[1:]))
        self.pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self.per_utt = 2 if self.double_sep else 1  # separators each utterance after the first costs
        if self.max_tokens < 3:
            raise ValueError(f"max_tokens {max_tokens} is too small")

    def encode(self, utterances: Sequence[str], speakers: Sequence[str] | None = None) -> DialogueTokens:
        texts = list(utterances)
        if self.speaker_names and speakers is not None:
            texts = [f"{s}: {u}" for s, u in zip(speakers, texts)]
        pieces = [self.tok(t, add_special_tokens=False)["input_ids"] or [self.tok.unk_token_id or self.pad]
                  for t in texts]
        if self.window is not None:
            return self._encode_window(pieces, *self.window)
        specials = 2 + self.per_utt * (len(pieces) - 1)  # cls + last sep + separators between
        budget = self.max_tokens - specials
        if budget < len(pieces):
            raise ValueError(f"a dialogue of {len(pieces)} utterances cannot fit in {self.max_tokens} tokens")
        truncated = 0
        lens = [len(p) for p in pieces]
        while sum(lens) > budget:
            k = max(range(len(lens)), key=lambda i: (lens[i], -i))  # the longest (first of equals)
            lens[k] -= 1
            truncated += 1
        ids = [self.cls]
        spans = []
        for i, (p, n) in enumerate(zip(pieces, lens)):
            if i > 0 and self.double_sep:
                ids.append(self.sep)
            start = len(ids)
            ids.extend(p[:n])
            spans.append((start, len(ids)))
            ids.append(self.sep)
        return DialogueTokens(ids, spans, truncated)

    def _encode_window(self, pieces: list[list[int]], n: int, m: int) -> DialogueTokens:
        """One row per utterance: ``[CLS] u_i [SEP] u_{i-n} [SEP] ... u_{i-1} [SEP]``, then with
        ``m > 0`` an empty turn and ``u_{i+1} [SEP] ... u_{i+m} [SEP]`` (module doc)."""
        rows, spans, truncated = [], [], 0
        for i, own in enumerate(pieces):
            past = list(range(max(0, i - n), i))  # turn indices, oldest first
            future = list(range(i + 1, min(len(pieces), i + 1 + m)))
            marker = self.per_utt if future else 0  # the empty turn where u_i stands
            cost = 2 + len(own) + marker + sum(self.per_utt + len(pieces[k]) for k in past + future)
            while (past or future) and cost > self.max_tokens:  # the farthest turn goes first
                far_past = i - past[0] if past else -1
                far_future = future[-1] - i if future else -1
                k = past.pop(0) if far_past >= far_future else future.pop()
                cost -= self.per_utt + len(pieces[k])
                truncated += len(pieces[k])
                if not future and marker:
                    cost, marker = cost - marker, 0
            keep = min(len(own), self.max_tokens - 2)
            truncated += len(own) - keep
            ids = [self.cls, *own[:keep]]
            spans.append((1, len(ids)))
            ids.append(self.sep)
            turns = [pieces[k] for k in past] + ([[]] if future else []) + [pieces[k] for k in future]
            for c in turns:
                if self.double_sep:
                    ids.append(self.sep)
                ids.extend(c)
                ids.append(self.sep)
            rows.append(ids)
        return DialogueTokens([], spans, truncated, rows)


def word_level_tokenizer(words):
    """A whitespace word-level tokenizer with RoBERTa's special tokens and pair layout
    (``<s> a </s></s> b </s>``), built in memory: for tests and benchmarks that need a tokenizer
    without downloading one. Ids: the 4 specials (:data:`ROBERTA_SPECIALS`), then ``words`` in order."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = dict(ROBERTA_SPECIALS)
    for w in words:
        vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", pad_token="<pad>", unk_token="<unk>")
