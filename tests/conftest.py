"""Shared fixtures. Tests never touch the network and write only under tmp_path."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


def imported_from(node: ast.ImportFrom, package: str) -> str:
    """The absolute module of a ``from ... import`` statement found in ``package`` (relative
    imports resolved; used by the import-walking tests)."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def face_frame(shift: int, marked: bool) -> np.ndarray:
    """A (240, 320, 3) uint8 frame: scikit-image's astronaut face on grey, ``shift`` pixels right;
    ``marked``: a red 16x16 square in the top-left corner, which :func:`is_marked` finds (the fault
    injecting detectors of the tests react to it)."""
    import cv2
    from skimage import data

    img = cv2.resize(data.astronaut()[0:300, 75:375], (240, 240), interpolation=cv2.INTER_AREA)
    out = np.full((240, 320, 3), 90, np.uint8)
    out[:, 40 + shift : 280 + shift] = img
    if marked:
        out[:16, :16] = (255, 0, 0)
    return out


def is_marked(frame: np.ndarray) -> bool:
    """Whether ``frame``'s top-left corner is the red square of :func:`face_frame`."""
    r, g, b = frame[2:10, 2:10].reshape(-1, 3).mean(axis=0)
    return bool(r > 180 and g < 80 and b < 80)


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


# ------------------------------------------------------------------------------------------------
# One small demo corpus shared by the pipeline, CLI and extract_faces tests.

#: seed 1 gives 16 clips (927 frames, ~39 s of video) with, per split, at least one
#: ``cut_to_listener`` and one ``speaker_off_screen`` clip (the fixture checks the truth).
SMALL_DEMO = {
    "seed": 1,
    "dialogues_per_split": {"train": 2, "dev": 1, "test": 1},
    "utterances_min": 4,
    "utterances_max": 4,
    "duration_min_s": 2.0,
    "duration_max_s": 3.0,
    "workers": 2,
}


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small MELD-shaped demo corpus (16 clips, 2-3 s each) generated once per test session.

    Returns the corpus root (``<root>/truth.json``, ``<root>/train_splits/...``, the CSVs).
    Read only: tests that need to change it copy it first.
    """
    import json

    from stage1_face_extraction.common.config import from_dict
    from stage1_face_extraction.demo.generate import DemoConfig, generate_corpus

    out = tmp_path_factory.mktemp("small_demo") / "MELD.Raw"
    generate_corpus(from_dict(DemoConfig, SMALL_DEMO, "demo"), out)
    truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))
    plans = {c["shot_plan"] for c in truth["clips"].values()}
    missing = {"normal", "cut_to_listener", "speaker_off_screen"} - plans
    assert not missing, f"small demo corpus lacks shot plans {sorted(missing)}; pick another seed"
    return out


@pytest.fixture(scope="module")
def torch_one_thread():
    """One torch intra-op thread for a module of tiny-tensor tests (on a shared 2-core machine,
    two threads make each tiny forward much slower); restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def save_tiny_roberta():
    """A function ``(folder, words) -> folder`` that writes a word-level RoBERTa-layout tokenizer over
    ``words`` and a random 1-layer, 16-wide RoBERTa there (a local text encoder for stage-2 tests)."""

    def save(folder: Path, words) -> Path:
        import torch
        from transformers import RobertaConfig, RobertaModel

        from stage2_mer.data import word_level_tokenizer

        tok = word_level_tokenizer(words)
        tok.save_pretrained(folder)
        torch.manual_seed(0)
        cfg = RobertaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                            vocab_size=len(tok), max_position_embeddings=130, pad_token_id=1)
        RobertaModel(cfg).save_pretrained(folder)
        return folder

    return save
