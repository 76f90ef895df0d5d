"""Face shards (round trip, shard count, determinism, resume) and the manifest."""

from __future__ import annotations

import hashlib
import json
import math
import tarfile
from pathlib import Path

import numpy as np
import pytest

from stage1_face_extraction.store import (
    INDEX_NAME,
    STATUSES,
    FaceShardReader,
    FaceShardWriter,
    contact_sheet,
    read_manifest,
    write_manifest,
)


def _crops(i: int, n: int, size: int = 160) -> np.ndarray:
    """Smooth, JPEG-friendly synthetic faces for utterance i: (n, size, size, 3) uint8."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((n, size, size, 3), np.uint8)
    for k in range(n):
        ph = 0.3 * i + 0.7 * k
        for c in range(3):
            out[k, ..., c] = np.clip(128 + 90 * np.sin(2 * np.pi * (xx * (c + 1) + yy * 1.5) + ph + c), 0, 255)
    return out


def _utts(n: int) -> list[str]:
    return [f"dia{i // 7}_utt{i % 7}" for i in range(n)]


def _write(root: Path, utts: list[str], per_shard: int = 100, plan: bool = False, size: int = 160) -> None:
    with FaceShardWriter(root, utts_per_shard=per_shard, plan=utts if plan else None) as w:
        for i, u in enumerate(utts):
            w.add(u, _crops(i, 1 + i % 3, size))


def _digest(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def test_round_trip(tmp_path):
    utts = _utts(12)
    with FaceShardWriter(tmp_path / "faces", utts_per_shard=5) as w:
        for i, u in enumerate(utts):
            rec = w.add(u, _crops(i, 1 + i % 3))
            assert rec["n"] == 1 + i % 3 and rec["members"][0] == f"{u}/0000.jpg"
        w.add("dia99_utt0", np.zeros((0, 160, 160, 3), np.uint8))  # no face
    r = FaceShardReader(tmp_path / "faces")
    assert len(r) == 13 and sorted(r.utt_ids()) == r.utt_ids()
    assert "dia0_utt3" in r and "dia42_utt0" not in r
    for i, u in enumerate(utts):
        got = r.read(u)
        want = _crops(i, 1 + i % 3)
        assert got.shape == want.shape and got.dtype == np.uint8
        assert r.num_frames(u) == len(want)
        err = np.abs(got.astype(int) - want.astype(int))
        assert err.mean() < 2.0 and err.max() < 40  # JPEG q95
    assert r.read("dia99_utt0").shape == (0, 160, 160, 3)
    np.testing.assert_array_equal(r.read(utts[2], indices=[2]), r.read(utts[2])[2:3])
    with pytest.raises(KeyError):
        r.read("dia42_utt0")
    # the tars are plain tars with the documented member names
    with tarfile.open(tmp_path / "faces" / "shard-00000.tar") as tar:
        names = tar.getnames()
        assert names[0] == "dia0_utt0/0000.jpg" and all(n.endswith(".jpg") for n in names)
        assert {m.mtime for m in tar.getmembers()} == {0}


def test_shard_count(tmp_path):
    for n, per in [(250, 100), (100, 100), (7, 3)]:
        root = tmp_path / f"n{n}_{per}"
        _write(root, _utts(n), per_shard=per, size=16)
        shards = sorted(root.glob("*.tar"))
        assert len(shards) <= math.ceil(n / per)
        assert len(FaceShardReader(root)) == n


def test_deterministic_bytes(tmp_path):
    utts = _utts(23)
    _write(tmp_path / "a", utts, per_shard=10, size=48)
    _write(tmp_path / "b", utts, per_shard=10, size=48)
    da, db = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert da == db and len([k for k in da if k.endswith(".tar")]) == 3


def test_plan_makes_grouping_independent_of_completion_order(tmp_path):
    utts = _utts(23)
    _write(tmp_path / "ordered", utts, per_shard=10, plan=True, size=32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(utts))
    with FaceShardWriter(tmp_path / "shuffled", utts_per_shard=10, plan=utts) as w:
        for i in order:
            w.add(utts[i], _crops(int(i), 1 + int(i) % 3, 32))
        with pytest.raises(ValueError, match="plan"):
            w.add("dia500_utt0", _crops(0, 1, 32))
    assert _digest(tmp_path / "ordered") == _digest(tmp_path / "shuffled")


def test_resume_after_kill(tmp_path):
    utts = _utts(25)
    root = tmp_path / "faces"
    # run 1 "killed" after 17 utterances: shard 0 (10) finished, 7 pending in memory, a stray .tmp
    w = FaceShardWriter(root, utts_per_shard=10)
    for i, u in enumerate(utts[:17]):
        w.add(u, _crops(i, 1 + i % 3, 32))
    (root / "shard-00001.tar.tmp").write_bytes(b"half a tar")
    del w  # no close(): the process died
    assert sorted(p.name for p in root.glob("*.tar")) == ["shard-00000.tar"]
    done_before = (root / "shard-00000.tar").stat().st_mtime_ns
    # run 2: skips finished utterances, rewrites the rest
    with FaceShardWriter(root, utts_per_shard=10) as w:
        assert utts[0] in w and utts[12] not in w
        assert not list(root.glob("*.tmp"))
        encoded = 0
        for i, u in enumerate(utts):
            if u in w:
                continue
            w.add(u, _crops(i, 1 + i % 3, 32))
            encoded += 1
        assert encoded == 15
    assert (root / "shard-00000.tar").stat().st_mtime_ns == done_before
    # identical to an uninterrupted run
    _write(tmp_path / "clean", utts, per_shard=10, size=32)
    assert _digest(root) == _digest(tmp_path / "clean")
    # re-adding a finished utterance is a no-op that returns its record
    with FaceShardWriter(root, utts_per_shard=10) as w:
        assert w.add(utts[3], _crops(3, 1, 32))["shard"] == "shard-00000.tar"
    assert _digest(root) == _digest(tmp_path / "clean")


def test_tar_without_index_entry_is_rewritten(tmp_path):
    """Killed between the tar's os.replace and the index update: the tar is not trusted."""
    utts = _utts(6)
    root = tmp_path / "faces"
    _write(root, utts[:3], per_shard=3, size=32)
    (root / "shard-00001.tar").write_bytes(b"orphan from a killed run")
    with FaceShardWriter(root, utts_per_shard=3) as w:
        for i, u in enumerate(utts):
            if u not in w:
                w.add(u, _crops(i, 1 + i % 3, 32))
    r = FaceShardReader(root)
    assert len(r) == 6 and r.read(utts[4]).shape[0] == 2


def test_writer_rejects_bad_input(tmp_path):
    with FaceShardWriter(tmp_path / "f") as w:
        with pytest.raises(ValueError):
            w.add("../evil", _crops(0, 1, 16))
        with pytest.raises(ValueError):
            w.add("dia0_utt0", np.zeros((2, 16, 16), np.uint8))
        w.add("dia0_utt0", _crops(0, 1, 16))
        with pytest.raises(ValueError, match="twice"):
            w.add("dia0_utt0", _crops(0, 1, 16))
    with pytest.raises(FileNotFoundError):
        FaceShardReader(tmp_path / "nothing")


def _record(utt: str, status: str = "ok", **extra) -> dict:
    rec = {
        "utt_id": utt,
        "clip": f"test/{utt}.mp4",
        "status": status,
        "fps": 23.976023976,
        "n_frames": 3,
        "frames": [
            {"track": 1, "speaking": np.float32(0.87654321), "frame": k, "t": k / 23.976, "det_score": 0.999999,
             "box": np.array([10.123456, 20.0, 110.5, 140.25], np.float32)}
            for k in range(3)
        ],
        "tracks": [{"track": 1, "shot": 0, "mean_speaking": 0.8765, "selected": True}],
        "timings": {"decode": 0.123456789, "detect": 1.5},
    }
    rec.update(extra)
    return rec


def test_manifest_round_trip_and_determinism(tmp_path):
    recs = [
        _record("dia1_utt0"),
        _record("dia0_utt2", "no_face", frames=[], n_frames=40),
        _record("dia0_utt1", "no_audio"),
    ]
    path = write_manifest(tmp_path / "a" / "manifest.jsonl", recs)
    back = read_manifest(path)
    assert [r["utt_id"] for r in back] == ["dia0_utt1", "dia0_utt2", "dia1_utt0"]
    first = back[0]
    assert list(first)[:7] == ["clip", "utt_id", "status", "fps", "n_frames", "frames", "tracks"]
    assert list(first["frames"][0]) == ["frame", "t", "box", "det_score", "speaking", "track"]
    assert first["fps"] == 23.976 and first["frames"][0]["box"] == [10.1235, 20.0, 110.5, 140.25]
    assert first["frames"][0]["speaking"] == 0.8765 and "timings" not in first
    # timings live in the sidecar and can be merged back
    timed = read_manifest(path, with_timings=True)
    assert timed[0]["timings"] == {"decode": 0.1235, "detect": 1.5}
    # same records, other timings, other order -> identical manifest bytes
    recs2 = [dict(r, timings={"decode": 9.0}) for r in reversed(recs)]
    path2 = write_manifest(tmp_path / "b" / "manifest.jsonl", recs2)
    assert path.read_bytes() == path2.read_bytes()
    assert (tmp_path / "a" / "timings.jsonl").read_bytes() != (tmp_path / "b" / "timings.jsonl").read_bytes()
    for line in path.read_text().splitlines():
        json.loads(line)


def test_manifest_rejects_unknown_status(tmp_path):
    assert set(STATUSES) == {"ok", "no_face", "no_speaker", "no_audio", "decode_error", "error", "missing"}
    with pytest.raises(ValueError, match="status"):
        write_manifest(tmp_path / "m.jsonl", [_record("dia0_utt0", "maybe")])
    assert not (tmp_path / "m.jsonl").exists()
    (tmp_path / "bad.jsonl").write_text(json.dumps({"clip": "x", "utt_id": "u", "status": "great"}) + "\n")
    with pytest.raises(ValueError, match="status"):
        read_manifest(tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="lacks"):
        write_manifest(tmp_path / "m.jsonl", [{"utt_id": "u", "status": "ok"}])


def test_manifest_nan_becomes_null(tmp_path):
    rec = _record("dia0_utt0")
    rec["frames"][0]["speaking"] = float("nan")
    back = read_manifest(write_manifest(tmp_path / "manifest.jsonl", [rec], timings_path=None))
    assert back[0]["frames"][0]["speaking"] is None
    assert not (tmp_path / "timings.jsonl").exists()


def test_contact_sheet():
    crops = _crops(0, 10, 64)
    sheet = contact_sheet(crops, cols=4, labels=list(range(100, 110)))
    assert sheet.dtype == np.uint8 and sheet.shape == (3 * 66 + 2, 4 * 66 + 2, 3)
    assert not np.array_equal(sheet[2:66, 2:66], crops[0])  # the frame number is drawn
    assert contact_sheet([]).ndim == 3
    with pytest.raises(ValueError):
        contact_sheet(crops, labels=[1, 2])


def test_index_lines_are_compact_json(tmp_path):
    _write(tmp_path / "f", _utts(3), size=16)
    lines = (tmp_path / "f" / INDEX_NAME).read_text().splitlines()
    rec = json.loads(lines[0])
    assert set(rec) == {"utt_id", "shard", "n", "height", "width", "offsets", "sizes"}
