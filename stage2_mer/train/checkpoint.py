"""Checkpoints: safetensors weights + one JSON, never pickled modules (FacialMMT pickled whole
modules, which runs code on load).

    <dir>/model.safetensors    the MER model's state dict
    <dir>/fer.safetensors      the facial-expression model's state dict (when there is one)
    <dir>/checkpoint.json      {"format": 1, "model": ModelConfig dict, "fer": FERConfig dict | null,
                                "labels": [...7 emotions...], "version": package version,
                                "params_hash": sha256 of the params sections used, "metrics": {...},
                                "epoch": n, "step": n, "seed": n}

Files are written to ``*.tmp`` and renamed, ``checkpoint.json`` last: a folder without it is
incomplete. Loading checks the labels, the format and that every tensor key matches.

The train stage also records ``inputs`` (how the data was made: ``text`` max_tokens and
speaker_names, ``audio`` / ``visual`` max_len, ``fer_filter`` tau, threshold and samples), and
:func:`checkpoint_train_config` makes a ``train`` config evaluate the checkpoint with exactly
those settings: the checkpoint wins over params.yaml, and every difference is returned (the
caller warns) so a changed params.yaml never silently changes what a checkpoint is scored on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from stage1_face_extraction.common.atomic import atomic_write_bytes
from stage1_face_extraction.common.labels import EMOTIONS

log = logging.getLogger(__name__)

__all__ = ["save_checkpoint", "read_checkpoint", "load_state", "load_models", "params_hash",
           "checkpoint_data_settings", "checkpoint_train_config", "CHECKPOINT_JSON", "SEEDS_JSON"]

FORMAT = 1
CHECKPOINT_JSON = "checkpoint.json"
#: in the checkpoint folder of a multi-seed run (``train.seeds``): the seeds, their dev scores and the
#: best one; each seed's checkpoint is ``seed-<s>/``
SEEDS_JSON = "seeds.json"


def params_hash(sections: dict[str, Any]) -> str:
    """sha256 of the params sections (canonical JSON), to tell which settings made a checkpoint."""
    return hashlib.sha256(json.dumps(sections, sort_keys=True, default=str).encode()).hexdigest()


def _state_bytes(module) -> bytes:
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    return save(state)


def save_checkpoint(folder: str | Path, model, model_config: dict, fer=None, fer_config: dict | None = None,
                    **meta: Any) -> Path:
    """Write a checkpoint folder (module docstring); ``meta`` goes into checkpoint.json."""
    import stage2_mer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CHECKPOINT_JSON).unlink(missing_ok=True)  # incomplete until rewritten
    atomic_write_bytes(folder / "model.safetensors", _state_bytes(model))
    if fer is not None:
        atomic_write_bytes(folder / "fer.safetensors", _state_bytes(fer))
    else:
        (folder / "fer.safetensors").unlink(missing_ok=True)
    info = {"format": FORMAT, "model": model_config, "fer": fer_config if fer is not None else None,
            "labels": list(EMOTIONS), "version": stage2_mer.__version__, **meta}
    atomic_write_bytes(
        folder / CHECKPOINT_JSON, (json.dumps(info, indent=2, sort_keys=True, default=str) + "\n").encode()
    )
    return folder


def read_checkpoint(folder: str | Path) -> dict:
    """The checkpoint.json of ``folder`` (clear errors for a missing / incomplete / foreign folder)."""
    folder = Path(folder)
    path = folder / CHECKPOINT_JSON
    if not path.is_file():
        raise FileNotFoundError(f"no {CHECKPOINT_JSON} in {folder} (not a finished checkpoint folder)")
    info = json.loads(path.read_text(encoding="utf-8"))
    if info.get("format") != FORMAT:
        raise ValueError(f"{path}: unsupported checkpoint format {info.get('format')!r}")
    if list(info.get("labels") or []) != list(EMOTIONS):
        raise ValueError(f"{path}: labels {info.get('labels')} differ from {list(EMOTIONS)}")
    return info


def load_state(module, path: str | Path) -> None:
    """Load a safetensors state dict into ``module``; every key must match (clear error otherwise)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint weights not found: {path}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable safetensors file: {exc}") from exc
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path} does not fit {type(module).__name__}: missing {sorted(missing)[:5]}, "
                         f"unexpected {sorted(unexpected)[:5]}")


def load_models(folder: str | Path):
    """``(model, model_cfg, fer or None, fer_cfg or None, info)`` rebuilt from a checkpoint folder:
    the architectures from its ``checkpoint.json`` (never from params: a checkpoint runs as it was
    trained), the weights from its safetensors files."""
    from stage1_face_extraction.common.config import from_dict
    from stage2_mer.model import ModelConfig, create_model

    info = read_checkpoint(folder)
    model_cfg = from_dict(ModelConfig, info["model"], "checkpoint.model")
    model = create_model(model_cfg, pretrained_text=False)  # architecture only: the weights come next
    load_state(model, Path(folder) / "model.safetensors")
    fer = fer_cfg = None
    if info.get("fer"):
        import warnings

        from stage2_mer.fer import FERConfig, build_fer

        # the architecture from the checkpoint's JSON, the weights from its fer.safetensors; a
        # checkpoint from before fer.channel_order was trained on RGB input
        fer_cfg = from_dict(FERConfig, {"channel_order": "rgb", **info["fer"], "random_init": True, "checkpoint": None},
                            "checkpoint.fer")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fer = build_fer(fer_cfg)
        load_state(fer, Path(folder) / "fer.safetensors")
    return model, model_cfg, fer, fer_cfg, info


#: ``train`` keys recorded under checkpoint.json ``inputs``: (record, key in the record, train key).
_RECORDED = (
    ("text", "max_tokens", "max_tokens"),
    ("text", "speaker_names", "speaker_names"),
    ("text", "context", "text_context"),
    ("audio", "max_len", "max_audio_len"),
    ("visual", "max_len", "max_visual_len"),
    ("fer_filter", "tau", "fer_tau"),
    ("fer_filter", "threshold", "fer_threshold"),
    ("fer_filter", "samples", "fer_samples"),
)


def checkpoint_data_settings(info: dict) -> dict[str, Any]:
    """The ``train`` values a checkpoint's ``inputs`` record fixes (only those it records)."""
    inputs = info.get("inputs") or {}
    out = {key: inputs[rec][sub] for rec, sub, key in _RECORDED
           if isinstance(inputs.get(rec), dict) and inputs[rec].get(sub) is not None}
    if isinstance(inputs.get("text"), dict):
        out.setdefault("text_context", "dialogue")  # recorded only when not the default (and before it existed)
    return out


def checkpoint_train_config(cfg, info: dict, where: str | Path = "checkpoint"):
    """``(cfg with the checkpoint's data settings, differences)``: ``differences`` maps each train
    key whose ``cfg`` value differs from the checkpoint's to ``(cfg value, checkpoint value)`` (a
    length rule such as ``mean+3std`` against the number it gave is not a difference). Keys the
    checkpoint does not record (older checkpoints) keep ``cfg``'s values. Each difference, and a
    FER checkpoint without frame-filter settings, is logged as a warning naming ``where``."""
    recorded = checkpoint_data_settings(info)
    diffs = {}
    for key, value in recorded.items():
        mine = getattr(cfg, key)
        if isinstance(mine, str) and key in ("max_audio_len", "max_visual_len"):
            continue  # a rule, resolved by the checkpoint's train lengths
        if mine != value:
            diffs[key] = (mine, value)
            log.warning("train.%s: params.yaml has %r but %s was trained with %r; using %r", key, mine, where,
                        value, value)
    if info.get("fer") and "fer_samples" not in recorded:
        log.warning("%s does not record its frame-filter settings (made before they were recorded): params.yaml's "
                    "train.fer_tau, fer_threshold and fer_samples are used", where)
    return dataclasses.replace(cfg, **recorded), diffs
