"""Shot boundaries on real footage: a MELD-like H.264 clip composed from the real talking-head
recordings in ../shared (cuts known by construction), and an uncut real recording.

benchmarks/shots_quality.py is the full comparison (ours vs PySceneDetect); this checks that the
detectors keep finding these cuts, including the jump cut (same person, same background, reframed).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from stage1_face_extraction.shots import ShotConfig, detect_shots, shot_boundaries, shot_stream
from stage1_face_extraction.video import iter_frames, write_video

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TALKING = SHARED / "data" / "talking_heads"
W, H = 640, 360

pytestmark = pytest.mark.skipif(
    not TALKING.is_dir(), reason=f"needs the real talking-head clips of ../shared ({TALKING} is absent)"
)


def _head(name: str, start: int, n: int, side: int) -> list[np.ndarray]:
    frames = itertools.islice(iter_frames(TALKING / f"{name}.mp4"), start, start + n)
    return [cv2.resize(f.image, (side, side), interpolation=cv2.INTER_AREA) for f in frames]


def _background(name: str) -> np.ndarray:
    img = cv2.cvtColor(cv2.imread(str(Path(skimage.data.__file__).parent / name)), cv2.COLOR_BGR2RGB)
    return cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)


def _shot(faces: list[np.ndarray], bg: np.ndarray, cx: float) -> list[np.ndarray]:
    out = []
    for face in faces:
        img = bg.copy()
        side = face.shape[0]
        x, y = int(cx * W - side / 2), (H - side) // 2
        img[y : y + side, x : x + side] = face
        out.append(img)
    return out


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory) -> tuple[Path, list[int]]:
    """20 frames of one person, a cut to another person on another background, 20 frames, a jump
    cut (same recording 2 s later, same background, face moved a third of the width), 40 frames."""
    coffee, chelsea = _background("coffee.png"), _background("chelsea.png")
    a = _shot(_head("retalking_face_2", 0, 20, 240), coffee, 0.35)
    b = _shot(_head("sadtalker_WDA_KatieHill_000", 0, 20, 260), chelsea, 0.35)
    c = _shot(_head("sadtalker_WDA_KatieHill_000", 70, 40, 260), chelsea, 0.68)
    path = write_video(tmp_path_factory.mktemp("shots") / "cuts.mp4", a + b + c, 24000 / 1001)
    return path, [20, 40]


@pytest.mark.parametrize("method", ["scenedetect_adaptive", "internal"])
def test_known_cuts_in_a_real_footage_clip(cut_clip, method):
    if method != "internal":
        pytest.importorskip("scenedetect", reason="scenedetect-headless (requirements/extra.txt) is not installed")
    path, cuts = cut_clip
    cfg = ShotConfig(method=method)
    pairs = list(shot_stream(iter_frames(path), cfg))
    assert [f.index for f, _ in pairs] == list(range(80))  # every frame, in order, streamed
    found = shot_boundaries(sid for _, sid in pairs)[1:]
    if method == "internal":
        # ours finds the cut between two people; the jump cut keeps its colours and it misses it
        # (benchmarks/shots_quality.py: jump-cut recall)
        assert found[:1] == [20] and all(f in (39, 40, 41) for f in found[1:])
    else:
        assert len(found) == len(cuts) and all(abs(f - t) <= 1 for f, t in zip(found, cuts))


@pytest.mark.parametrize("method", ["scenedetect_adaptive", "internal"])
def test_no_cut_in_an_uncut_real_recording(method):
    if method != "internal":
        pytest.importorskip("scenedetect", reason="scenedetect-headless (requirements/extra.txt) is not installed")
    # 4 s of a real talking head (head turns, blinks, speech), the 700x700 source as decoded
    frames = itertools.islice(iter_frames(TALKING / "retalking_face_4.mp4"), 120)
    ids = detect_shots(frames, ShotConfig(method=method))
    assert len(ids) == 120 and set(ids) == {0}


def test_scenedetect_config_checks():
    from stage1_face_extraction.common.config import ConfigError, from_dict
    from stage1_face_extraction.shots import ShotDetector

    with pytest.raises(ValueError, match="shots.method"):
        ShotConfig(method="transnet")
    with pytest.raises(ValueError, match="shot_stream"):
        ShotDetector(ShotConfig(method="scenedetect_adaptive"))
    with pytest.raises(ConfigError, match="adaptive_treshold"):
        from_dict(
            ShotConfig, {"method": "scenedetect_adaptive", "scenedetect_adaptive": {"adaptive_treshold": 3}}, "shots"
        )
    cfg = from_dict(ShotConfig, {"method": "scenedetect_content", "scenedetect_content": {"threshold": 21}}, "shots")
    assert cfg.scenedetect_content.threshold == 21 and cfg.scenedetect_adaptive.window_width == 2
