"""Each component kind locates the local files its config needs, without loading anything.

Every registered component class (face detectors, speaking scorers, identity embedders, feature
extractors) answers :meth:`LocatesWeights.local_weights` for a config: what it found, as report
lines (:class:`WeightCheck`), or an exception (FileNotFoundError / ValueError) naming what is
missing, for which :attr:`LocatesWeights.weights_fix` says how to fix it. ``facialmmt doctor``
asks every configured component and reports the answers; it has no rule of its own per component.
The default answer checks the config's path-like keys (``weights``, ``model``, ...).

``place`` (:class:`Place`) resolves configured paths: relative ones against the folder the run
starts in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = ["LocalWeights", "LocatesWeights", "Place", "WeightCheck", "fmt_bytes", "folder_bytes", "path_keys"]

OK, WARN, FAIL = "OK", "WARN", "FAIL"
#: config keys that name a local file or folder
PATH_KEYS = ("weights", "model", "checkpoint", "model_dir", "cascade")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".h5", ".msgpack")


class Place(Protocol):
    """Where configured paths are resolved (``facialmmt doctor``'s checkup is one)."""

    root: Path

    def path(self, value: str | os.PathLike) -> Path: ...

    def show(self, value: str | os.PathLike) -> str: ...


@dataclass(frozen=True)
class WeightCheck:
    """One finding: ``status`` OK, WARN or FAIL, a message, a fix, and the suffix of the setting it
    is about (``.weights``, ``.random_init``, ...; empty: the component itself)."""

    status: str
    message: str
    fix: str = ""
    suffix: str = ""


@dataclass
class LocalWeights:
    """A component's answer: its findings, and for feature extractors the feature dimension and
    the parameter count its files show (None: not known from the files)."""

    checks: list[WeightCheck] = field(default_factory=list)
    dim: int | None = None
    params: float | None = None


def path_keys(name: str, cfg: dict[str, Any], place: Place) -> LocalWeights:
    """The default answer: every path-like key of ``cfg`` must exist."""
    paths = {k: v for k, v in cfg.items() if k in PATH_KEYS and isinstance(v, str)}
    missing = [f"{k}: {place.show(v)}" for k, v in paths.items() if not place.path(v).exists()]
    if missing:
        return LocalWeights([WeightCheck(FAIL, f"{name}: {', '.join(missing)} does not exist",
                                         "place the file there or fix the path")])
    return LocalWeights([WeightCheck(OK, f"{name}: " + (", ".join(f"{k}: {v}" for k, v in paths.items())
                                                          or "no local files"))])


class LocatesWeights:
    """Mixin of every component base class: :meth:`local_weights` and its :attr:`weights_fix`."""

    name: str = ""
    #: how to fix what :meth:`local_weights` raises
    weights_fix: str = "place the file there or fix the path"

    @classmethod
    def local_weights(cls, cfg: dict[str, Any], place: Place, key: str) -> LocalWeights:
        """The local files config ``cfg`` needs (``key``: the setting's name, for messages)."""
        return path_keys(cls.name, cfg, place)


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def folder_bytes(path: Path, suffixes: tuple[str, ...] = WEIGHT_SUFFIXES) -> int:
    """Total size of the weight files directly in ``path`` (a save_pretrained folder)."""
    try:
        return sum(f.stat().st_size for f in path.iterdir() if f.is_file() and f.suffix in suffixes)
    except OSError:
        return 0
