"""Shared fixtures. Tests never touch the network and write only under tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_meld_dir() -> Path:
    """The real MELD CSVs in ../shared/data/meld (read only); skipped when absent."""
    d = SHARED / "data" / "meld"
    if not (d / "train_sent_emo.csv").is_file():
        pytest.skip(f"real MELD CSVs not found at {d} (they live in ../shared, outside the repo)")
    return d


@pytest.fixture(scope="session")
def shared_faces_dir() -> Path:
    """Real face photos in ../shared/data/faces (read only); skipped when absent."""
    d = SHARED / "data" / "faces"
    if not d.is_dir() or not any(d.glob("*.jpg")):
        pytest.skip(f"real face photos not found at {d} (they live in ../shared, outside the repo)")
    return d
