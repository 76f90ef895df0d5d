"""Stage-2 feature extractors (registry, contracts, visual, audio) and the feature store."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest

from stage1_face_extraction.common.config import ConfigError
from stage2_mer.features import (
    PER_FACE_FRAME,
    Contract,
    FeatureReader,
    FeatureWriter,
    create_extractor,
    length_cap,
    list_extractors,
)
from stage2_mer.features.visual import FACENET_FILES

torch = pytest.importorskip("torch")


def _faces(n: int, size: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)  # (N, H, W, 3)


# ------------------------------------------------------------------------------------------------
# registry and contracts


def test_registry_lists_both_modalities():
    names = list_extractors()
    for n in ("inception_resnet_v1", "timm", "dlib_resnet", "wav2vec2", "hf_audio", "fbank"):
        assert n in names
    assert set(list_extractors("audio")) == {"wav2vec2", "hf_audio", "fbank"}
    assert set(list_extractors("visual")) >= {"inception_resnet_v1", "timm", "dlib_resnet"}


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError, match="inception_resnet_v1") as e:
        create_extractor("no_such_extractor")
    assert "fbank" in str(e.value)


def test_unknown_key_fails():
    with pytest.raises(ConfigError, match="num_mel_binz.*valid keys"):
        create_extractor("fbank", num_mel_binz=40)
    with pytest.raises(ConfigError, match="bogus"):
        create_extractor("inception_resnet_v1", random_init=True, bogus=1)


def test_contract_validation():
    with pytest.raises(ValueError, match="modality"):
        Contract(modality="text", dim=3, frame_rate=1.0)
    with pytest.raises(ValueError, match="image_size"):
        Contract(modality="visual", dim=3, frame_rate=PER_FACE_FRAME)
    with pytest.raises(ValueError, match="sample_rate"):
        Contract(modality="audio", dim=3, frame_rate=100.0)


# ------------------------------------------------------------------------------------------------
# visual


def test_inception_resnet_v1_random_init():
    with pytest.warns(UserWarning, match="random_init"):
        ext = create_extractor("inception_resnet_v1", random_init=True, batch_size=2, device="cpu")
    c = ext.contract
    assert (c.modality, c.dim, c.frame_rate, c.image_size) == ("visual", 512, PER_FACE_FRAME, (160, 160))
    assert c.mean[0] * 255 == pytest.approx(127.5) and c.std[0] * 255 == pytest.approx(128.0)
    faces = _faces(3)
    out = ext.extract(faces)
    assert out.shape == (3, 512) and out.dtype == np.float32 and np.isfinite(out).all()
    # batching does not change results (eval mode: BatchNorm uses running stats)
    ext.batch_size = 3
    np.testing.assert_allclose(ext.extract(faces), out, rtol=1e-4, atol=1e-5)
    assert ext.extract(np.zeros((0, 160, 160, 3), np.uint8)).shape == (0, 512)
    with pytest.raises(ValueError, match="uint8"):
        ext.extract(faces.astype(np.float32))
    # the random network is the same in every process (the demo's features are reproducible),
    # and building it leaves the caller's RNG alone
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    torch.rand(1)  # a draw elsewhere must not matter
    with pytest.warns(UserWarning, match="random_init"):
        again = create_extractor("inception_resnet_v1", random_init=True, batch_size=3, device="cpu")
    np.testing.assert_array_equal(again.extract(faces), ext.extract(faces))
    torch.manual_seed(123)
    with pytest.warns(UserWarning, match="random_init"):
        create_extractor("inception_resnet_v1", random_init=True, device="cpu")
    assert torch.equal(torch.rand(3), before)


def test_inception_resnet_v1_missing_weights_names_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(FileNotFoundError, match=FACENET_FILES["vggface2"]):
        create_extractor("inception_resnet_v1")
    with pytest.raises(FileNotFoundError, match="20180408-102900-casia-webface.pt"):
        create_extractor("inception_resnet_v1", pretrained="casia-webface")
    with pytest.raises(FileNotFoundError, match="mine.pt"):
        create_extractor("inception_resnet_v1", weights=str(tmp_path / "mine.pt"))
    with pytest.raises(ConfigError, match="pretrained"):
        create_extractor("inception_resnet_v1", pretrained="imagenet", random_init=True)


def test_inception_resnet_v1_loads_facenet_cache_file(tmp_path, monkeypatch):
    """A state dict in facenet's cache layout (with its logits head) is found and loaded."""
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    ref = InceptionResnetV1(pretrained=None, classify=True, num_classes=7).eval()  # has logits.*
    ckpt = tmp_path / "th" / "checkpoints" / FACENET_FILES["vggface2"]
    ckpt.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), ckpt)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    ext = create_extractor("inception_resnet_v1", device="cpu")
    assert ext.weights == str(ckpt)
    faces = _faces(2)
    x = (torch.from_numpy(faces).permute(0, 3, 1, 2).float() - 127.5) / 128.0
    ref.classify = False
    with torch.inference_mode():
        want = ref(x).numpy()
    np.testing.assert_allclose(ext.extract(faces), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_timm_with_local_weights(tmp_path, fmt):
    import timm

    name = "test_resnet" if "test_resnet" in timm.list_models("test_*") else "resnet18"
    torch.manual_seed(0)
    src = timm.create_model(name, pretrained=False).eval()  # with classifier head: dropped on load
    path = tmp_path / f"w.{fmt}"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    else:
        torch.save(src.state_dict(), path)
    ext = create_extractor("timm", model=name, weights=str(path), device="cpu", batch_size=4)
    c = ext.contract
    assert c.modality == "visual" and c.dim == src.num_features
    assert c.image_size == tuple(src.pretrained_cfg["input_size"][1:])
    faces = _faces(5, size=112)  # resized to the model's input size
    out = ext.extract(faces)
    assert out.shape == (5, src.num_features) and out.dtype == np.float32
    src.reset_classifier(0)
    with torch.inference_mode():
        want = src(ext.preprocess(faces)).numpy()
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


def test_timm_needs_weights():
    with pytest.raises(ConfigError, match="weights"):
        create_extractor("timm", model="test_resnet")
    with pytest.raises(ConfigError, match="unknown timm model"):
        create_extractor("timm", model="no_such_model_xyz", random_init=True)


def test_dlib_resnet_on_crops():
    pytest.importorskip("dlib")
    try:
        ext = create_extractor("dlib_resnet")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    assert ext.contract.dim == 128
    out = ext.extract(_faces(2))
    assert out.shape == (2, 128) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-4)


# ------------------------------------------------------------------------------------------------
# audio


def test_fbank_shapes_and_frame_rate():
    ext = create_extractor("fbank")
    c = ext.contract
    assert (c.modality, c.dim, c.frame_rate, c.sample_rate) == ("audio", 80, 100.0, 16000)
    wave = np.random.default_rng(0).standard_normal(32000).astype(np.float32) * 0.1  # 2 s
    out = ext.extract(wave)
    assert out.shape == (1 + (32000 - 400) // 160, 80) and out.dtype == np.float32
    np.testing.assert_array_equal(out, ext.extract(wave))  # no dither: deterministic
    assert ext.extract(np.zeros(100, np.float32)).shape == (0, 80)
    assert create_extractor("fbank", num_mel_bins=40).extract(wave).shape[1] == 40
    with pytest.raises(ValueError, match="mono"):
        ext.extract(np.zeros((2, 16000), np.float32))


@pytest.fixture(scope="module")
def tiny_wav2vec2(tmp_path_factory):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16, 16, 16, 16, 16, 16), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        vocab_size=10,
    )  # fmt: skip
    d = tmp_path_factory.mktemp("w2v") / "tiny-wav2vec2"
    Wav2Vec2Model(cfg).eval().save_pretrained(d)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True, return_attention_mask=False).save_pretrained(d)
    return d


def test_wav2vec2_local_dir_and_layers(tiny_wav2vec2):
    wave = np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.1  # 1 s
    last = create_extractor("wav2vec2", model=str(tiny_wav2vec2), device="cpu")
    c = last.contract
    assert (c.modality, c.dim, c.frame_rate, c.sample_rate) == ("audio", 32, 50.0, 16000)
    out = last.extract(wave)
    assert out.shape == (49, 32) and out.dtype == np.float32
    first = create_extractor("hf_audio", model=str(tiny_wav2vec2), layer=0, device="cpu").extract(wave)
    top = create_extractor("hf_audio", model=str(tiny_wav2vec2), layer=2, device="cpu").extract(wave)
    assert first.shape == top.shape == (49, 32)
    assert not np.allclose(first, out)
    with pytest.raises(ConfigError, match="layer"):
        create_extractor("hf_audio", model=str(tiny_wav2vec2), layer=3)


def test_hf_audio_missing_dir_and_offline_hub_id(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="not found"):
        create_extractor("hf_audio", model=str(tmp_path / "nope"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # empty cache
    import huggingface_hub.file_download as fd

    def _no_network(*a, **k):  # pragma: no cover - would mean a network attempt
        raise AssertionError("network access attempted")

    monkeypatch.setattr(fd, "_get_metadata_or_catch_error", _no_network, raising=False)
    with pytest.raises(FileNotFoundError, match="offline"):
        create_extractor("hf_audio", model="someorg/some-audio-model")


# ------------------------------------------------------------------------------------------------
# store


def _utts(dim: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"dia0_utt{i}": rng.standard_normal((n, dim)).astype(np.float32) for i, n in enumerate([5, 0, 9, 3, 12])}


def _write(root, utts, **kw):
    with FeatureWriter(root, **kw) as w:
        for u in sorted(utts):
            w.add(u, utts[u])
    return root


def test_store_round_trip_float16_and_float32(tmp_path):
    utts = _utts()
    for dtype, tol in (("float16", 2e-3), ("float32", 0)):
        r = FeatureReader(_write(tmp_path / dtype, utts, dtype=dtype, rows_per_shard=10))
        assert r.dim == 6 and r.dtype == dtype and r.utt_ids() == sorted(utts)
        for u, x in utts.items():
            y = r.read(u)
            assert y.shape == x.shape and y.dtype == np.float32
            np.testing.assert_allclose(y, x, rtol=tol, atol=tol)
        assert len(sorted((tmp_path / dtype).glob("shard-*.safetensors"))) >= 2


def test_store_deterministic_and_atomic(tmp_path):
    utts = _utts()

    def digest(root):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}

    a = digest(_write(tmp_path / "a", utts, rows_per_shard=8))
    b = digest(_write(tmp_path / "b", utts, rows_per_shard=8))
    assert a == b and not any(n.endswith(".tmp") for n in a)
    with pytest.raises(FileExistsError):
        FeatureWriter(tmp_path / "a")
    _write(tmp_path / "a", utts, rows_per_shard=8, overwrite=True)
    assert digest(tmp_path / "a") == a


def test_store_errors(tmp_path):
    w = FeatureWriter(tmp_path / "x")
    w.add("u1", np.zeros((2, 4)))
    with pytest.raises(ValueError, match="twice"):
        w.add("u1", np.zeros((2, 4)))
    with pytest.raises(ValueError, match="dim"):
        w.add("u2", np.zeros((2, 5)))
    with pytest.raises(ValueError, match="NaN"):
        w.add("u3", np.full((1, 4), np.nan))
    with pytest.raises(FileNotFoundError):
        FeatureReader(tmp_path / "x")  # not closed: no index yet
    w.close()
    with pytest.raises(KeyError):
        FeatureReader(tmp_path / "x").read("nope")


def test_padded_and_mask(tmp_path):
    utts = _utts()
    r = FeatureReader(_write(tmp_path / "f", utts, dtype="float32"))
    ids = ["dia0_utt0", "dia0_utt1", "dia0_utt4"]  # lengths 5, 0, 12
    x, mask = r.padded(ids, max_len=8)
    assert x.shape == (3, 8, 6) and mask.shape == (3, 8)
    assert mask.sum(1).tolist() == [5, 0, 8]
    np.testing.assert_array_equal(x[0, :5], utts["dia0_utt0"])
    assert not x[0, 5:].any() and not x[1].any()
    np.testing.assert_array_equal(x[2], utts["dia0_utt4"][:8])  # first max_len rows kept
    x2, m2 = r.padded(ids)
    assert x2.shape == (3, 12, 6) and m2.sum() == 17


def test_length_cap():
    lens = [10, 12, 14, 11, 13, 100]
    want = int(np.ceil(np.mean(lens) + 3 * np.std(lens)))
    assert length_cap(lens, "mean+3std") == min(want, 100)
    assert length_cap([4, 4, 4], "mean+3std") == 4
    assert length_cap([1, 2, 3, 4, 5, 6, 7, 8, 9, 50], "mean+3std") == 50  # capped at the max
    assert length_cap(lens, 20) == 20
    with pytest.raises(ValueError):
        length_cap(lens, "median")
    with pytest.raises(ValueError):
        length_cap(lens, 0)
    with pytest.raises(ValueError):
        length_cap([], "mean+3std")


def test_no_warnings_from_fbank():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_extractor("fbank").extract(np.zeros(16000, np.float32))
