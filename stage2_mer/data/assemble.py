"""The three MELD splits as dialogue datasets, from the stage outputs a model reads.

    folders = InputFolders(audio="data/features/audio/wav2vec2", visual="data/features/visual/x",
                           faces="data/faces")
    model_cfg = with_feature_dims(model_cfg, folders)        # the features decide the input dims
    data, pad = build_data(folders, model_cfg, train_cfg, table)
    record = input_record(folders, model_cfg, train_cfg, data["train"])   # checkpoint.json "inputs"

``audio`` / ``visual`` are feature folders of the features stage (``<folder>/<split>/``), ``faces``
the stage-1 output (crops for the facial-expression network); each is needed only when the
model's modalities use it. Length caps are ``train.max_audio_len`` / ``train.max_visual_len``,
resolved on the train split for ``mean+3std``. Any object with ``audio``, ``visual`` and
``faces`` attributes (an argparse namespace) serves as the folders.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from stage1_face_extraction.common.config import ConfigError

log = logging.getLogger(__name__)

__all__ = ["InputFolders", "build_data", "input_record", "with_feature_dims"]

SPLITS = ("train", "dev", "test")
#: model modality letter -> (folder attribute, ModelConfig dimension key)
_FEATURES = (("A", "audio", "audio_dim"), ("V", "visual", "visual_dim"))


@dataclass(frozen=True)
class InputFolders:
    """Where the model's inputs are: feature folders and the stage-1 face folder (None: not used)."""

    audio: str | None = None
    visual: str | None = None
    faces: str | None = None


def _feature_folders(folders, model_cfg) -> dict[str, tuple[Path, str]]:
    """``{letter: (folder, dim key)}`` of the model's feature modalities; a missing one is a ConfigError."""
    mods = set(model_cfg.modalities.split("+"))
    out = {}
    for letter, attr, key in _FEATURES:
        if letter not in mods:
            continue
        folder = getattr(folders, attr)
        if not folder:
            raise ConfigError(f"modality {letter} needs --{attr}")
        out[letter] = (Path(folder), key)
    return out


def with_feature_dims(model_cfg, folders):
    """``model_cfg`` with ``audio_dim`` / ``visual_dim`` set to the feature folders' dimensions (the
    features decide, e.g. fbank's 80 instead of wav2vec2's 768); each change is logged."""
    from stage2_mer.features import FeatureReader

    changes = {}
    for folder, key in _feature_folders(folders, model_cfg).values():
        dim = FeatureReader(folder / "train").dim
        if dim != getattr(model_cfg, key):
            log.info("model.%s %d -> %d (the dimension of %s)", key, getattr(model_cfg, key), dim, folder)
            changes[key] = dim
    return dataclasses.replace(model_cfg, **changes) if changes else model_cfg


def _tokenizer(model_cfg, train_cfg):
    """The dialogue tokenizer of the model's text encoder folder (None without the T modality)."""
    if "T" not in model_cfg.modalities.split("+"):
        return None
    from transformers import AutoTokenizer

    from stage2_mer.model.facialmmt import resolve_text_encoder

    from .text import DialogueTokenizer

    src = model_cfg.text_encoder
    if src is None:
        raise ConfigError("model.text_encoder is needed for the T modality (a local transformers folder)")
    hf = AutoTokenizer.from_pretrained(resolve_text_encoder(src), local_files_only=True)
    return DialogueTokenizer(hf, max_tokens=train_cfg.max_tokens, speaker_names=train_cfg.speaker_names,
                             context=train_cfg.text_context)


def build_data(folders, model_cfg, train_cfg, table):
    """``({split: MELDDialogues}, tokenizer pad id)`` with the readers the model's modalities need."""
    from stage1_face_extraction.store import FaceShardReader
    from stage2_mer.features import FeatureReader
    from stage2_mer.features.store import length_cap

    from .dialogues import MELDDialogues

    tok = _tokenizer(model_cfg, train_cfg)
    feats = _feature_folders(folders, model_cfg)
    rules = {"A": train_cfg.max_audio_len, "V": train_cfg.max_visual_len}
    caps = {}
    for letter, (folder, _) in feats.items():
        lengths = [n for n in FeatureReader(folder / "train").lengths() if n > 0]
        caps[letter] = length_cap(lengths or [1], rules[letter])
    log.info("length caps: %s", caps)
    use_faces = "V" in feats and model_cfg.fer_dim > 0 and folders.faces
    data = {}
    for split in SPLITS:
        data[split] = MELDDialogues(
            table,
            split,
            tokenizer=tok,
            audio=FeatureReader(feats["A"][0] / split) if "A" in feats else None,
            visual=FeatureReader(feats["V"][0] / split) if "V" in feats else None,
            faces=FaceShardReader(Path(folders.faces) / split) if use_faces else None,
            max_audio=caps.get("A"),
            max_visual=caps.get("V"),
        )
    return data, tok.pad if tok is not None else 0


def input_record(folders, model_cfg, train_cfg, train_data) -> dict:
    """How the model's inputs were made, for ``checkpoint.json`` (``facialmmt predict`` rebuilds one
    clip's inputs from it): per feature modality the extractor and its options (the feature
    folder's ``meta.json``), the stored dtype, the dim and the length cap; the text settings."""
    from stage2_mer.features import FeatureReader

    mods = set(model_cfg.modalities.split("+"))
    rec: dict = {}
    if "T" in mods:
        rec["text"] = {"max_tokens": train_cfg.max_tokens, "speaker_names": train_cfg.speaker_names}
        if train_cfg.text_context != "dialogue":  # recorded when not the default (checkpoint_data_settings)
            rec["text"]["context"] = train_cfg.text_context
    if "V" in mods and model_cfg.fer_dim > 0:
        rec["fer_filter"] = {"tau": train_cfg.fer_tau, "threshold": train_cfg.fer_threshold,
                             "samples": train_cfg.fer_samples}
    caps = {"audio": train_data.max_audio, "visual": train_data.max_visual}
    for letter, attr, _ in _FEATURES:
        if letter in mods:
            meta = FeatureReader(Path(getattr(folders, attr)) / "train").meta
            info = meta.get("info") or {}
            rec[attr] = {"extractor": info.get("extractor"), "options": info.get("options") or {},
                         "dtype": meta.get("dtype"), "dim": meta.get("dim"), "max_len": caps[attr]}
    return rec
