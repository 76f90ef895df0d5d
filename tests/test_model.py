"""stage2_mer.model: tiny configs, synthetic dialogues, random RoBERTa (no files, no network)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from stage1_face_extraction.common.config import ConfigError, from_dict
from stage2_mer.model import (
    FacialMMT,
    ModelConfig,
    create_model,
    masked_softmax,
    sinusoidal_positions,
)

TEXT_CONFIG = {
    "model_type": "roberta", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
    "intermediate_size": 64, "vocab_size": 100, "max_position_embeddings": 130, "pad_token_id": 1,
}
PAD_ID = 1
A_DIM, V_DIM, FER = 12, 10, 7
COMBOS = ["T", "A", "V", "T+A", "T+V", "A+V", "T+A+V"]


def tiny(modalities: str = "T+A+V", **kw) -> ModelConfig:
    base = {
        "modalities": modalities, "text_encoder": None, "text_config": dict(TEXT_CONFIG), "hidden": 32,
        "heads": 4, "ffn": 64, "audio_layers": 2, "visual_layers": 2, "cross_layers": 2, "cross_heads": 4,
        "audio_dim": A_DIM, "visual_dim": V_DIM, "fer_dim": FER, "max_audio_len": 40, "max_visual_len": 30,
        "max_text_len": 64,
    }
    base.update(kw)
    return ModelConfig(**base)


def model_for(modalities: str = "T+A+V", seed: int = 0, **kw) -> FacialMMT:
    torch.manual_seed(seed)
    return create_model(tiny(modalities, **kw)).eval()


def make_dialogue(g: torch.Generator, n_utt: int, empty_audio=(), empty_visual=()) -> dict:
    """One dialogue: ``<s> u1 </s></s> u2 </s> ...`` token ids and per-utterance A/V frames."""
    ids, spans, audio, visual, probs = [0], [], [], [], []
    for u in range(n_utt):
        n = int(torch.randint(1, 9, (1,), generator=g))
        spans.append((len(ids), len(ids) + n))
        ids += torch.randint(3, 100, (n,), generator=g).tolist() + [2, 2]
        la = 0 if u in empty_audio else int(torch.randint(1, 20, (1,), generator=g))
        lv = 0 if u in empty_visual else int(torch.randint(1, 15, (1,), generator=g))
        audio.append(torch.randn(la, A_DIM, generator=g))
        visual.append(torch.randn(lv, V_DIM, generator=g))
        probs.append(torch.softmax(torch.randn(lv, FER, generator=g), -1))
    return {"ids": torch.tensor(ids[:-1]), "spans": spans, "audio": audio, "visual": visual, "probs": probs}


def collate(dialogues: list[dict], extra: int = 0, noise: torch.Generator | None = None) -> dict:
    """Pad to the longest (+ ``extra``); ``noise`` fills every padded slot with garbage instead of
    pad id / zeros (the model must not look at it)."""

    def fill(shape, pad):
        if noise is None:
            return torch.full(shape, pad) if isinstance(pad, int) else torch.zeros(shape)
        if isinstance(pad, int):
            return torch.randint(3, 100, shape, generator=noise)
        return 50 * torch.randn(shape, generator=noise)

    b = len(dialogues)
    t = max(len(d["ids"]) for d in dialogues) + extra
    input_ids, attn = fill((b, t), PAD_ID), torch.zeros(b, t, dtype=torch.bool)
    dia, start, end, audio, visual, probs = [], [], [], [], [], []
    for i, d in enumerate(dialogues):
        input_ids[i, : len(d["ids"])] = d["ids"]
        attn[i, : len(d["ids"])] = True
        for s, e in d["spans"]:
            dia.append(i)
            start.append(s)
            end.append(e)
        audio += d["audio"]
        visual += d["visual"]
        probs += d["probs"]

    def stack(seqs, dim):
        width = max(len(x) for x in seqs) + extra
        out, mask = fill((len(seqs), width, dim), 0.0), torch.zeros(len(seqs), width, dtype=torch.bool)
        for u, x in enumerate(seqs):
            out[u, : len(x)] = x
            mask[u, : len(x)] = True
        return out, mask

    a, am = stack(audio, A_DIM)
    v, vm = stack(visual, V_DIM)
    p, _ = stack(probs, FER)
    return {
        "input_ids": input_ids, "attention_mask": attn, "utt_dialogue": torch.tensor(dia),
        "utt_start": torch.tensor(start), "utt_end": torch.tensor(end),
        "audio": a, "audio_mask": am, "visual": v, "visual_mask": vm, "face_probs": p,
    }


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest: tiny tensors, one thread


@pytest.fixture(scope="module")
def dialogues() -> list[dict]:
    g = torch.Generator().manual_seed(7)
    return [make_dialogue(g, 3), make_dialogue(g, 5), make_dialogue(g, 2)]


# ---------------------------------------------------------------------------- config


def test_config_defaults_are_facialmmt_sizes():
    cfg = ModelConfig()
    assert (cfg.hidden, cfg.heads, cfg.ffn, cfg.audio_layers, cfg.visual_layers, cfg.cross_layers) == (
        768,
        12,
        3072,
        5,
        2,
        2,
    )
    assert (cfg.audio_dim, cfg.visual_dim, cfg.fer_dim, cfg.num_labels, cfg.layer_norm_eps) == (768, 512, 7, 7, 1e-12)


def test_unknown_config_key_fails():
    with pytest.raises(ConfigError, match="model.hiden"):
        from_dict(ModelConfig, {"hiden": 32}, "model")
    with pytest.raises(ConfigError, match="model.hiden"):
        ModelConfig.from_dict({"hiden": 32})


@pytest.mark.parametrize("spec", ["", "X", "T+T", "T+A+V+", "TA"])
def test_bad_modalities_fail(spec):
    with pytest.raises(ConfigError):
        tiny(spec)


@pytest.mark.parametrize("kw", [{"hidden": 30}, {"cross_heads": 5}, {"dropout": 1.0}, {"fer_dim": -1},
                                {"audio_layers": True}, {"text_config": {"hidden_size": 4}}])
def test_bad_values_fail(kw):
    with pytest.raises(ConfigError):
        tiny(**kw)


def test_text_needs_encoder_or_config():
    with pytest.raises(ConfigError, match="text_encoder"):
        ModelConfig(modalities="T", text_encoder=None, text_config=None)
    with pytest.raises(ConfigError, match="text_encoder: null"):
        ModelConfig(text_encoder="models/roberta-large", text_config=dict(TEXT_CONFIG))
    ModelConfig(modalities="A+V", text_encoder=None)  # no text branch: nothing needed


def test_modalities_canonical_order():
    assert tiny("V+T").modalities == "T+V"
    assert tiny("v + a").modality_tuple == ("A", "V")


def test_config_dict_round_trip():
    cfg = tiny("A+T", fer_dim=0)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert ModelConfig.from_dict(data) == cfg
    assert from_dict(ModelConfig, data, "model") == cfg


def test_missing_text_encoder_folder_is_named(tmp_path):
    missing = tmp_path / "no-such-roberta"
    cfg = tiny("T+A", text_encoder=str(missing), text_config=None)
    with pytest.raises(FileNotFoundError, match="no-such-roberta"):
        create_model(cfg)


# ---------------------------------------------------------------------------- layers


def test_masked_softmax_all_masked_row_is_zero():
    s = torch.randn(2, 4)
    m = torch.tensor([[True, False, True, False], [False] * 4])
    w = masked_softmax(s, m)
    assert torch.allclose(w[0].sum(), torch.tensor(1.0)) and w[0, 1] == 0 and w[0, 3] == 0
    assert torch.equal(w[1], torch.zeros(4))


def test_sinusoidal_positions_count_valid_steps_only():
    m = torch.tensor([[True, True, False, False], [False, True, False, True]])
    p = sinusoidal_positions(m, 8)
    assert torch.equal(p[0, 2:], torch.zeros(2, 8)) and torch.equal(p[1, 0], torch.zeros(8))
    assert torch.allclose(p[0, 0], p[1, 1]) and torch.allclose(p[0, 1], p[1, 3])


# ---------------------------------------------------------------------------- model


@pytest.mark.parametrize("modalities", COMBOS)
def test_output_shape_every_combination(modalities, dialogues):
    model = model_for(modalities)
    batch = collate(dialogues)
    u = len(batch["utt_dialogue"])
    assert model(batch).shape == (u, 7)
    names = {n.split(".")[0] for n, _ in model.named_parameters()}
    assert ("text_encoder" in names) == ("T" in modalities)
    assert ("audio_encoder" in names) == ("A" in modalities)
    assert ("visual_encoder" in names) == ("V" in modalities)
    assert (
        set(model.cross) == {3: {"TA", "TA_V"}, 2: {modalities.replace("+", "")}, 1: set()}[len(modalities.split("+"))]
    )


def test_branch_shapes(dialogues):
    model = model_for()
    batch = collate(dialogues, extra=3)
    u = len(batch["utt_dialogue"])
    longest = max(e - s for d in dialogues for s, e in d["spans"])
    text, tmask = model.encode_text(batch["input_ids"], batch["attention_mask"], batch["utt_dialogue"],
                                    batch["utt_start"], batch["utt_end"])
    assert text.shape == (u, longest, 32) and tmask.shape == (u, longest)
    assert tmask.sum(1).tolist() == [e - s for d in dialogues for s, e in d["spans"]]
    la, lv = batch["audio"].shape[1], batch["visual"].shape[1]
    assert model.encode_audio(batch["audio"], batch["audio_mask"]).shape == (u, la, 32)
    assert model.encode_faces(batch["visual"], batch["visual_mask"], batch["face_probs"]).shape == (u, lv, 32)
    seq, mask = model.fuse(model.encode(batch))
    assert seq.shape == (u, longest + la + lv, 32) and mask.shape == (u, longest + la + lv)


@pytest.mark.parametrize("modalities", ["T+A+V", "T", "A+V"])
def test_batch_equals_separate_dialogues(modalities, dialogues):
    model = model_for(modalities)
    with torch.no_grad():
        together = model(collate(dialogues, extra=2))
        alone = torch.cat([model(collate([d])) for d in dialogues])
    assert torch.allclose(together, alone, atol=1e-5), (together - alone).abs().max()


def test_padded_values_do_not_matter(dialogues):
    model = model_for()
    with torch.no_grad():
        clean = model(collate(dialogues, extra=4))
        noisy = model(collate(dialogues, extra=4, noise=torch.Generator().manual_seed(3)))
    assert torch.allclose(clean, noisy, atol=1e-5), (clean - noisy).abs().max()


def test_each_dialogue_encoded_once(dialogues):
    model = model_for()
    calls = []
    model.text_encoder.register_forward_pre_hook(lambda m, a, kw: calls.append(tuple(kw["input_ids"].shape)),
                                                 with_kwargs=True)
    batch = collate(dialogues)
    with torch.no_grad():
        model(batch)
    assert calls == [tuple(batch["input_ids"].shape)] and calls[0][0] == len(dialogues)


def test_text_span_longer_than_38_is_kept():
    g = torch.Generator().manual_seed(1)
    d = make_dialogue(g, 2)
    long = torch.randint(3, 100, (60,), generator=g)
    d["ids"] = torch.cat([d["ids"], torch.tensor([2, 2]), long])
    d["spans"].append((len(d["ids"]) - 60, len(d["ids"])))
    d["audio"].append(torch.randn(3, A_DIM))
    d["visual"].append(torch.randn(2, V_DIM))
    d["probs"].append(torch.softmax(torch.randn(2, FER), -1))
    model = model_for("T")
    b = collate([d])
    text, mask = model.encode_text(b["input_ids"], b["attention_mask"], b["utt_dialogue"], b["utt_start"], b["utt_end"])
    assert text.shape[1] == 60 and mask[-1].all()


@pytest.mark.parametrize("modalities", ["T+A+V", "A+V", "V", "A"])
def test_empty_modalities_give_finite_logits(modalities):
    g = torch.Generator().manual_seed(5)
    d = make_dialogue(g, 4, empty_audio=(1, 3), empty_visual=(0, 3))
    model = model_for(modalities)
    batch = collate([d])
    with torch.no_grad():
        logits = model(batch)
        noisy = model(collate([d], extra=2, noise=torch.Generator().manual_seed(9)))
    assert torch.isfinite(logits).all()
    assert torch.allclose(logits, noisy, atol=1e-5)
    if modalities in ("V", "A"):  # nothing valid at all: pooled vector is 0 -> classifier bias
        empty = 0 if modalities == "V" else 1
        assert torch.allclose(logits[empty], model.classifier.bias)


def test_empty_text_span_and_all_empty_batch():
    g = torch.Generator().manual_seed(2)
    d = make_dialogue(g, 2, empty_audio=(0, 1), empty_visual=(0, 1))
    model = model_for()
    batch = collate([d])
    batch["utt_end"] = batch["utt_start"].clone()  # no tokens either
    with torch.no_grad():
        logits = model(batch)
    assert torch.isfinite(logits).all()
    assert torch.allclose(logits, model.classifier.bias.expand_as(logits))


def test_unimodal_v_without_fer():
    g = torch.Generator().manual_seed(4)
    model = model_for("V", fer_dim=0)
    assert model.visual_encoder.proj.in_features == V_DIM
    batch = collate([make_dialogue(g, 3)])
    batch.pop("face_probs")
    assert model(batch).shape == (3, 7)
    with pytest.raises(ValueError, match="fer_dim is 0"):
        model(collate([make_dialogue(g, 3)]))
    with pytest.raises(ValueError, match="face_probs"):
        model_for("V")(batch)


def test_too_many_frames_raise_but_wide_padding_is_fine():
    g = torch.Generator().manual_seed(6)
    model = model_for("A", max_audio_len=20)
    d = make_dialogue(g, 2)
    with torch.no_grad():
        model(collate([d], extra=30))  # padded width 49 > 20: fine, only valid frames get positions
    d["audio"][0] = torch.randn(21, A_DIM)
    with pytest.raises(ValueError, match="max_audio_len"):
        model(collate([d]))


def test_bad_span_raises(dialogues):
    model = model_for("T")
    batch = collate(dialogues)
    batch["utt_end"][0] = batch["input_ids"].shape[1] + 1
    with pytest.raises(ValueError, match="outside"):
        model(batch)


def test_param_groups_partition_trainable_params():
    model = model_for()
    pre, new = model.param_groups()
    ids_pre, ids_new = {id(p) for p in pre}, {id(p) for p in new}
    assert not ids_pre & ids_new
    assert ids_pre | ids_new == {id(p) for p in model.parameters() if p.requires_grad}
    assert ids_pre == {id(p) for p in model.text_encoder.parameters()}
    assert id(model.text_proj.weight) in ids_new
    pre, new = model_for("A+V").param_groups()
    assert pre == [] and len(new) > 0


@pytest.mark.parametrize("modalities", ["T+A+V", "T+V", "A"])
def test_gradients_reach_every_used_branch(modalities, dialogues):
    model = model_for(modalities).train()
    batch = collate(dialogues)
    labels = torch.arange(len(batch["utt_dialogue"])) % 7
    F.cross_entropy(model(batch), labels).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    branches = {n.split(".")[0] if not n.startswith("cross.") else ".".join(n.split(".")[:2])
                for n, _ in model.named_parameters()}
    for branch in branches:
        norm = sum(float(p.grad.norm()) for n, p in model.named_parameters() if n.startswith(branch + "."))
        assert norm > 0, branch


def test_checkpoint_round_trip_with_local_folder(tmp_path, dialogues):
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    folder = tmp_path / "tiny-roberta"
    AutoModel.from_config(AutoConfig.for_model(**TEXT_CONFIG)).save_pretrained(folder)
    cfg = tiny(text_encoder=str(folder), text_config=None)
    model = create_model(cfg).eval()
    saved = AutoModel.from_pretrained(folder)
    assert torch.equal(model.text_encoder.embeddings.word_embeddings.weight, saved.embeddings.word_embeddings.weight)
    assert getattr(model.text_encoder, "pooler", None) is None

    ckpt = {"config": json.loads(json.dumps(cfg.to_dict())), "state_dict": model.state_dict()}
    restored = create_model(ckpt["config"], pretrained_text=False).eval()
    restored.load_state_dict(ckpt["state_dict"])
    batch = collate(dialogues)
    with torch.no_grad():
        assert torch.allclose(model(batch), restored(batch))


def test_text_dim_proj_false_needs_matching_width():
    model = model_for("T", text_dim_proj=False)
    assert isinstance(model.text_proj, torch.nn.Identity)
    with pytest.raises(ValueError, match="text_dim_proj"):
        create_model(tiny("T", text_dim_proj=False, hidden=64))


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_text_pool_mean_and_cls(pool, dialogues):
    model = model_for("T", text_pool=pool)
    batch = collate(dialogues, extra=2)
    args = [batch[k] for k in ("input_ids", "attention_mask", "utt_dialogue", "utt_start", "utt_end")]
    with torch.no_grad():
        text, tmask = model.encode_text(*args)
        hidden = model.text_encoder(input_ids=batch["input_ids"],
                                    attention_mask=batch["attention_mask"].long()).last_hidden_state
    u = len(batch["utt_dialogue"])
    assert text.shape == (u, 1, 32) and tmask.shape == (u, 1) and bool(tmask.all())
    for k in range(u):
        row, s, e = (int(batch[key][k]) for key in ("utt_dialogue", "utt_start", "utt_end"))
        want = hidden[row, s:e].mean(0) if pool == "mean" else hidden[row, 0]
        assert torch.allclose(text[k, 0], model.text_proj(want), atol=1e-5), k
    # an empty span is masked (the classifier then sees only its bias)
    batch["utt_end"] = batch["utt_start"].clone()
    with torch.no_grad():
        logits = model(batch)
    assert torch.allclose(logits, model.classifier.bias.expand_as(logits))


def test_text_pool_span_is_the_default_and_bad_values_fail(dialogues):
    assert ModelConfig().text_pool == "span"
    with pytest.raises(ConfigError, match="text_pool"):
        tiny("T", text_pool="max")
    span, mean = model_for("T"), model_for("T", text_pool="mean")
    batch = collate(dialogues)
    args = [batch[k] for k in ("input_ids", "attention_mask", "utt_dialogue", "utt_start", "utt_end")]
    with torch.no_grad():
        assert span.encode_text(*args)[0].shape[1] > 1 and mean.encode_text(*args)[0].shape[1] == 1


def test_length_chunks_is_the_optimal_partition():
    import itertools

    from stage2_mer.model.facialmmt import length_chunks

    g = torch.Generator().manual_seed(5)
    for _ in range(30):
        n = int(torch.randint(1, 8, (1,), generator=g))
        lengths = sorted(torch.randint(1, 200, (n,), generator=g).tolist())
        per = float(torch.randint(0, 300, (1,), generator=g))

        def cost(chunks):
            return sum(lengths[j - 1] * (j - i) + per for i, j in chunks)

        best = min(cost(list(zip((0, *cuts), (*cuts, n)))) for k in range(n)
                   for cuts in itertools.combinations(range(1, n), k))
        got = length_chunks(lengths, per)
        assert got[0][0] == 0 and got[-1][1] == n and all(a[1] == b[0] for a, b in zip(got, got[1:]))
        assert cost(got) == pytest.approx(best)
    assert length_chunks([50] * 6) == [(0, 6)] and length_chunks([]) == []


def _rows(lengths, pad=PAD_ID, left=False):
    g = torch.Generator().manual_seed(2)
    t = max(lengths)
    ids = torch.full((len(lengths), t), pad)
    am = torch.zeros(len(lengths), t, dtype=torch.bool)
    for r, n in enumerate(lengths):
        sl = slice(t - n, t) if left else slice(0, n)
        ids[r, sl] = torch.randint(3, 100, (n,), generator=g)
        am[r, sl] = True
    return ids, am


def test_rows_of_mixed_length_are_encoded_in_chunks_with_the_one_pass_result():
    model = model_for("T")  # eval mode: no dropout
    ids, am = _rows([4, 120, 6, 118, 5, 60])
    calls = []
    hook = model.text_encoder.register_forward_pre_hook(
        lambda m, a, kw: calls.append(tuple(kw["input_ids"].shape)), with_kwargs=True)
    chunked = model._encode_rows(ids, am)
    hook.remove()
    assert len(calls) > 1 and sum(c[0] for c in calls) == 6, "every row once, in several length-sorted calls"
    assert sorted(c[1] for c in calls) == [c[1] for c in calls] and max(c[1] for c in calls) == 120
    one = model.text_encoder(input_ids=ids, attention_mask=am.long()).last_hidden_state
    assert chunked.shape == one.shape
    assert torch.allclose(chunked[am], one[am], atol=1e-5), (chunked[am] - one[am]).abs().max()
    # the same gradients reach the encoder
    grads = []
    for h in (chunked, one):
        model.zero_grad()
        (h[am] ** 2).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.text_encoder.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-4, rtol=1e-4)


def test_rows_not_right_padded_run_in_one_pass():
    model = model_for("T")
    ids, am = _rows([4, 120, 6, 118], left=True)
    calls = []
    model.text_encoder.register_forward_pre_hook(lambda m, a, kw: calls.append(tuple(kw["input_ids"].shape)),
                                                 with_kwargs=True)
    with torch.no_grad():
        out = model._encode_rows(ids, am)
    assert calls == [(4, 120)] and out.shape == (4, 120, TEXT_CONFIG["hidden_size"])
