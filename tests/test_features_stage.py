"""The features stage: config, pooled visual batches, length-sorted audio batches, the entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from stage1_face_extraction.common.config import ConfigError, from_dict
from stage1_face_extraction.store import FaceShardWriter
from stage2_mer.features import Contract, FeatureReader, VisualExtractor, create_extractor, register_extractor
from stage2_mer.features.extract import FeatureStageConfig, extract_audio_split, extract_visual_split
from stage2_mer.stages import features as stage


@register_extractor("test_channel_stats")
class ChannelStats(VisualExtractor):
    """Tiny deterministic extractor: per-channel mean and std of the normalised crop (6-d)."""

    def __init__(self, **common) -> None:
        super().__init__(**common)
        self.calls: list[int] = []

    @property
    def contract(self) -> Contract:
        return Contract(modality="visual", dim=6, frame_rate="per face frame", image_size=(32, 32),
                        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

    def _forward(self, x):  # (B, 3, 32, 32) -> (B, 6)
        self.calls.append(int(x.shape[0]))
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


def _faces(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with FaceShardWriter(root, utts_per_shard=2, plan=sorted(counts)) as w:
        for utt in sorted(counts):
            w.add(utt, rng.integers(0, 256, size=(counts[utt], 40, 40, 3), dtype=np.uint8))
    return root


def _cfg(**kw) -> FeatureStageConfig:
    return from_dict(FeatureStageConfig, {"name": "test_channel_stats", **kw}, "features.visual")


COUNTS = {"dia0_utt0": 5, "dia0_utt1": 0, "dia1_utt0": 70, "dia2_utt3": 3}


def test_config_keys_per_extractor() -> None:
    cfg = from_dict(FeatureStageConfig, {"name": "fbank", "extractors": {"fbank": {"num_mel_bins": 40},
                                                                         "wav2vec2": {"model": "nowhere"}}}, "f")
    assert cfg.options == {"num_mel_bins": 40}
    assert cfg.create().dim == 40, "the other extractors' keys are not used"
    bad = from_dict(FeatureStageConfig, {"name": "fbank", "extractors": {"fbank": {"mel_bins": 40}}}, "f")
    with pytest.raises(ConfigError, match="mel_bins"):
        bad.create()
    with pytest.raises(ConfigError, match="dtype"):
        _cfg(dtype="int8")
    with pytest.raises(ConfigError, match="unknown"):
        from_dict(FeatureStageConfig, {"name": "fbank", "bogus": 1}, "features.audio")


@pytest.mark.parametrize("workers", [0, 1])
def test_visual_pooled_batches_equal_per_utterance(tmp_path: Path, workers: int) -> None:
    faces = _faces(tmp_path / "faces", COUNTS)
    ext = create_extractor("test_channel_stats", batch_size=16, device="cpu")
    ticks = []
    lengths = extract_visual_split(ext, faces, tmp_path / "out", _cfg(batch_size=16, workers=workers, dtype="float32"),
                                   progress=lambda n, s: ticks.append((n, s["faces"])))
    assert lengths == [COUNTS[u] for u in sorted(COUNTS)]
    assert sum(n for n, _ in ticks) == len(COUNTS) and sum(f for _, f in ticks) == sum(COUNTS.values())
    assert max(ext.calls) == 16, "forwards are full batches of faces"
    assert len(ext.calls) < sum(COUNTS.values()) / 4
    from stage1_face_extraction.store import FaceShardReader

    reader, feats = FaceShardReader(faces), FeatureReader(tmp_path / "out")
    ref = create_extractor("test_channel_stats", batch_size=1000, device="cpu")
    for utt, n in COUNTS.items():
        got = feats.read(utt)
        assert got.shape == (n, 6)
        if n:
            np.testing.assert_allclose(got, ref.extract(reader.read(utt)), rtol=1e-5, atol=1e-6)


def test_visual_bytes_do_not_depend_on_workers(tmp_path: Path) -> None:
    faces = _faces(tmp_path / "faces", COUNTS)
    outs = []
    for workers in (0, 2):
        ext = create_extractor("test_channel_stats", device="cpu")
        out = tmp_path / f"out{workers}"
        extract_visual_split(ext, faces, out, _cfg(workers=workers), info={"extractor": "test_channel_stats"})
        outs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert outs[0] == outs[1]


@pytest.fixture(scope="module")
def layer_norm_w2v(tmp_path_factory) -> Path:
    """A tiny layer-norm wav2vec2 (the large-lv60 layout) whose feature extractor asks for an
    attention mask: batched and single encodings must agree."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=10,
        feat_extract_norm="layer", do_stable_layer_norm=True,
    )  # fmt: skip
    d = tmp_path_factory.mktemp("w2v_ln") / "tiny"
    Wav2Vec2Model(cfg).eval().save_pretrained(d)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True, return_attention_mask=True).save_pretrained(d)
    return d


def _waves(seconds: list[float], seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(s * 16000))).astype(np.float32) for s in seconds]


def test_audio_batch_matches_single_with_attention_mask(layer_norm_w2v: Path) -> None:
    ext = create_extractor("hf_audio", model=str(layer_norm_w2v), device="cpu")
    waves = _waves([0.7, 1.0, 1.3, 0.01])  # the last is too short for a frame
    batched = ext.extract_batch(waves)
    for w, b in zip(waves, batched):
        single = ext.extract(w)
        assert b.shape == single.shape
        np.testing.assert_allclose(b, single, atol=2e-4)
    assert batched[-1].shape == (0, 32)


def _tiny_w2v(folder: Path, norm: str, processor_mask: bool) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=10,
        feat_extract_norm=norm, do_stable_layer_norm=norm == "layer",
    )  # fmt: skip
    Wav2Vec2Model(cfg).eval().save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True,
                             return_attention_mask=processor_mask).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("norm, processor_mask", [("group", False), ("layer", False)])
def test_audio_batch_matches_single_whatever_the_encoder(tmp_path: Path, monkeypatch, norm: str,
                                                         processor_mask: bool) -> None:
    """Issue 19 item 6: batched features equal one-at-a-time ones. Group norm (wav2vec2-base):
    pad-free batches, only equal lengths share a forward; layer norm: the attention mask is passed
    even when the feature extractor does not ask for it."""
    ext = create_extractor("hf_audio", model=str(_tiny_w2v(tmp_path / norm, norm, processor_mask)), device="cpu")
    forwards: list[int] = []
    real = ext._forward_padded
    monkeypatch.setattr(ext, "_forward_padded", lambda ws: forwards.append(len(ws)) or real(ws))
    waves = _waves([0.5, 0.8, 0.8, 1.1, 0.01])  # two of the same length; the last too short for a frame
    batched = ext.extract_batch(waves)
    for w, b in zip(waves, batched):
        single = ext.extract(w)
        assert b.shape == single.shape
        np.testing.assert_allclose(b, single, atol=2e-4)
    assert batched[-1].shape == (0, 32)
    assert forwards == ([2] if norm == "group" else [4])  # group: only the equal pair is batched


def test_audio_split_sorted_batches_and_missing_clip(tmp_path: Path, small_demo: Path, monkeypatch) -> None:
    clips = sorted((small_demo / "train_splits").glob("*.mp4"))[:4]
    items = [(c.stem, c) for c in clips] + [("dia99_utt0", tmp_path / "missing.mp4")]
    ext = create_extractor("fbank")
    seen: list[list[int]] = []
    real = ext.extract_batch
    monkeypatch.setattr(ext, "extract_batch", lambda ws: seen.append([len(w) for w in ws]) or real(ws))
    cfg = from_dict(FeatureStageConfig, {"name": "fbank", "batch_seconds": 6.0, "sort_window": 3, "workers": 1}, "f")
    lengths = extract_audio_split(ext, items, tmp_path / "a", cfg)
    reader = FeatureReader(tmp_path / "a")
    assert reader.utt_ids() == sorted(u for u, _ in items)
    assert reader.length("dia99_utt0") == 0 and sorted(lengths)[0] == 0
    for batch in seen:
        assert batch == sorted(batch), "each batch is sorted by length"
        assert len(batch) * max(batch) <= 6 * 16000 or len(batch) == 1
    from stage1_face_extraction.video import read_audio

    for c in clips:
        np.testing.assert_allclose(reader.read(c.stem), ext.extract(read_audio(c, 16000)), rtol=1e-2, atol=1e-2)


def _params(tmp_path: Path, repo_root: Path, **features) -> Path:
    params = yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))
    for modality, upd in features.items():
        upd = dict(upd)
        if "workers" in upd:  # a runner knob: runtime.features.<modality>.workers
            params["runtime"]["features"][modality]["workers"] = upd.pop("workers")
        params["features"][modality].update(upd)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def test_stage_visual_and_audio(tmp_path: Path, repo_root: Path, small_demo: Path) -> None:
    faces = tmp_path / "faces"
    _faces(faces / "train", {"dia0_utt0": 4, "dia0_utt1": 6})
    _faces(faces / "dev", {"dia0_utt0": 2})
    params = _params(tmp_path, repo_root, visual={"name": "test_channel_stats", "workers": 0},
                     audio={"name": "fbank", "workers": 0})
    out = tmp_path / "features"
    argv = ["--params", str(params), "--modality", "visual", "--faces", str(faces), "--out", str(out / "visual"),
            "--summary", str(tmp_path / "v.json")]
    assert stage.main(argv) == 0
    summary = json.loads((tmp_path / "v.json").read_text())
    assert summary["extractor"] == "test_channel_stats" and summary["dim"] == 6
    assert summary["splits"]["train"]["rows"] == 10 and summary["splits"]["dev"]["utterances"] == 1
    assert summary["mean3std_len"] == 6  # mean+3std of [4, 6] = 8, capped at the longest
    assert (out / "visual" / "test_channel_stats" / "summary.json").read_bytes() == (tmp_path / "v.json").read_bytes()
    assert FeatureReader(out / "visual" / "test_channel_stats" / "train").length("dia0_utt1") == 6
    # audio, on the small demo's utterance table
    from stage1_face_extraction.stages import prepare

    pp = yaml.safe_load(params.read_text())
    pp["data"]["meld_root"] = str(small_demo)
    params.write_text(yaml.safe_dump(pp, sort_keys=False))
    table = tmp_path / "utt.parquet"
    assert prepare.main(["--params", str(params), "--out", str(table)]) == 0
    argv = ["--params", str(params), "--modality", "audio", "--utterances", str(table), "--meld-root",
            str(small_demo), "--out", str(out / "audio"), "--splits", "dev"]
    assert stage.main(argv) == 0
    reader = FeatureReader(out / "audio" / "fbank" / "dev")
    assert len(reader) == 4 and reader.dim == 80 and min(reader.lengths()) > 150  # 2-3 s at 100 frames/s


def test_stage_errors(tmp_path: Path, repo_root: Path, caplog) -> None:
    out = str(tmp_path / "o")
    params = _params(tmp_path, repo_root, visual={"name": "fbank"})
    with caplog.at_level("ERROR"):
        assert stage.main(["--params", str(params), "--modality", "visual", "--faces", out, "--out", out]) == 2
    assert "audio extractor" in caplog.text
    params = _params(tmp_path, repo_root, visual={"name": "inception_resnet_v1",
                                                  "extractors": {"inception_resnet_v1": {"weights": "models/nope.pt"}}})
    caplog.clear()
    with caplog.at_level("ERROR"):
        assert stage.main(["--params", str(params), "--modality", "visual", "--faces", out, "--out", out]) == 2
    assert "nope.pt" in caplog.text
    with pytest.raises(SystemExit):
        stage.main(["--params", str(params), "--modality", "audio", "--out", out])  # needs --utterances
