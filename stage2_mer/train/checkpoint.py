"""Checkpoints: safetensors weights + one JSON, never pickled modules (FacialMMT defect §8.13).

    <dir>/model.safetensors    the MER model's state dict
    <dir>/fer.safetensors      the facial-expression model's state dict (when there is one)
    <dir>/checkpoint.json      {"format": 1, "model": ModelConfig dict, "fer": FERConfig dict | null,
                                "labels": [...7 emotions...], "version": package version,
                                "params_hash": sha256 of the params sections used, "metrics": {...},
                                "epoch": n, "step": n, "seed": n}

Files are written to ``*.tmp`` and renamed, ``checkpoint.json`` last: a folder without it is
incomplete. Loading checks the labels, the format and that every tensor key matches.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from stage1_face_extraction.meld import EMOTIONS
from stage1_face_extraction.store import atomic_write_bytes

log = logging.getLogger(__name__)

__all__ = ["save_checkpoint", "read_checkpoint", "load_state", "params_hash", "CHECKPOINT_JSON"]

FORMAT = 1
CHECKPOINT_JSON = "checkpoint.json"


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
    atomic_write_bytes(folder / CHECKPOINT_JSON, (json.dumps(info, indent=2, sort_keys=True, default=str) + "\n").encode())
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
