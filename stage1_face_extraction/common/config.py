"""Strict typed configuration from ``params.yaml``.

Every stage reads ONE section of ``params.yaml`` into a dataclass. Unknown keys fail loudly (a typo
in params.yaml must never be silently ignored), nested dataclasses are filled recursively, and the
error names the offending dotted key.

    cfg = load_section("params.yaml", "demo", DemoConfig)

Runner knobs (how fast a stage runs, never what it writes: worker counts, the executor, Ray,
process recycling) live apart, in the ``runtime`` section (``runtime.<section>.<key>``,
keys in :data:`RUNTIME_KEYS`), which no ``dvc.yaml`` stage lists under ``params:``: changing them
re-runs nothing. :func:`load_section` merges them into the section's dataclass; such a key written
in the section itself, or an unknown key under ``runtime``, fails loudly.
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


#: ``runtime.<section>`` keys: runner knobs merged into that section's dataclass (see the module docstring).
RUNTIME_KEYS: dict[str, tuple[str, ...]] = {
    # not stage1.torch_threads: 2 torch threads move MTCNN boxes and speaking scores in the 4th
    # decimal, enough to change the crops (tests/test_faults.py), so it stays in the hashed section
    "stage1": ("workers", "worker_max_tasks", "executor", "ray"),
    "demo": ("workers",),
    "features.visual": ("workers",),
    "features.audio": ("workers",),
}


def _check_runtime(node: Any, prefix: str) -> None:
    """Unknown keys anywhere under ``runtime`` fail (with the valid ones)."""
    if node is None:
        return
    if not isinstance(node, dict):
        raise ConfigError(f"runtime{prefix}: expected a mapping, got {type(node).__name__}")
    here = prefix.lstrip(".")
    if here in RUNTIME_KEYS:
        valid = set(RUNTIME_KEYS[here])
    else:
        depth = len(here.split(".")) if here else 0
        valid = {s.split(".")[depth] for s in RUNTIME_KEYS if here == "" or s.startswith(here + ".")}
    unknown = sorted(set(node) - valid)
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(f'runtime{prefix}.{k}' for k in unknown)}; "
                          f"valid keys for runtime{prefix}: {', '.join(sorted(valid))}")
    if here not in RUNTIME_KEYS:
        for key, child in node.items():
            _check_runtime(child, f"{prefix}.{key}")


def with_runtime(params: dict[str, Any], section: str, node: Any) -> Any:
    """``node`` (the mapping of params section ``section``) with its ``runtime.<section>`` runner
    knobs merged in. A runner knob written in the section itself raises :class:`ConfigError`
    (it would be hashed by the stage's DVC params and re-run it), as does any unknown ``runtime`` key."""
    _check_runtime(params.get("runtime"), "")
    keys = RUNTIME_KEYS.get(section)
    if not keys or (node is not None and not isinstance(node, dict)):
        return node
    misplaced = sorted(set(node or {}) & set(keys))
    if misplaced:
        raise ConfigError(
            f"{', '.join(f'{section}.{k}' for k in misplaced)}: a runner knob (how fast, never what a stage "
            f"writes); set it as {', '.join(f'runtime.{section}.{k}' for k in misplaced)} in params.yaml "
            "(no DVC stage hashes the runtime section, so changing it re-runs nothing)"
        )
    rt: Any = params.get("runtime") or {}
    for part in section.split("."):
        rt = (rt or {}).get(part)
    return {**(node or {}), **(rt or {})}


def without_runtime(section: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """A section's plain dict minus its runner knobs (for run fingerprints: they change no byte)."""
    return {k: v for k, v in cfg.items() if k not in RUNTIME_KEYS.get(section, ())}


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
    """Build dataclass ``cls`` from ``data``; unknown keys raise :class:`ConfigError`, and so do the
    keys ``cls.MOVED_KEYS`` names (with the key to write instead).

    Fields that are themselves dataclasses are built recursively from nested mappings. Missing keys
    take the dataclass defaults.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    _check_moved(cls, data, where)
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


def _check_moved(cls: type, data: dict[str, Any], where: str) -> None:
    """A key that ``cls.MOVED_KEYS`` lists (``{"dotted.key": "key to write instead"}``, both relative
    to ``cls``) raises :class:`ConfigError` naming both: a key that would be accepted and ignored."""
    prefix = f"{where}." if where else ""
    for dotted, right in getattr(cls, "MOVED_KEYS", {}).items():
        *parents, last = dotted.split(".")
        node: Any = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node:
            raise ConfigError(f"{prefix}{dotted} is not a config key (it would be ignored): "
                              f"set {prefix}{right} instead")


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
    params = node = load_params(path)
    for i, part in enumerate(section.split(".")):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(section.split(".")[:i]) or str(path)
            have = ", ".join(sorted(node)) if isinstance(node, dict) else "not a mapping"
            raise ConfigError(f"{path}: no section '{section}' ({where}: {have})")
        node = node[part]
    return from_dict(cls, with_runtime(params, section, node), section)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-dict view of a config dataclass (for logs, manifests and checkpoints)."""
    return dataclasses.asdict(cfg)
