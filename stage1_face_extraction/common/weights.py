"""Reading local weight files safely: safetensors, or torch files with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path


def load_state_dict(path: str | Path) -> dict:
    """A state dict from a ``.safetensors`` file or a torch file (``weights_only=True``, no pickle).

    A torch file holding ``{"state_dict": ...}`` or ``{"model": ...}`` is unwrapped.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(sd).__name__}")
    return sd
