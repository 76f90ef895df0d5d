"""Strict config loading: unknown keys fail loudly, nested sections are typed."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from stage1_face_extraction.params import ConfigError, from_dict, load_section


@dataclass
class Inner:
    a: int = 1
    b: str = "x"


@dataclass
class Outer:
    n: int = 0
    inner: Inner = field(default_factory=Inner)
    maybe: Inner | None = None


def test_nested_and_defaults():
    cfg = from_dict(Outer, {"n": 3, "inner": {"b": "y"}, "maybe": {"a": 5}}, "sec")
    assert cfg.n == 3 and cfg.inner == Inner(1, "y") and cfg.maybe == Inner(5, "x")


def test_unknown_key_names_dotted_path():
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) sec\.inner\.c; valid keys for sec\.inner: a, b"):
        from_dict(Outer, {"inner": {"c": 1}}, "sec")


def test_missing_section(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("data:\n  meld_root: x\n")
    with pytest.raises(ConfigError, match="no section 'demo'"):
        load_section(p, "demo", Outer)


def test_repo_params_sections_are_all_valid(repo_root):
    """Every section of the real params.yaml loads into its dataclass (typos fail here)."""
    from stage1_face_extraction.stages import param_sections

    for section, cls in param_sections().items():
        load_section(repo_root / "params.yaml", section, cls)
