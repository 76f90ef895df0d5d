"""``ModelConfig``: the ``model`` section of ``params.yaml`` (architecture of the MER model).

    cfg = load_section("params.yaml", "model", ModelConfig)    # unknown keys -> ConfigError
    ckpt = {"config": cfg.to_dict(), "state_dict": model.state_dict()}
    cfg = ModelConfig.from_dict(ckpt["config"])               # exact round trip (JSON-able)

Defaults are the FacialMMT sizes: RoBERTa-large text encoder projected to 768,
5 audio / 2 visual BERT-style blocks, 2 cross-modal layers per stage, 7 MELD classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from stage1_face_extraction.common.config import ConfigError
from stage1_face_extraction.common.config import from_dict as _from_dict

#: canonical order of the modality letters (text, audio, visual)
MODALITY_ORDER = ("T", "A", "V")
#: ``model.text_pool`` values (see :class:`ModelConfig`)
TEXT_POOLS = ("span", "mean", "cls")


def parse_modalities(spec: str) -> tuple[str, ...]:
    """``"T+A+V"`` -> ``("T", "A", "V")``: letters T, A, V joined by ``+``, each at most once, in
    any order (returned in canonical T, A, V order); anything else raises :class:`ConfigError`."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"model.modalities must be a non-empty string like 'T+A+V', got {spec!r}")
    parts = [p.strip().upper() for p in spec.split("+")]
    bad = [p for p in parts if p not in MODALITY_ORDER]
    if bad:
        raise ConfigError(f"model.modalities {spec!r}: unknown modality {bad[0]!r} (use T, A, V joined by '+')")
    if len(set(parts)) != len(parts):
        raise ConfigError(f"model.modalities {spec!r}: a modality appears twice")
    return tuple(m for m in MODALITY_ORDER if m in parts)


@dataclass
class ModelConfig:
    """Architecture of :class:`stage2_mer.model.FacialMMT`.

    Attributes:
        modalities: non-empty combination of ``T`` (text), ``A`` (audio), ``V`` (visual) joined by
            ``+`` (any order; stored canonically as T+A+V order). Branches of unused modalities
            are not built.
        text_encoder: local transformers folder (``save_pretrained`` output, e.g.
            ``models/roberta-large``) loaded with ``AutoModel.from_pretrained(local_files_only=True)``
            and fine-tuned. ``None`` = build a RANDOM encoder from ``text_config`` (tests / demo).
        text_config: kwargs of ``transformers.AutoConfig.for_model`` (must hold ``model_type``);
            only allowed when ``text_encoder`` is ``None``.
        text_dim_proj: ``True`` = Linear(text hidden -> ``hidden``) on every token (as FacialMMT, also when
            the sizes agree); ``False`` = no projection (the encoder's hidden size must equal
            ``hidden``).
        text_pool: what the text branch passes on per utterance: ``span`` (default) every token
            of the utterance's span (U, Lt, H), pooled with the other modalities by the fusion and
            the additive pooling; ``mean`` the mean of the span's tokens; ``cls`` the first token of
            the utterance's row (its [CLS]; only meaningful with ``train.text_context: past:N``,
            where every utterance has its own row; with ``dialogue`` all utterances of a dialogue
            would share it). ``mean`` and ``cls`` give a length-1 sequence (U, 1, H).
        hidden, heads, ffn: width, attention heads and FFN width of the audio / visual blocks.
        audio_layers, visual_layers: post-LN BERT-style blocks per branch (0 = projection only).
        cross_layers, cross_heads: layers and heads of each cross-modal transformer stage.
        dropout: hidden dropout of the BERT-style blocks and of the pooled vector before the
            classifier.
        attn_dropout: dropout on attention probabilities (all attentions).
        cross_dropout: embedding / residual / FFN dropout inside the cross-modal transformers
            (FacialMMT: 0).
        layer_norm_eps: LayerNorm epsilon of the BERT-style blocks (cross-modal LayerNorms use the
            PyTorch default 1e-5, like MulT).
        audio_dim, visual_dim: per-frame input feature sizes (wav2vec2-base 768, InceptionResNetV1
            512).
        fer_dim: size of the per-frame facial-expression distribution concatenated to the visual
            features (7); 0 = the unimodal visual model (no FER input).
        num_labels: number of emotion classes.
        max_audio_len, max_visual_len: sizes of the learned position tables. Positions count only
            VALID frames, so a padded width above the table size is fine; an utterance with more
            valid frames than the table raises ``ValueError`` (cap lengths in the data pipeline,
            ``features.<modality>.max_len``).
        max_text_len: longest utterance token span accepted (the text branch has no learned table:
            the PLM has its own positions); a longer span raises ``ValueError``.
    """

    modalities: str = "T+A+V"
    text_encoder: str | None = "models/roberta-large"
    text_config: dict[str, Any] | None = None
    text_dim_proj: bool = True
    text_pool: str = "span"
    hidden: int = 768
    heads: int = 12
    ffn: int = 3072
    audio_layers: int = 5
    visual_layers: int = 2
    cross_layers: int = 2
    cross_heads: int = 12
    dropout: float = 0.1
    attn_dropout: float = 0.1
    cross_dropout: float = 0.0
    layer_norm_eps: float = 1e-12
    audio_dim: int = 768
    visual_dim: int = 512
    fer_dim: int = 7
    num_labels: int = 7
    max_audio_len: int = 1024
    max_visual_len: int = 256
    max_text_len: int = 512

    def __post_init__(self) -> None:
        self.modalities = "+".join(parse_modalities(self.modalities))
        for name, low in (
            ("hidden", 1), ("heads", 1), ("ffn", 1), ("audio_layers", 0), ("visual_layers", 0),
            ("cross_layers", 1), ("cross_heads", 1), ("audio_dim", 1), ("visual_dim", 1),
            ("fer_dim", 0), ("num_labels", 1), ("max_audio_len", 1), ("max_visual_len", 1),
            ("max_text_len", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"model.{name} must be an int >= {low}, got {value!r}")
        for name in ("dropout", "attn_dropout", "cross_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ConfigError(f"model.{name} must be a number in [0, 1), got {value!r}")
            setattr(self, name, float(value))
        eps = self.layer_norm_eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ConfigError(f"model.layer_norm_eps must be > 0, got {eps!r}")
        self.layer_norm_eps = float(eps)
        if self.hidden % self.heads:
            raise ConfigError(f"model.hidden ({self.hidden}) must be divisible by model.heads ({self.heads})")
        if self.hidden % self.cross_heads:
            raise ConfigError(
                f"model.hidden ({self.hidden}) must be divisible by model.cross_heads ({self.cross_heads})"
            )
        if self.text_pool not in TEXT_POOLS:
            raise ConfigError(f"model.text_pool must be one of {TEXT_POOLS}, got {self.text_pool!r}")
        if not isinstance(self.text_dim_proj, bool):
            raise ConfigError(f"model.text_dim_proj must be true or false, got {self.text_dim_proj!r}")
        if self.text_encoder is not None and (not isinstance(self.text_encoder, str) or not self.text_encoder):
            raise ConfigError(f"model.text_encoder must be a folder path or null, got {self.text_encoder!r}")
        if self.text_config is not None:
            if not isinstance(self.text_config, dict) or "model_type" not in self.text_config:
                raise ConfigError("model.text_config must be a mapping with a 'model_type' key "
                                  f"(kwargs of AutoConfig.for_model), got {self.text_config!r}")
            if self.text_encoder is not None:
                raise ConfigError("model.text_config builds a random text encoder and needs "
                                  f"model.text_encoder: null (got text_encoder={self.text_encoder!r})")
            self.text_config = dict(self.text_config)
        if "T" in self.modality_tuple and self.text_encoder is None and self.text_config is None:
            raise ConfigError(f"model.modalities {self.modalities!r} uses text: set model.text_encoder "
                              "(a local transformers folder) or model.text_config (random encoder)")

    @property
    def modality_tuple(self) -> tuple[str, ...]:
        """The used modalities in canonical order, e.g. ``("T", "A", "V")``."""
        return parse_modalities(self.modalities)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (for checkpoints); :meth:`from_dict` rebuilds an equal config."""
        data = dataclasses.asdict(self)
        if data["text_config"] is not None:
            data["text_config"] = dict(data["text_config"])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, where: str = "model") -> ModelConfig:
        """Strict inverse of :meth:`to_dict` (unknown keys raise :class:`ConfigError`)."""
        return _from_dict(cls, data, where)
