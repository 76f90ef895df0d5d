"""The FacialMMT multimodal emotion-recognition model (text, audio, visual and cross-modal
branches; also the visual-only variant), batched.

One batch holds ``B`` dialogues and ``U`` utterances (all utterances of those dialogues, or any
subset). Each dialogue is encoded ONCE by the text encoder and every utterance's token span is cut
out of its dialogue's contextual output (FacialMMT re-encoded the dialogue per utterance; no
38-token cap as it had). Audio and visual
frames go through their own BERT-style encoders, then MulT-style cross-modal transformers with
key-padding masks and length-aware positions (FacialMMT attended over padding), additive attention pooling and a
linear classifier.

Batch (masks are bool, True = valid; int/float 0/1 masks are accepted and converted)::

    input_ids       (B, T) long   dialogue token ids, right-padded (tokenizer's pad id)
    attention_mask  (B, T)        valid tokens of each dialogue row
    utt_dialogue    (U,) long     row of input_ids holding utterance u
    utt_start       (U,) long     first token of utterance u in that row
    utt_end         (U,) long     one past its last token (start == end: no text, masked)
    audio           (U, La, Da)   per-frame audio features;  audio_mask  (U, La)
    visual          (U, Lv, Dv)   per-face-frame features;   visual_mask (U, Lv)
    face_probs      (U, Lv, F)    per-frame FER distributions (when model.fer_dim = F > 0)

Only the keys of the configured modalities are read. ``forward(batch) -> logits (U, num_labels)``.
An utterance with no valid position in a modality (no face, no audio) is handled: attentions
give it a zero context and pooling ignores it; with nothing valid at all, it pools to zeros.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import ModelConfig
from .layers import AdditivePooling, CrossModalEncoder, SequenceEncoder

logger = logging.getLogger(__name__)

Seq = tuple[torch.Tensor, torch.Tensor]  # (x (U, L, H), mask (U, L) bool)


# what one more encoder call costs, in padded tokens' worth of work: on a CPU a token is slow and a
# call cheap (MiniLM-L6 on this 2-core machine: ~1 ms per token forward + backward); on a GPU a call
# (hundreds of kernel launches) weighs more than thousands of tokens.
CHUNK_COST_TOKENS = {"cpu": 64, "cuda": 2048}


def length_chunks(lengths: Sequence[int], per_chunk: float = CHUNK_COST_TOKENS["cpu"]) -> list[tuple[int, int]]:
    """Cut ascending row ``lengths`` into contiguous chunks ``[(i, j), ...]`` that minimise the
    padded tokens (each chunk pads to its last, longest row) plus ``per_chunk`` tokens' worth of
    overhead per chunk (one more encoder call). Exact dynamic programme, O(n^2)."""
    n = len(lengths)
    if n == 0:
        return []
    cost = [0.0] + [float("inf")] * n  # cost[j]: best cost of rows [0, j)
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):
            c = cost[i] + lengths[j - 1] * (j - i) + per_chunk
            if c < cost[j]:
                cost[j], cut[j] = c, i
    out, j = [], n
    while j > 0:
        out.append((cut[j], j))
        j = cut[j]
    return out[::-1]


def resolve_text_encoder(value: str | None) -> str | None:
    """``pkg:<module>`` -> that installed package's ``get_model_path()`` folder; anything else unchanged.

    Configs and checkpoints keep the ``pkg:`` spec (no machine's absolute path in ``checkpoint.json``);
    it is resolved where the folder is opened."""
    if value and value.startswith("pkg:"):
        import importlib

        mod = value[4:]
        try:
            return str(importlib.import_module(mod).get_model_path())
        except (ImportError, AttributeError) as exc:
            raise FileNotFoundError(f"text encoder {value!r}: package {mod} is not installed ({exc})") from exc
    return value


def build_text_encoder(cfg: ModelConfig, pretrained: bool = True) -> nn.Module:
    """The transformers encoder of ``cfg`` (float32, pooler removed).

    ``cfg.text_encoder`` set: a local folder (or ``pkg:<module>``); ``pretrained=True`` loads its weights
    (``AutoModel.from_pretrained(local_files_only=True)``), ``False`` builds the same architecture
    with random weights from its ``config.json`` (to load a checkpoint's state dict into).
    ``cfg.text_encoder`` null: a random encoder from ``AutoConfig.for_model(**cfg.text_config)``.
    """
    from transformers import AutoConfig, AutoModel

    if cfg.text_encoder is None:
        assert cfg.text_config is not None
        enc = AutoModel.from_config(AutoConfig.for_model(**cfg.text_config))
        logger.warning("text encoder: RANDOM %s from model.text_config (tests / demo only)",
                       cfg.text_config.get("model_type"))
    else:
        folder = Path(resolve_text_encoder(cfg.text_encoder)).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(
                f"text encoder folder not found: {folder} (model.text_encoder; a local "
                "save_pretrained folder such as models/roberta-large)"
            )
        try:
            if pretrained:
                enc = AutoModel.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
            else:
                enc = AutoModel.from_config(AutoConfig.from_pretrained(str(folder), local_files_only=True))
        except OSError as e:
            raise FileNotFoundError(f"cannot load text encoder from folder {folder}: {e}") from e
        logger.info("text encoder: %s from %s (%s)", type(enc).__name__, folder,
                    "pretrained weights" if pretrained else "architecture only")
    if getattr(enc, "pooler", None) is not None:
        enc.pooler = None  # unused: its parameters would never get a gradient
    return enc.float()


class FacialMMT(nn.Module):
    """Multimodal (any non-empty subset of T, A, V) utterance emotion classifier.

    Sub-modules (only those of the configured modalities exist):
        ``text_encoder`` (pretrained PLM), ``text_proj`` (Linear(text hidden -> H) or Identity),
        ``audio_encoder`` / ``visual_encoder`` (:class:`SequenceEncoder`),
        ``cross`` (ModuleDict: ``"TA"`` and ``"TA_V"`` for T+A+V; the pair, e.g. ``"AV"``, for two
        modalities; empty for one), ``pool`` (:class:`AdditivePooling`), ``dropout``,
        ``classifier`` (Linear(H -> num_labels)).
    """

    def __init__(self, cfg: ModelConfig, *, pretrained_text: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.modalities = cfg.modality_tuple
        h = cfg.hidden
        if "T" in self.modalities:
            self.text_encoder = build_text_encoder(cfg, pretrained_text)
            text_hidden = int(self.text_encoder.config.hidden_size)
            if cfg.text_dim_proj:
                self.text_proj: nn.Module = nn.Linear(text_hidden, h)
            elif text_hidden == h:
                self.text_proj = nn.Identity()
            else:
                raise ValueError(f"model.text_dim_proj is false but the text encoder's hidden size "
                                 f"{text_hidden} differs from model.hidden {h}")
        if "A" in self.modalities:
            self.audio_encoder = SequenceEncoder(
                cfg.audio_dim, h, cfg.heads, cfg.ffn, cfg.audio_layers, cfg.max_audio_len,
                cfg.dropout, cfg.attn_dropout, cfg.layer_norm_eps, name="audio",
            )
        if "V" in self.modalities:
            self.visual_encoder = SequenceEncoder(
                cfg.visual_dim + cfg.fer_dim, h, cfg.heads, cfg.ffn, cfg.visual_layers, cfg.max_visual_len,
                cfg.dropout, cfg.attn_dropout, cfg.layer_norm_eps, name="visual",
            )

        def cmt() -> CrossModalEncoder:
            return CrossModalEncoder(h, cfg.cross_heads, cfg.ffn, cfg.cross_layers, cfg.cross_dropout, cfg.attn_dropout)

        self.cross = nn.ModuleDict()
        if len(self.modalities) == 3:
            self.cross["TA"] = cmt()  # stage 1: T <-> A (shared by both directions)
            self.cross["TA_V"] = cmt()  # stage 2: TA <-> V (shared)
        elif len(self.modalities) == 2:
            self.cross["".join(self.modalities)] = cmt()
        self.pool = AdditivePooling(h)
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(h, cfg.num_labels)

    # ------------------------------------------------------------------ branches

    def encode_text(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        utt_dialogue: torch.Tensor,
        utt_start: torch.Tensor,
        utt_end: torch.Tensor,
    ) -> Seq:
        """Dialogue rows -> per-utterance token sequences.

        input_ids, attention_mask (B, T); utt_dialogue, utt_start, utt_end (U,)
        -> text (U, Lt, H) with Lt = longest span of the batch (>= 1), text_mask (U, Lt) bool.
        The PLM runs once on the (B, T) rows; spans ``[start, end)`` are gathered (vectorised).
        ``model.text_pool`` ``mean`` / ``cls``: (U, 1, H), the span's mean / the row's first token
        (an utterance with an empty span is masked).
        """
        if not hasattr(self, "text_encoder"):
            raise RuntimeError(f"model built for {self.cfg.modalities} has no text branch")
        b, t = input_ids.shape
        am = attention_mask.bool()
        dia, start, end = utt_dialogue.long(), utt_start.long(), utt_end.long()
        lengths = end - start  # (U,)
        bad = (dia < 0) | (dia >= b) | (start < 0) | (end > t) | (lengths < 0)
        if bool(bad.any()):
            u = int(bad.nonzero()[0, 0])
            raise ValueError(f"utterance {u}: dialogue {int(dia[u])}, span [{int(start[u])}, {int(end[u])}) "
                             f"is outside input_ids of shape ({b}, {t})")
        longest = int(lengths.max()) if lengths.numel() else 0
        if longest > self.cfg.max_text_len:
            raise ValueError(f"an utterance spans {longest} tokens > model.max_text_len {self.cfg.max_text_len}")
        lt = max(1, longest)
        offs = torch.arange(lt, device=input_ids.device)  # (Lt,)
        mask = offs[None, :] < lengths[:, None]  # (U, Lt)
        idx = (start[:, None] + offs[None, :]).clamp(max=t - 1)  # (U, Lt)
        if not bool((am[dia[:, None], idx] | ~mask).all()):
            raise ValueError("an utterance span covers tokens that attention_mask marks as padding")
        hidden = self._encode_rows(input_ids, am)  # (B, T, Ht)
        pool = self.cfg.text_pool
        if pool == "cls":
            tok = hidden[dia, 0][:, None]  # (U, 1, Ht): the row's first token
        else:
            tok = hidden[dia[:, None], idx]  # (U, Lt, Ht)
        if pool != "span":
            if pool == "mean":
                w = mask.to(tok.dtype)[..., None]  # (U, Lt, 1)
                tok = (tok * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp(min=1.0)  # (U, 1, Ht)
            mask = lengths[:, None] > 0  # (U, 1)
        tok = self.text_proj(tok)  # (U, Lt, H), or (U, 1, H) pooled
        return tok.masked_fill(~mask[..., None], 0.0), mask

    def _encode_rows(self, input_ids: torch.Tensor, am: torch.Tensor) -> torch.Tensor:
        """The PLM on right-padded rows, in length-sorted chunks: (B, T) ids, (B, T) bool -> (B, T, Ht).

        Rows of a batch differ a lot in length (one row per utterance on MELD: 1.77x the real
        tokens when all are padded to the longest). The rows are sorted by length and cut into the
        chunks that minimise padded tokens plus a fixed cost per chunk (:func:`length_chunks`,
        :data:`CHUNK_COST_TOKENS` for the device); each chunk runs at its own longest length. The
        valid positions get what one padded pass would give (up to float rounding: padding is
        masked out of attention); padded positions hold no meaning (zeros past a chunk's length)
        and, as before, nothing reads them. Rows not right-padded (a hole in the mask) run in one
        pass.
        """
        b, t = input_ids.shape
        lengths = am.sum(1)  # (B,)
        order = torch.argsort(lengths)  # shortest first
        right_padded = bool((am == (torch.arange(t, device=am.device)[None, :] < lengths[:, None])).all())
        per_chunk = CHUNK_COST_TOKENS.get(input_ids.device.type, CHUNK_COST_TOKENS["cuda"])
        chunks = length_chunks(lengths[order].tolist(), per_chunk) if b > 1 and right_padded else [(0, b)]
        if len(chunks) == 1:
            return self.text_encoder(input_ids=input_ids, attention_mask=am.long()).last_hidden_state
        parts = []
        for i, j in chunks:
            rows, n = order[i:j], max(1, int(lengths[order[j - 1]]))
            h = self.text_encoder(input_ids=input_ids[rows, :n], attention_mask=am[rows, :n].long()).last_hidden_state
            parts.append(torch.nn.functional.pad(h, (0, 0, 0, t - n)))  # (rows, T, Ht)
        out = torch.cat(parts)  # (B, T, Ht) in sorted order
        return out[torch.argsort(order)]  # back to the batch's row order

    def encode_audio(self, audio: torch.Tensor, audio_mask: torch.Tensor) -> torch.Tensor:
        """audio (U, La, Da), audio_mask (U, La) bool -> (U, La, H) (padded frames zero)."""
        if not hasattr(self, "audio_encoder"):
            raise RuntimeError(f"model built for {self.cfg.modalities} has no audio branch")
        if audio.dim() != 3 or audio.shape[-1] != self.cfg.audio_dim:
            raise ValueError(f"audio must be (U, La, {self.cfg.audio_dim}), got {tuple(audio.shape)}")
        return self.audio_encoder(audio, audio_mask.bool())

    def encode_faces(
        self, visual: torch.Tensor, visual_mask: torch.Tensor, face_probs: torch.Tensor | None = None
    ) -> torch.Tensor:
        """visual (U, Lv, Dv), visual_mask (U, Lv) bool, face_probs (U, Lv, fer_dim) or None
        (required iff fer_dim > 0) -> (U, Lv, H) (padded frames zero)."""
        if not hasattr(self, "visual_encoder"):
            raise RuntimeError(f"model built for {self.cfg.modalities} has no visual branch")
        if visual.dim() != 3 or visual.shape[-1] != self.cfg.visual_dim:
            raise ValueError(f"visual must be (U, Lv, {self.cfg.visual_dim}), got {tuple(visual.shape)}")
        if self.cfg.fer_dim > 0:
            if face_probs is None:
                raise ValueError(
                    f"model.fer_dim is {self.cfg.fer_dim}: face_probs (U, Lv, {self.cfg.fer_dim}) is required"
                )
            if tuple(face_probs.shape) != (*visual.shape[:2], self.cfg.fer_dim):
                raise ValueError(
                    f"face_probs must be {(*visual.shape[:2], self.cfg.fer_dim)}, got {tuple(face_probs.shape)}"
                )
            visual = torch.cat([visual, face_probs.to(visual.dtype)], dim=-1)  # (U, Lv, Dv + F)
        elif face_probs is not None:
            raise ValueError("face_probs given but model.fer_dim is 0 (the model takes no FER input)")
        return self.visual_encoder(visual, visual_mask.bool())

    # ------------------------------------------------------------------ fusion and head

    def fuse(self, seqs: Mapping[str, Seq]) -> Seq:
        """Cross-modal fusion of the encoded modalities.

        seqs: ``{"T": (x (U, Lt, H), mask (U, Lt)), "A": ..., "V": ...}`` for the configured
        modalities. Returns (seq (U, L, H), mask (U, L)):
            one modality: that sequence as is;
            two X, Y (T-A-V order): ``[X<-Y ; Y<-X]`` through one shared cross-modal encoder;
            T+A+V: ``TA = [T<-A ; A<-T]`` (shared), then ``[TA<-V ; V<-TA]`` (shared),
            L = Lt + La + Lv.
        """
        missing = [m for m in self.modalities if m not in seqs]
        if missing:
            raise KeyError(f"fuse: missing modality {missing} (model uses {self.cfg.modalities})")

        def pair(x: Seq, y: Seq, cmt: nn.Module) -> Seq:
            (xs, xm), (ys, ym) = x, y
            out = torch.cat([cmt(xs, xm, ys, ym), cmt(ys, ym, xs, xm)], dim=1)  # (U, Lx + Ly, H)
            return out, torch.cat([xm, ym], dim=1)

        mods = self.modalities
        if len(mods) == 1:
            return seqs[mods[0]]
        if len(mods) == 2:
            return pair(seqs[mods[0]], seqs[mods[1]], self.cross["".join(mods)])
        ta = pair(seqs["T"], seqs["A"], self.cross["TA"])  # (U, Lt + La, H)
        return pair(ta, seqs["V"], self.cross["TA_V"])  # (U, Lt + La + Lv, H)

    def encode(self, batch: Mapping[str, Any]) -> dict[str, Seq]:
        """Run the branches of the configured modalities on ``batch`` -> ``{modality: (x, mask)}``."""

        def need(key: str) -> torch.Tensor:
            if key not in batch:
                raise KeyError(f"batch lacks {key!r} (model modalities {self.cfg.modalities})")
            return batch[key]

        seqs: dict[str, Seq] = {}
        if "T" in self.modalities:
            seqs["T"] = self.encode_text(need("input_ids"), need("attention_mask"), need("utt_dialogue"),
                                         need("utt_start"), need("utt_end"))
        if "A" in self.modalities:
            mask = need("audio_mask").bool()
            seqs["A"] = (self.encode_audio(need("audio"), mask), mask)
        if "V" in self.modalities:
            mask = need("visual_mask").bool()
            seqs["V"] = (self.encode_faces(need("visual"), mask, batch.get("face_probs")), mask)
        sizes = {m: int(x.shape[0]) for m, (x, _) in seqs.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"modalities disagree on the number of utterances: {sizes}")
        return seqs

    def features(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Pooled utterance vectors (U, H) (before dropout and the classifier)."""
        seq, mask = self.fuse(self.encode(batch))
        return self.pool(seq, mask)

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """batch (see module doc) -> logits (U, num_labels)."""
        return self.classifier(self.dropout(self.features(batch)))

    # ------------------------------------------------------------------ training helpers

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(pretrained text-encoder parameters, all other parameters), trainable ones only; for two
        learning rates. The text projection belongs to the new parameters."""
        enc = {id(p) for p in self.text_encoder.parameters()} if hasattr(self, "text_encoder") else set()
        pretrained, new = [], []
        for p in self.parameters():
            if p.requires_grad:
                (pretrained if id(p) in enc else new).append(p)
        return pretrained, new


def create_model(cfg: ModelConfig | Mapping[str, Any], *, pretrained_text: bool = True) -> FacialMMT:
    """Build :class:`FacialMMT` from a config (or its :meth:`ModelConfig.to_dict`).

    Restoring a checkpoint: ``create_model(ckpt["config"], pretrained_text=False)`` then
    ``load_state_dict(ckpt["state_dict"])`` (the text-encoder folder's config.json is still read).
    """
    if not isinstance(cfg, ModelConfig):
        cfg = ModelConfig.from_dict(dict(cfg))
    model = FacialMMT(cfg, pretrained_text=pretrained_text)
    pre, new = model.param_groups()
    logger.info("FacialMMT %s: %.1fM text-encoder + %.1fM new parameters", cfg.modalities,
                sum(p.numel() for p in pre) / 1e6, sum(p.numel() for p in new) / 1e6)
    return model
