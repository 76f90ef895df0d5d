"""Stage-2 FER branch: Swin model + face checkpoint loader, Aff-Wild2 reader, frame coupling."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from stage1_face_extraction.common.config import ConfigError, from_dict
from stage1_face_extraction.common.labels import EMOTIONS
from stage2_mer.fer import (
    AFFWILD2_EXPRESSIONS,
    AFFWILD2_TO_MELD,
    IMPORTANCE_THRESHOLD,
    MELD_TO_AFFWILD2,
    AffWild2Config,
    AffWild2Dataset,
    AffWild2FormatError,
    AugmentConfig,
    CheckpointError,
    FERConfig,
    SwinFER,
    build_fer,
    faces_to_input,
    fer_distributions,
    fer_to_official_key,
    filter_counts,
    filter_frames,
    frame_distributions,
    importance,
    keep_mask,
    load_face_checkpoint,
    official_to_fer_key,
    pack_kept,
    read_expression_file,
    scan_affwild2,
    scatter_frames,
    write_demo_affwild2,
)
from stage2_mer.fer.affwild2 import ANNOTATION_HEADER


@pytest.fixture(scope="module")
def model() -> SwinFER:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_fer(FERConfig(random_init=True)).eval()


def _crops(n: int, size: int = 112, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)  # (N, H, W, 3)


# ------------------------------------------------------------------------------------------------
# config and model


def test_config_strict_keys_and_validation():
    cfg = from_dict(FERConfig, {"checkpoint": "models/x.pt", "drop_path": 0.1}, "fer")
    assert cfg.backbone == "swin_tiny_patch4_window7_224" and cfg.drop_path == 0.1 and cfg.embed_dim == 512
    with pytest.raises(ConfigError, match="fer.chekpoint"):
        from_dict(FERConfig, {"chekpoint": "x"}, "fer")
    with pytest.raises(ConfigError, match="backbone"):
        FERConfig(backbone="resnet50")
    with pytest.raises(ConfigError, match="image_size"):
        FERConfig(image_size=200)
    with pytest.raises(ConfigError, match="random_init"):
        build_fer(FERConfig())


def test_missing_checkpoint_names_file(tmp_path):
    path = tmp_path / "Swin_tiny_Ms-Celeb-1M.pt"
    with pytest.raises(FileNotFoundError, match="Swin_tiny_Ms-Celeb-1M.pt"):
        build_fer(FERConfig(checkpoint=str(path)))


def test_forward_shapes_and_head(model):
    assert tuple(model.embedding[2].weight.shape) == (512, 49 * 768)
    assert [type(m).__name__ for m in model.head] == ["Linear", "ReLU", "Linear"]
    assert model.head[2].out_features == 7 and model.head[0].out_features == 64
    x = faces_to_input(_crops(2))  # (2, 3, 224, 224)
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    assert model(x[:0]).shape == (0, 7)


def test_single_image_in_train_mode_uses_running_stats(model):
    bn = model.embedding[3]
    before = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    model.train()
    try:
        with torch.no_grad():
            out = model(faces_to_input(_crops(1, seed=3)))
    finally:
        model.eval()
    assert out.shape == (1, 7) and torch.isfinite(out).all()
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert int(bn.num_batches_tracked) == before[2]


# ------------------------------------------------------------------------------------------------
# checkpoint loading


def test_key_mapping_rules():
    assert (
        official_to_fer_key("layers.0.downsample.reduction.weight") == "backbone.layers.1.downsample.reduction.weight"
    )
    assert official_to_fer_key("layers.2.downsample.norm.bias") == "backbone.layers.3.downsample.norm.bias"
    assert (
        official_to_fer_key("layers.3.downsample.norm.bias", official=False) == "backbone.layers.3.downsample.norm.bias"
    )
    assert official_to_fer_key("layers.1.blocks.1.attn.qkv.weight") == "backbone.layers.1.blocks.1.attn.qkv.weight"
    assert official_to_fer_key("patch_embed.proj.weight") == "backbone.patch_embed.proj.weight"
    assert official_to_fer_key("output_layer.2.weight") == "embedding.2.weight"
    assert official_to_fer_key("output_layer.3.running_var") == "embedding.3.running_var"
    assert official_to_fer_key("layers.0.blocks.1.attn_mask") is None
    assert official_to_fer_key("layers.0.blocks.0.attn.relative_position_index") is None
    assert (
        fer_to_official_key("backbone.layers.1.downsample.reduction.weight") == "layers.0.downsample.reduction.weight"
    )
    assert fer_to_official_key("embedding.0.bias") == "output_layer.0.bias"
    assert fer_to_official_key("head.0.weight") is None


def _fake_face_checkpoint(model: SwinFER) -> dict:
    """An MS-Celeb-style checkpoint: official Swin names under ``backbone.``, random tensors."""
    g = torch.Generator().manual_seed(1)
    sd = {}
    for key, value in model.state_dict().items():
        official = fer_to_official_key(key)
        if official is None:
            continue
        if value.is_floating_point():
            v = torch.rand(value.shape, generator=g) + 0.5  # positive (running_var stays valid)
        else:
            v = value.clone() + 3
        sd["backbone." + official] = v
    for name, buf in model.backbone.named_buffers():  # derived buffers the official repo saves
        if name.endswith(("relative_position_index", "attn_mask")):
            sd["backbone." + fer_to_official_key("backbone." + name)] = buf.clone()
    sd["classifier.weight"] = torch.zeros(10, 512)  # face-recognition training head: skipped
    return {"state_dict": sd, "epoch": 17}


def test_load_face_checkpoint_covers_every_key(model, tmp_path):
    ckpt = _fake_face_checkpoint(model)
    sd = ckpt["state_dict"]
    assert "backbone.layers.0.downsample.reduction.weight" in sd  # official naming
    assert "backbone.layers.3.downsample.reduction.weight" not in sd
    assert "backbone.output_layer.2.weight" in sd
    path = tmp_path / "Swin_tiny_Ms-Celeb-1M.pt"
    torch.save(ckpt, path)
    head_before = model.head[0].weight.clone()
    report = load_face_checkpoint(model, path)
    assert report.missing == [] and report.unexpected == []
    assert "classifier.weight" in report.skipped
    assert any(k.endswith("attn_mask") for k in report.skipped)
    assert report.new == sorted(k for k in model.state_dict() if k.startswith("head."))
    own = model.state_dict()
    assert len(report.loaded) == len(own) - len(report.new)
    # weights land where expected
    assert torch.equal(own["backbone.layers.1.downsample.reduction.weight"],
                       sd["backbone.layers.0.downsample.reduction.weight"])
    assert torch.equal(
        own["backbone.layers.2.blocks.5.mlp.fc2.weight"], sd["backbone.layers.2.blocks.5.mlp.fc2.weight"]
    )
    assert torch.equal(own["embedding.2.weight"], sd["backbone.output_layer.2.weight"])
    assert torch.equal(own["embedding.3.running_var"], sd["backbone.output_layer.3.running_var"])
    assert torch.equal(model.head[0].weight, head_before)  # the FER head is untouched
    assert model.checkpoint == str(path)


def test_load_face_checkpoint_safetensors_partial(model, tmp_path):
    from safetensors.torch import save_file

    w = torch.full((96, 3, 4, 4), 0.25)
    path = tmp_path / "partial.safetensors"
    save_file({"backbone.patch_embed.proj.weight": w, "backbone.norm.weight": torch.ones(768)}, str(path))
    with pytest.raises(CheckpointError, match="partial.safetensors.*missing"):
        load_face_checkpoint(model, path)
    report = load_face_checkpoint(model, path, strict=False)
    assert report.loaded == ["backbone.patch_embed.proj.weight"]
    assert report.unexpected == ["backbone.norm.weight"] and "embedding.2.weight" in report.missing
    assert torch.equal(model.backbone.patch_embed.proj.weight, w)


def test_bad_checkpoints_name_the_file(model, tmp_path):
    good = tmp_path / "small.pt"
    torch.save({"state_dict": {"backbone.patch_embed.proj.weight": torch.zeros(96, 3, 4, 4)}}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_face_checkpoint(model, truncated)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.pt"):
        load_face_checkpoint(model, text)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(3)}}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt.*no key"):
        load_face_checkpoint(model, foreign)
    wrong_shape = tmp_path / "wrong_shape.pt"
    torch.save({"state_dict": {"backbone.patch_embed.proj.weight": torch.zeros(128, 3, 4, 4)}}, wrong_shape)
    with pytest.raises(CheckpointError, match="wrong_shape.pt.*shape"):
        load_face_checkpoint(model, wrong_shape, strict=False)
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        load_face_checkpoint(model, tmp_path / "absent.pt")


# ------------------------------------------------------------------------------------------------
# frames: distributions, importance, filtering


def test_faces_to_input_channel_order():
    crops = np.random.default_rng(0).integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    rgb = faces_to_input(crops, size=32)
    bgr = faces_to_input(crops, size=32, channel_order="bgr")
    torch.testing.assert_close(bgr, faces_to_input(np.ascontiguousarray(crops[..., ::-1]), size=32))
    torch.testing.assert_close(bgr, rgb.flip(1))
    assert not torch.allclose(bgr, rgb)
    with pytest.raises(ValueError, match="channel_order"):
        faces_to_input(crops, channel_order="rbg")


def test_fer_distributions_feed_the_models_channel_order():
    """The Swin sees its configured order: a model that returns its input's channel means as logits."""
    crops = np.zeros((1, 32, 32, 3), np.uint8)
    crops[..., 0] = 255  # pure red (RGB)

    class Probe(torch.nn.Module):
        def __init__(self, order):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))
            self.cfg = FERConfig(random_init=True, image_size=32, channel_order=order)

        def forward(self, x):  # (N, 3, S, S) -> (N, 7): channel means first
            return torch.cat([x.mean(dim=(2, 3)), x.new_zeros((x.shape[0], 4))], 1) * 50 + self.w

    rgb = fer_distributions(Probe("rgb"), crops)
    bgr = fer_distributions(Probe("bgr"), crops)
    assert int(rgb.argmax()) == 0 and int(bgr.argmax()) == 2  # red lands in the first / the last channel
    with pytest.raises(ConfigError, match="channel_order"):
        FERConfig(random_init=True, channel_order="gbr")


def test_faces_to_input_resize_and_normalise():
    crops = np.zeros((3, 160, 160, 3), np.uint8)
    crops[1] = 255
    x = faces_to_input(crops)
    assert x.shape == (3, 3, 224, 224) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.tensor(-1.0)) and torch.allclose(x[1], torch.tensor(1.0))
    assert faces_to_input(np.zeros((0, 112, 112, 3), np.uint8)).shape == (0, 3, 224, 224)
    same = faces_to_input(torch.full((1, 224, 224, 3), 51, dtype=torch.uint8))
    assert torch.allclose(same, torch.tensor(51 / 255 * 2 - 1))
    with pytest.raises(ValueError, match="uint8"):
        faces_to_input(np.zeros((1, 112, 112, 3), np.float32))


def test_frame_distributions_deterministic_or_k_samples():
    logits = torch.randn(5, 7)
    a = frame_distributions(logits)
    b = frame_distributions(logits, samples=0)
    assert torch.equal(a, b) and torch.allclose(a, torch.softmax(logits, -1))
    assert torch.allclose(frame_distributions(logits, 2.0), torch.softmax(logits / 2, -1))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    n1 = frame_distributions(logits, samples=1, generator=g1)
    n2 = frame_distributions(logits, samples=1, generator=g2)
    assert torch.equal(n1, n2)  # reproducible with a generator
    assert not torch.allclose(n1, a)  # but noisy
    assert torch.allclose(n1.sum(-1), torch.ones(5))
    # K samples: the mean of K one-sample draws from the same stream
    g3, g4 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    k3 = frame_distributions(logits, samples=3, generator=g3)
    singles = torch.stack([frame_distributions(logits, samples=1, generator=g4) for _ in range(3)]).mean(0)
    torch.testing.assert_close(k3, singles)
    with pytest.raises(ValueError, match="samples"):
        frame_distributions(logits, samples=-1)


def test_gumbel_sample_of_a_uniform_distribution_passes_the_threshold_the_clean_one_does_not():
    """The issue-19 mismatch in numbers: at tau 1 a Gumbel-softmax sample of a uniform 7-way
    distribution has mean sum p^2 ~0.37 and passes 0.2 most of the time; the clean softmax gives
    1/7 and never passes. Averaging K samples moves the sample towards the clean value."""
    logits = torch.zeros(20000, 7)
    g = torch.Generator().manual_seed(0)
    one = importance(frame_distributions(logits, samples=1, generator=g))
    assert 0.3 < float(one.mean()) < 0.45 and float((one > IMPORTANCE_THRESHOLD).float().mean()) > 0.75
    assert float(importance(frame_distributions(logits)).max()) < IMPORTANCE_THRESHOLD
    four = importance(frame_distributions(logits, samples=4, generator=g))
    assert float(four.mean()) < float(one.mean())


def test_filter_counts():
    mask = torch.tensor([[True, True, False], [True, True, True], [False, False, False]])
    probs = torch.full((3, 3, 7), 1 / 7)
    probs[0, 0] = torch.eye(7)[2]  # utterance 0: one confident frame passes; utterance 1: none (fallback)
    keep = keep_mask(probs, mask, 0.2)
    assert filter_counts(probs, mask, keep, 0.2) == {"valid": 5, "passing": 1, "kept": 4, "utterances": 2,
                                                     "fallback": 1}


def test_importance_uniform_and_one_hot():
    assert torch.allclose(importance(torch.full((7,), 1 / 7)), torch.tensor(1 / 7))
    assert torch.allclose(importance(torch.eye(7)), torch.ones(7))
    assert importance(torch.rand(2, 3, 7)).shape == (2, 3)


def _probs(pattern: list[list[bool]]) -> torch.Tensor:
    """(U, Lv, 7): peaked (importance ~0.9) where True, uniform (1/7) where False."""
    peaked = torch.tensor([0.95] + [0.05 / 6] * 6)
    uniform = torch.full((7,), 1 / 7)
    return torch.stack([torch.stack([peaked if p else uniform for p in row]) for row in pattern])


def test_keep_mask_threshold_and_fallback():
    probs = _probs([[True, False, True, False], [False, False, False, True], [False, False, True, True]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    keep = keep_mask(probs, mask, 0.2)
    assert keep.tolist() == [
        [True, False, True, False],  # two frames pass
        [True, True, True, False],  # none of the valid frames passes -> all valid frames kept
        [False, False, False, False],  # no face at all -> nothing (passing pads are ignored)
    ]
    assert keep_mask(probs, mask, 0.99).tolist()[0] == [True, True, True, False]


def test_pack_kept_order_and_zero_padding():
    x = torch.arange(1, 13, dtype=torch.float32).view(2, 3, 2)  # (2, 3, 2)
    keep = torch.tensor([[False, True, True], [True, False, False]])
    packed, mask = pack_kept(x, keep)
    assert mask.tolist() == [[True, True, False], [True, False, False]]
    assert packed[0].tolist() == [[3, 4], [5, 6], [0, 0]]
    assert packed[1].tolist() == [[7, 8], [0, 0], [0, 0]]


def test_batch_equals_one_by_one():
    torch.manual_seed(0)
    u, lv, d = 4, 6, 5
    lengths = torch.tensor([6, 3, 0, 1])
    mask = torch.arange(lv)[None] < lengths[:, None]  # (U, Lv)
    logits = torch.randn(u, lv, 7) * 3
    probs = frame_distributions(logits)
    feats = torch.randn(u, lv, d)
    x, new_mask = filter_frames(feats, probs, mask, 0.2)
    assert x.shape == (u, lv, d + 7)
    for i in range(u):
        xi, mi = filter_frames(feats[i:i + 1], probs[i:i + 1], mask[i:i + 1], 0.2)
        assert torch.equal(xi[0], x[i]) and torch.equal(mi[0], new_mask[i])
        kept = keep_mask(probs[i:i + 1], mask[i:i + 1])[0]
        ref = torch.cat([feats[i], probs[i]], -1)[kept]  # kept frames in order
        assert torch.equal(x[i, : len(ref)], ref) and int(new_mask[i].sum()) == len(ref)
        assert not x[i, len(ref):].any()


def test_scatter_frames():
    mask = torch.tensor([[1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=torch.bool)
    flat = torch.tensor([[1.0], [2.0], [3.0]])
    out = scatter_frames(flat, mask)
    assert out[..., 0].tolist() == [[1, 2, 0], [0, 0, 0], [3, 0, 0]]
    with pytest.raises(ValueError, match="3 valid"):
        scatter_frames(flat[:2], mask)


class _TinyFER(torch.nn.Module):
    """Stand-in for SwinFER (fast): pool -> BatchNorm -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg = FERConfig(random_init=True, image_size=32)
        self.num_labels = 7
        self.bn = torch.nn.BatchNorm1d(3)
        self.fc = torch.nn.Linear(3, 7)
        self.seen_training: list[bool] = []

    def forward(self, x):  # (N, 3, 32, 32)
        self.seen_training.append(self.training)
        return self.fc(self.bn(x.mean(dim=(2, 3))))


def test_fer_distributions_frozen_and_joint():
    tiny = _TinyFER().train()
    crops = _crops(5, size=40)
    p1 = fer_distributions(tiny, crops, batch_size=2)
    p2 = fer_distributions(tiny, crops, batch_size=5)
    assert p1.shape == (5, 7) and torch.allclose(p1, p2, atol=1e-6)  # eval mode: batching-independent
    assert not p1.requires_grad and tiny.training and set(tiny.seen_training) == {False}
    assert int(tiny.bn.num_batches_tracked) == 0  # frozen: no statistics drift
    tiny.seen_training.clear()
    pj = fer_distributions(tiny, crops, joint=True, samples=1, generator=torch.Generator().manual_seed(0))
    assert pj.requires_grad and set(tiny.seen_training) == {True}
    pj.sum().backward()
    assert tiny.fc.weight.grad is not None
    assert fer_distributions(tiny, crops[:0]).shape == (0, 7)


# ------------------------------------------------------------------------------------------------
# Aff-Wild2


def test_label_table_matches_names():
    assert AFFWILD2_EXPRESSIONS[:7] == ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")
    names = {"Happiness": "joy"}
    for k, name in enumerate(AFFWILD2_EXPRESSIONS[:7]):
        assert EMOTIONS[AFFWILD2_TO_MELD[k]] == names.get(name, name.lower())
    assert list(AFFWILD2_TO_MELD) == [0, 6, 5, 2, 4, 3, 1]
    assert all(AFFWILD2_TO_MELD[MELD_TO_AFFWILD2[m]] == m for m in range(7))


def _write_video(root: Path, video: str, labels: list[int], missing: tuple[int, ...] = ()) -> None:
    from PIL import Image

    anno = root / "anno"
    anno.mkdir(parents=True, exist_ok=True)
    (anno / f"{video}.txt").write_text("\n".join([ANNOTATION_HEADER, *map(str, labels)]) + "\n")
    frames = root / "cropped_aligned" / video
    frames.mkdir(parents=True, exist_ok=True)
    for i in range(1, len(labels) + 1):
        if i not in missing:
            Image.fromarray(np.full((112, 112, 3), 10 * i, np.uint8)).save(frames / f"{i:05d}.jpg")


def test_scan_affwild2_drops_invalid_other_and_missing(tmp_path):
    _write_video(tmp_path, "vid_b", [0, 1, 2, 3, 4, 5, 6, -1, 7, 4], missing=(5,))
    _write_video(tmp_path, "vid_a", [-1, 6, 7])
    index = scan_affwild2(tmp_path / "cropped_aligned", tmp_path / "anno")
    assert index.files == [
        "vid_a/00002.jpg",
        "vid_b/00001.jpg", "vid_b/00002.jpg", "vid_b/00003.jpg", "vid_b/00004.jpg",
        "vid_b/00006.jpg", "vid_b/00007.jpg", "vid_b/00010.jpg",
    ]
    # Aff-Wild2: Surprise(6) | Neutral, Anger, Disgust, Fear, [Happiness missing], Sadness, Surprise, Happiness
    assert index.labels.tolist() == [1, 0, 6, 5, 2, 3, 1, 4]
    assert index.stats == {"videos": 2, "annotated": 13, "invalid": 2, "other": 2, "missing_image": 1,
                           "videos_without_images": 0, "kept": 8}
    assert index.class_counts().tolist() == [1, 2, 1, 1, 1, 1, 1]
    ds = AffWild2Dataset(index, image_size=64)
    x, y = ds[1]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32 and int(y) == 0
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    img, _ = AffWild2Dataset(index, output="uint8")[0]
    assert img.shape == (112, 112, 3) and img.dtype == torch.uint8


def test_annotation_format_errors(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("Neutral,Anger\n0\n")
    with pytest.raises(AffWild2FormatError, match="bad.txt:1"):
        read_expression_file(bad)
    bad.write_text(ANNOTATION_HEADER + "\n0\nhappy\n")
    with pytest.raises(AffWild2FormatError, match="bad.txt:3"):
        read_expression_file(bad)
    bad.write_text(ANNOTATION_HEADER + "\n9\n")
    with pytest.raises(AffWild2FormatError, match="outside"):
        read_expression_file(bad)


def test_rgb_channel_order(tmp_path):
    from PIL import Image

    _write_video(tmp_path, "v", [0])
    Image.fromarray(np.tile(np.array([200, 20, 20], np.uint8), (112, 112, 1))).save(
        tmp_path / "cropped_aligned" / "v" / "00001.jpg", quality=100)
    img, _ = AffWild2Dataset(scan_affwild2(tmp_path / "cropped_aligned", tmp_path / "anno"), output="uint8")[0]
    r, g, b = img.float().mean(dim=(0, 1)).tolist()
    assert r > 150 and g < 70 and b < 70  # red stays in channel 0 (RGB, not BGR)
    # the float output (what the Swin gets) is in channel_order: BGR by default (the checkpoint's)
    index = scan_affwild2(tmp_path / "cropped_aligned", tmp_path / "anno")
    bgr, _ = AffWild2Dataset(index, image_size=32)[0]
    rgb, _ = AffWild2Dataset(index, image_size=32, channel_order="rgb")[0]
    assert float(rgb[0].mean()) > 0.1 > float(rgb[2].mean()) and float(bgr[2].mean()) > 0.1 > float(bgr[0].mean())
    torch.testing.assert_close(bgr, rgb.flip(0))
    assert AffWild2Config().channel_order == "bgr" and FERConfig(random_init=True).channel_order == "bgr"


def test_augmentation_probabilities(tmp_path):
    aug = from_dict(AugmentConfig, {"erase_p": 0.0}, "affwild2.augment")
    assert (aug.grayscale_p, aug.jitter_p, aug.blur_p) == (0.2, 0.8, 0.5) and aug.jitter[3] == 0.1
    with pytest.raises(ConfigError):
        AugmentConfig(jitter_p=1.5)
    _write_video(tmp_path, "v", [0])
    index = scan_affwild2(tmp_path / "cropped_aligned", tmp_path / "anno")
    ds = AffWild2Dataset(index, output="uint8", augment=aug)
    calls = {"gray": 0, "jitter": 0, "blur": 0}

    def counter(key):
        def fn(img):
            calls[key] += 1
            return img
        return fn

    ds._colour = [(p, counter(k)) for (p, _), k in zip(ds._colour, ("gray", "jitter"), strict=True)]
    ds._blurs[112] = counter("blur")
    torch.manual_seed(0)
    n = 400
    for _ in range(n):
        ds[0]
    rates = {k: v / n for k, v in calls.items()}
    assert 0.12 < rates["gray"] < 0.28 and 0.72 < rates["jitter"] < 0.88, rates  # p, not 1 - p
    assert 0.4 < rates["blur"] < 0.6, rates
    # train.aux_augment: facialmmt -> FacialMMT's effective rates (its RandomApply fired with 1 - p)
    orig = AugmentConfig.named("facialmmt")
    assert orig.jitter == [0.4, 0.4, 0.4, 0.4] and AugmentConfig.named("project") == AugmentConfig()
    ds = AffWild2Dataset(index, output="uint8", augment=dataclasses.replace(orig, erase_p=0.0))
    ds._colour = [(p, counter(k)) for (p, _), k in zip(ds._colour, ("gray", "jitter"), strict=True)]
    ds._blurs[112] = counter("blur")
    calls.update(gray=0, jitter=0, blur=0)
    for _ in range(n):
        ds[0]
    rates = {k: v / n for k, v in calls.items()}
    assert 0.72 < rates["gray"] < 0.88 and 0.12 < rates["jitter"] < 0.28 and 0.4 < rates["blur"] < 0.6, rates
    with pytest.raises(ConfigError, match="facialmmt"):
        AugmentConfig.named("original")
    x, _ = AffWild2Dataset(index, image_size=224, augment=aug)[0]
    assert x.shape == (3, 224, 224)


def test_config_paths_and_dataset_from_config(tmp_path):
    cfg = from_dict(AffWild2Config, {"root": str(tmp_path), "annotations": "anno", "augment": {"enabled": False},
                                      "image_size": 32}, "affwild2")
    assert cfg.image_root == tmp_path / "cropped_aligned" and not cfg.augment.enabled
    with pytest.raises(ConfigError, match="affwild2.imgs"):
        from_dict(AffWild2Config, {"imgs": "x"}, "affwild2")
    _write_video(tmp_path, "v", [3, 3])
    ds = AffWild2Dataset.from_config(cfg)
    assert (
        ds.augment is None and len(ds) == 2 and ds[0][0].shape == (3, 32, 32) and int(ds[0][1]) == AFFWILD2_TO_MELD[3]
    )


def test_demo_writer_round_trip(tmp_path):
    ramp = np.linspace(0, 255, 64).astype(np.uint8)
    faces = np.stack([np.stack([np.add.outer(ramp, ramp * 0) // (k + 1), np.add.outer(ramp * 0, ramp),
                                np.full((64, 64), 30 * k, np.uint8)], -1) for k in range(7)])  # smooth (7, 64, 64, 3)
    labels = np.array([0, 1, 2, 3, 4, 5, 6])
    root = write_demo_affwild2(tmp_path / "affwild2", faces, labels, frames_per_video=3)
    cfg = AffWild2Config(root=str(root), output="uint8")
    index = scan_affwild2(cfg.image_root, cfg.annotation_root)
    assert index.labels.tolist() == labels.tolist()
    assert index.files[:4] == ["demo_000/00001.jpg", "demo_000/00002.jpg", "demo_000/00003.jpg", "demo_001/00001.jpg"]
    assert index.stats["videos"] == 3 and index.stats["missing_image"] == 0
    first = (root / cfg.annotations / "demo_000.txt").read_text().splitlines()
    assert first == [ANNOTATION_HEADER, "0", "6", "3"]  # MELD neutral, surprise, fear -> Aff-Wild2 indices
    img, y = AffWild2Dataset(index, output="uint8")[6]
    assert img.shape == (64, 64, 3) and int(y) == 6
    assert np.abs(img.numpy().astype(int) - faces[6].astype(int)).mean() < 3  # JPEG, same picture
    with pytest.raises(ValueError, match="labels"):
        write_demo_affwild2(tmp_path / "bad", faces, np.full(7, 7))
