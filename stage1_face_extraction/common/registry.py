"""One small registry type for every swappable component kind (timm style).

Each kind (face detectors, active-speaker scorers, identity embedders, ...) owns one
:class:`Registry`; its module exposes ``register_<kind>`` / ``create_<kind>`` / ``list_<kind>s``
built on it. Unknown names fail with the list of registered names; unknown config keys fail with
the list of valid keys; :meth:`Registry.validate` makes both checks without building anything
(``facialmmt doctor`` uses it).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from stage1_face_extraction.common.config import ConfigError, from_dict

T = TypeVar("T", bound=type)


def init_keys(cls: type) -> set[str]:
    """Keyword arguments accepted by ``cls``'s constructor and those of its bases."""
    keys: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self":
                keys.add(p.name)
    return keys


class Registry(Generic[T]):
    """Name -> class map for subclasses of ``base``; ``kind`` names them in error messages.

    A component's config is its constructor's keyword arguments, or, with ``config_of``, one
    dataclass the constructor takes (``config_of(cls)``, e.g. ``cls.Config``; its values are
    checked too, messages prefixed ``<where>.<name>``).
    """

    def __init__(self, kind: str, plural: str, base: type, config_of: Callable[[type], type] | None = None,
                 where: str = "") -> None:
        self.kind, self.plural, self.base = kind, plural, base
        self.config_of, self.where = config_of, where
        self._classes: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: make a subclass of ``base`` available as ``name`` (sets ``cls.name``)."""

        def deco(cls: T) -> T:
            if not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise TypeError(f"registering {self.kind} {name!r} needs a {self.base.__name__} subclass, got {cls!r}")
            if name in self._classes and self._classes[name] is not cls:
                raise ValueError(f"{self.kind} name {name!r} is already registered by {self._classes[name]!r}")
            cls.name = name
            self._classes[name] = cls
            return cls

        return deco

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._classes)

    def get(self, name: str) -> T:
        """The class registered as ``name``; an unknown name raises ConfigError (a ValueError)."""
        try:
            return self._classes[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; registered {self.plural}: {', '.join(self.names())}"
            ) from None

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register temporary components use this)."""
        self._classes.pop(name, None)

    def check_keys(self, name: str, given: Iterable[str], valid: Iterable[str]) -> None:
        """Raise ConfigError when ``given`` holds keys that are not in ``valid``."""
        valid = set(valid)
        unknown = sorted(set(given) - valid)
        if unknown:
            raise ConfigError(
                f"unknown config key(s) for {self.kind} {name!r}: {', '.join(unknown)}; "
                f"valid keys: {', '.join(sorted(valid)) or '(none)'}"
            )

    def validate(self, name: str, cfg: Mapping[str, Any], where: str | None = None) -> Any:
        """Check that ``name`` is registered and ``cfg`` fits it, building nothing: ConfigError lists
        the registered names or the valid keys. Returns what the constructor takes: the keyword
        dict, or with ``config_of`` the filled config dataclass (``where`` overrides the prefix of its
        messages)."""
        cls = self.get(name)
        if self.config_of is not None:
            return from_dict(self.config_of(cls), dict(cfg), f"{self.where if where is None else where}.{name}")
        self.check_keys(name, cfg, init_keys(cls))
        return dict(cfg)

    def create(self, name: str, cfg: Mapping[str, Any]) -> Any:
        """Build ``name`` from ``cfg`` after :meth:`validate`."""
        made = self.validate(name, cfg)
        return self.get(name)(made) if self.config_of is not None else self.get(name)(**made)
