"""Strict typed configuration from ``params.yaml``.

Every stage reads ONE section of ``params.yaml`` into a dataclass. Unknown keys fail loudly (a typo
in params.yaml must never be silently ignored), nested dataclasses are filled recursively, and the
error names the offending dotted key.

    cfg = load_section("params.yaml", "demo", DemoConfig)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A params.yaml section does not match its dataclass."""


def load_params(path: str | Path) -> dict[str, Any]:
    """Read a whole params.yaml file (a mapping of sections)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path}")
    with path.open("r", encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(data).__name__}")
    return data


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys raise :class:`ConfigError`.

    Fields that are themselves dataclasses are built recursively from nested mappings. Missing keys
    take the dataclass defaults.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
            f"valid keys for {where or cls.__name__}: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        sub = _dataclass_type(hints.get(name))
        child = f"{where}.{name}" if where else name
        if sub is not None and (isinstance(value, dict) or value is None):
            kwargs[name] = from_dict(sub, value, child)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _dataclass_type(hint: Any) -> type | None:
    """The dataclass inside ``hint`` (``X``, ``X | None``, ``Optional[X]``), else None."""
    if hint is None:
        return None
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg) and isinstance(arg, type):
                return arg
    return None


def load_section(path: str | Path, section: str, cls: type[T]) -> T:
    """Read section ``section`` of params file ``path`` into dataclass ``cls``; a dotted ``section``
    (``features.visual``) names a nested mapping."""
    node: Any = load_params(path)
    for i, part in enumerate(section.split(".")):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(section.split(".")[:i]) or str(path)
            have = ", ".join(sorted(node)) if isinstance(node, dict) else "not a mapping"
            raise ConfigError(f"{path}: no section '{section}' ({where}: {have})")
        node = node[part]
    return from_dict(cls, node, section)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-dict view of a config dataclass (for logs, manifests and checkpoints)."""
    return dataclasses.asdict(cfg)
