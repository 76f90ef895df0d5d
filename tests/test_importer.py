"""FacialMMT release importer: pkl features + face JSON/JPEGs -> feature folders, face shards, manifest."""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from stage1_face_extraction.store import FaceShardReader, read_manifest
from stage2_mer.features import FeatureReader
from stage2_mer.features.importer import FacialMMTFormatError, RestrictedUnpickler, load_pickle, main

VIS = Path("visual/facialmmt_inception_resnet_v1")
AUD = Path("audio/facialmmt_wav2vec2")

# FacialMMT row order (profile) is not sorted; "dia01_utt002" checks the canonical rewrite
NAMES = {
    "train": ["dia1_utt0", "dia0_utt1", "dia01_utt002", "dia0_utt0"],
    "val": ["dia3_utt1", "dia3_utt0"],
}


def _canon(name: str) -> str:
    d, u = name[3:].split("_utt")
    return f"dia{int(d)}_utt{int(u)}"


def _dump(path: Path, obj) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=4))


def _jpeg(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 98])


def _face(rng, h: int = 160, w: int = 160) -> np.ndarray:
    """Smooth random face-sized image (JPEG-friendly, so a re-encode stays close)."""
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def write_release(root: Path, seed: int = 0, lv: int = 6, la: int = 9) -> dict:
    """A small FacialMMT ``preprocess_data/T+A+V`` folder; returns what was written per split."""
    rng = np.random.default_rng(seed)
    src = root / "T+A+V"
    src.mkdir(parents=True)
    faces = root / "FacSeqs-160"
    out = {}
    for split, names in NAMES.items():
        n = len(names)
        vis = rng.normal(size=(n, lv, 512)).astype(np.float32)
        aud = rng.normal(size=(n, la, 768)).astype(np.float32)
        vlen, alen = rng.integers(1, lv + 1, n), rng.integers(1, la + 1, n)
        vlen[-1] = 0  # an utterance without face features
        vmask = (np.arange(lv)[None] < vlen[:, None]).astype(np.float32)
        amask = (np.arange(la)[None] < alen[:, None]).astype(np.float32)
        vis[vmask == 0] = 0.0
        aud[amask == 0] = 0.0
        _dump(src / f"meld_{split}_vision_utt.pkl",
              {split: {"vision": vis, "vision_utt_mask": vmask, "labels": rng.integers(0, 7, n)}})
        _dump(src / f"meld_{split}_audio_utt.pkl", {split: {"audio": aud, "audio_utt_mask": amask}})
        profile = {str(i): [name, name.split("_")[0], 0, n, i] for i, name in enumerate(names)}
        (src / f"{split}_utt_profile.json").write_text(json.dumps(profile))
        # face lists: absolute paths under a foreign prefix (as released), one relative path,
        # one empty list, one utterance missing (profile only), one crop of another size
        lists, images = {}, {}
        for k, name in enumerate(names[:-1]):
            files, imgs = [], []
            for j in range(0 if k == 1 else 3):
                img = _face(rng, 120, 100) if (k, j) == (0, 2) else _face(rng)
                rel = f"{split}/{_canon(name)}/{j:03d}.jpg"
                _jpeg(faces / rel, img)
                files.append(f"/media/devin/FacSeqs-160/{rel}" if j else f"../FacSeqs-160/{rel}")
                imgs.append(img)
            lists[name] = files
            images[_canon(name)] = imgs
        (src / f"{split}_facseqs_160_paths_final.json").write_text(json.dumps(lists))
        out[split] = {"ids": [_canon(x) for x in names], "vision": (vis, vmask), "audio": (aud, amask),
                      "images": images}
    return {"src": src, "faces": faces, "splits": out}


def _args(rel, out=None, faces_out=None, *extra):
    a = ["--src", str(rel["src"]), "--splits", "train", "val", "-q"]
    if out is not None:
        a += ["--out", str(out)]
    if faces_out is not None:
        a += ["--faces-out", str(faces_out), "--rewrite-prefix", "/media/devin/FacSeqs-160", str(rel["faces"])]
    return a + list(extra)


@pytest.fixture
def release(tmp_path):
    return write_release(tmp_path / "release")


# ------------------------------------------------------------------------------------------------
# features


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_features_round_trip_ids_and_val_to_dev(tmp_path, release, dtype):
    out = tmp_path / "features"
    assert main(_args(release, out, None, "--trust-pickle", "--dtype", dtype)) == 0
    assert not (out / VIS / "val").exists() and not (out / AUD / "val").exists()
    for split, ours in (("train", "train"), ("val", "dev")):
        exp = release["splits"][split]
        for folder, kind in ((VIS, "vision"), (AUD, "audio")):
            r = FeatureReader(out / folder / ours)
            feats, mask = exp[kind]
            assert r.dtype == dtype and r.dim == feats.shape[2]
            assert r.utt_ids() == sorted(exp["ids"])
            assert r.meta["info"]["source_split"] == split and r.meta["info"]["padded_width"] == feats.shape[1]
            assert r.meta["info"]["contract"]["dim"] == feats.shape[2]
            for i, utt in enumerate(exp["ids"]):
                got = r.read(utt, dtype=None)
                assert got.dtype == np.dtype(dtype)
                np.testing.assert_array_equal(got, feats[i][mask[i] > 0].astype(dtype))
    assert FeatureReader(out / VIS / "train").length("dia0_utt0") == 0  # all-zero mask -> no rows
    assert "dia1_utt2" in FeatureReader(out / VIS / "train")  # "dia01_utt002" canonicalised


def test_refuses_pickle_without_trust_flag(tmp_path, release, caplog):
    out = tmp_path / "features"
    assert main(_args(release, out)) == 2
    assert not out.exists()
    assert "--trust-pickle" in caplog.text and "execute arbitrary code" in caplog.text


def test_trust_flag_logs_a_warning(tmp_path, release, caplog):
    assert main(_args(release, tmp_path / "f", None, "--trust-pickle", "--modalities", "vision")) == 0
    assert any(r.levelname == "WARNING" and "unpickling" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "f" / "audio").exists()


def test_existing_output_refused_unless_overwrite(tmp_path, release, caplog):
    out = tmp_path / "features"
    assert main(_args(release, out, None, "--trust-pickle")) == 0
    assert main(_args(release, out, None, "--trust-pickle")) == 1
    assert "already holds output" in caplog.text and "--overwrite" in caplog.text
    assert main(_args(release, out, None, "--trust-pickle", "--overwrite", "--dtype", "float32")) == 0
    assert FeatureReader(out / AUD / "dev").dtype == "float32"


def test_nothing_to_do_and_bad_split(tmp_path, release):
    assert main(["--src", str(release["src"])]) == 2
    assert main(["--src", str(release["src"]), "--faces-out", str(tmp_path / "x"), "--splits", "valid"]) == 2
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------------------
# faces


def test_faces_round_trip_manifest_and_no_pickle_needed(tmp_path, release):
    fo = tmp_path / "faces"
    assert main(_args(release, None, fo)) == 0  # no --trust-pickle needed: JSON + JPEG only
    assert sorted(p.name for p in fo.iterdir()) == ["dev", "train"]
    for split, ours in (("train", "train"), ("val", "dev")):
        exp = release["splits"][split]
        reader = FaceShardReader(fo / ours)
        recs = {r["utt_id"]: r for r in read_manifest(fo / ours / "manifest.jsonl")}
        assert reader.utt_ids() == sorted(exp["ids"]) == sorted(recs)
        clips = {"train": "train_splits", "val": "dev_splits_complete"}[split]
        for utt in exp["ids"]:
            rec = recs[utt]
            assert rec["clip"] == f"{clips}/{utt}.mp4" and rec["source_split"] == split
            imgs = exp["images"].get(utt)
            crops = reader.read(utt)
            if not imgs:
                assert rec["status"] == "no_face" and rec["frames"] == [] and crops.shape[0] == 0
                assert ("utt_profile" in rec["reason"]) == (imgs is None)
                continue
            assert rec["status"] == "ok" and crops.shape == (len(imgs), 160, 160, 3)
            assert [f["frame"] for f in rec["frames"]] == list(range(len(imgs)))
            assert [f["file"] for f in rec["frames"]] == [f"{j:03d}.jpg" for j in range(len(imgs))]
            assert all(f["box"] is None and f["speaking"] is None and f["track"] is None for f in rec["frames"])
            for img, crop in zip(imgs, crops):
                if img.shape[:2] != (160, 160):
                    img = cv2.resize(img, (160, 160), interpolation=cv2.INTER_CUBIC)
                assert np.abs(crop.astype(int) - img.astype(int)).mean() < 4.0  # two JPEG generations


def test_missing_jpeg_names_it_and_writes_nothing(tmp_path, release, caplog):
    victim = release["faces"] / "val" / "dia3_utt1" / "001.jpg"
    victim.unlink()
    fo = tmp_path / "faces"
    assert main(_args(release, None, fo)) == 1
    assert "face JPEG not found" in caplog.text and str(victim) in caplog.text
    assert "val_facseqs_160_paths_final.json" in caplog.text
    assert not fo.exists()


def test_absolute_paths_need_rewrite(tmp_path, release, caplog):
    args = ["--src", str(release["src"]), "--faces-out", str(tmp_path / "faces"), "--splits", "train"]
    assert main(args) == 1
    assert "/media/devin/FacSeqs-160/train/" in caplog.text and "--rewrite-prefix" in caplog.text


# ------------------------------------------------------------------------------------------------
# clear errors


def _expect_error(tmp_path, release, caplog, match: str, file: str, faces: bool = False) -> None:
    out = tmp_path / "out"
    args = _args(release, None, out) if faces else _args(release, out, None, "--trust-pickle")
    assert main(args) == 1
    assert match in caplog.text, caplog.text
    assert file in caplog.text, caplog.text


def test_error_missing_file(tmp_path, release, caplog):
    (release["src"] / "meld_val_audio_utt.pkl").unlink()
    _expect_error(tmp_path, release, caplog, "not found", "meld_val_audio_utt.pkl")
    assert not (tmp_path / "out").exists()  # every input is checked before anything is written


def test_error_not_a_dict(tmp_path, release, caplog):
    _dump(release["src"] / "meld_train_vision_utt.pkl", [np.zeros((2, 3, 512))])
    _expect_error(tmp_path, release, caplog, "expected a dict", "meld_train_vision_utt.pkl")


def test_error_wrong_ndim(tmp_path, release, caplog):
    _dump(release["src"] / "meld_train_audio_utt.pkl",
          {"train": {"audio": np.zeros((4, 768), np.float32), "audio_utt_mask": np.ones((4, 9))}})
    _expect_error(tmp_path, release, caplog, "'audio' must be a 3-d numeric array", "meld_train_audio_utt.pkl")


def test_error_mask_shape_and_row_count(tmp_path, release, caplog):
    _dump(release["src"] / "meld_train_vision_utt.pkl",
          {"train": {"vision": np.zeros((4, 6, 512), np.float32), "vision_utt_mask": np.ones((4, 5))}})
    _expect_error(tmp_path, release, caplog, "does not match", "meld_train_vision_utt.pkl")
    caplog.clear()
    _dump(release["src"] / "meld_train_vision_utt.pkl",
          {"train": {"vision": np.zeros((3, 6, 512), np.float32), "vision_utt_mask": np.ones((3, 6))}})
    _expect_error(tmp_path, release, caplog, "3 rows but", "train_utt_profile.json")


def test_error_key_not_a_meld_utterance_id(tmp_path, release, caplog):
    prof = release["src"] / "val_utt_profile.json"
    data = json.loads(prof.read_text())
    data["1"][0] = "utt_7"
    prof.write_text(json.dumps(data))
    _expect_error(tmp_path, release, caplog, "'utt_7' is not a MELD utterance id", "val_utt_profile.json")
    caplog.clear()
    lists = release["src"] / "train_facseqs_160_paths_final.json"
    lists.write_text(json.dumps({"dia0_utt0.mp4": []}))
    _expect_error(tmp_path, release, caplog, "is not a MELD utterance id", "train_facseqs_160_paths_final.json",
                  faces=True)


# ------------------------------------------------------------------------------------------------
# restricted unpickler


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_os_system(tmp_path, release, caplog):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"train": {"vision": _Evil(marker)}})
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global (posix|os)\.system"):
        RestrictedUnpickler(io.BytesIO(payload)).load()
    for ref in (eval, __import__, getattr):  # builtins other than containers are refused too
        with pytest.raises(pickle.UnpicklingError, match="refusing"):
            RestrictedUnpickler(io.BytesIO(pickle.dumps(ref))).load()
    (release["src"] / "meld_train_vision_utt.pkl").write_bytes(payload)
    _expect_error(tmp_path, release, caplog, "refusing to load global", "meld_train_vision_utt.pkl")
    assert not marker.exists()


def test_restricted_unpickler_loads_numpy_pickles(tmp_path):
    obj = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "m": np.ones((2, 2), bool),
           "s": np.int64(5), "l": [1.5, (2, "x")], "f": np.zeros((2, 3), np.float16)}
    for proto in (2, 4, 5):
        data = pickle.dumps(obj, protocol=proto)
        back = RestrictedUnpickler(io.BytesIO(data)).load()
        for k in ("a", "m", "f"):
            np.testing.assert_array_equal(back[k], obj[k])
            assert back[k].dtype == obj[k].dtype
        assert back["s"] == 5 and back["l"] == obj["l"]
    # numpy 1.x pickles (as FacialMMT's, Python 3.8) name numpy.core instead of numpy._core
    old = pickle.dumps(obj, protocol=2).replace(b"numpy._core.", b"numpy.core.")
    assert b"numpy.core.multiarray" in old
    np.testing.assert_array_equal(RestrictedUnpickler(io.BytesIO(old)).load()["a"], obj["a"])
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(PermissionError):
        load_pickle(path)
    assert load_pickle(path, trust=True)["s"] == 5
    path.write_bytes(b"\x80\x04garbage")
    with pytest.raises(FacialMMTFormatError, match="x.pkl"):
        load_pickle(path, trust=True)
