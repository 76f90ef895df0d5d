"""Learned active-speaker scorers (TalkNet, Light-ASD, LR-ASD): published layout, loading, inference, fine-tuning."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.fft import dct

from stage1_face_extraction.asd import CheckpointError, create_scorer, extract_patch, list_scorers
from stage1_face_extraction.asd.finetune import FinetuneConfig, clip_tracks, load_labelled_corpus, prepare_tracks
from stage1_face_extraction.asd.learned import resample_to_grid, smooth
from stage1_face_extraction.asd.lr_asd_net import LRASD
from stage1_face_extraction.asd.mfcc import mfcc_13, n_mfcc_rows
from stage1_face_extraction.asd.nets import LightASD, TalkNet
from stage1_face_extraction.common.config import ConfigError

FPS = 24000 / 1001

# (key, shape) facts of the published checkpoints (TalkNet-ASD / Light-ASD repositories)
TALKNET_KEYS = {
    "model.visualFrontend.frontend3D.0.weight": (64, 1, 5, 7, 7),
    "model.visualFrontend.frontend3D.1.running_var": (64,),
    "model.visualFrontend.resnet.layer1.downsample.weight": (64, 64, 1, 1),
    "model.visualFrontend.resnet.layer4.conv1a.weight": (512, 256, 3, 3),
    "model.visualFrontend.resnet.layer4.outbnb.bias": (512,),
    "model.visualTCN.net.4.net.2.weight": (512, 1, 3),
    "model.visualTCN.net.0.net.3.weight": (1,),
    "model.visualTCN.net.0.net.4.gamma": (1, 512, 1),
    "model.visualConv1D.net.0.weight": (256, 512, 5),
    "model.visualConv1D.net.3.weight": (128, 256, 1),
    "model.audioEncoder.conv1.weight": (16, 1, 7, 7),
    "model.audioEncoder.layer1.2.se.fc.0.weight": (2, 16),
    "model.audioEncoder.layer2.0.downsample.0.weight": (32, 16, 1, 1),
    "model.audioEncoder.layer3.5.conv2.weight": (64, 64, 3, 3),
    "model.audioEncoder.layer4.0.downsample.1.running_mean": (128,),
    "model.crossA2V.self_attn.in_proj_weight": (384, 128),
    "model.crossV2A.linear1.weight": (512, 128),
    "model.selfAV.self_attn.out_proj.weight": (256, 256),
    "model.selfAV.norm2.weight": (256,),
    "lossAV.FC.weight": (2, 256),
    "lossA.FC.weight": (2, 128),
    "lossV.FC.bias": (2,),
}
LIGHT_KEYS = {
    "model.visualEncoder.block1.s_3.weight": (32, 1, 1, 3, 3),
    "model.visualEncoder.block1.s_5.weight": (32, 1, 1, 5, 5),
    "model.visualEncoder.block1.t_5.weight": (32, 32, 5, 1, 1),
    "model.visualEncoder.block3.last.weight": (128, 128, 1, 1, 1),
    "model.visualEncoder.block2.bn_t_3.running_mean": (64,),
    "model.audioEncoder.block1.m_3.weight": (32, 1, 3, 1),
    "model.audioEncoder.block2.t_5.weight": (64, 64, 1, 5),
    "model.audioEncoder.block3.bn_last.weight": (128,),
    "model.GRU.gru_forward.weight_ih_l0": (384, 128),
    "model.GRU.gru_backward.bias_hh_l0": (384,),
    "lossAV.FC.weight": (2, 128),
    "lossV.FC.weight": (2, 128),
}
LR_KEYS = {
    "model.visualEncoder.block1.s_1.weight": (16, 1, 1, 5, 5),
    "model.visualEncoder.block1.s_2.weight": (32, 16, 1, 3, 3),
    "model.visualEncoder.block2.t_1.weight": (64, 64, 5, 1, 1),
    "model.visualEncoder.block3.t_norm_2.running_var": (128,),
    "model.audioEncoder.block1.m_1.weight": (16, 1, 5, 1),
    "model.audioEncoder.block2.m_2.weight": (64, 32, 3, 1),
    "model.audioEncoder.block3.t_2.weight": (128, 128, 1, 3),
    "model.fusion.attention.weight": (256, 256, 1),
    "model.fusion.bn.running_mean": (256,),
    "model.detector.gru_forward.weight_ih_l0": (192, 256),
    "model.detector.gru_backward.weight_hh_l0": (192, 64),
    "model.detector.attention.attention.weight": (128, 128, 1),
    "model.detector.attention.bn.bias": (128,),
    "lossAV.FC.weight": (2, 128),
    "lossV.FC.weight": (2, 128),
}


@pytest.fixture(scope="module")
def mini_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 2-second demo clips (train split) with ground truth."""
    from stage1_face_extraction.common.config import from_dict
    from stage1_face_extraction.demo.generate import DemoConfig, generate_corpus

    out = tmp_path_factory.mktemp("asd_demo") / "MELD.Raw"
    cfg = {"seed": 5, "dialogues_per_split": {"train": 1, "dev": 0, "test": 0}, "utterances_min": 2,
           "utterances_max": 2, "duration_min_s": 2.0, "duration_max_s": 2.2, "p_cut_to_listener": 0.0,
           "p_speaker_off_screen": 0.0, "workers": 1}
    generate_corpus(from_dict(DemoConfig, cfg, "demo"), out)
    return out


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _random_net(cls, seed: int = 0):
    torch.manual_seed(seed)
    net = cls()
    with torch.no_grad():  # non-trivial BN statistics, as a trained file has
        for name, buf in net.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0.0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
    return net.eval()


# ------------------------------------------------------------------------------------------------
# MFCC


def _mfcc_by_definition(x: np.ndarray) -> np.ndarray:
    """python_speech_features.mfcc(x, 16000, numcep=13, winlen=0.025, winstep=0.01) written out
    loop by loop from its documented steps (x already at int16 scale)."""
    y = np.append(x[0], x[1:] - 0.97 * x[:-1])
    n = 1 if len(y) <= 400 else 1 + int(np.ceil((len(y) - 400) / 160))
    y = np.concatenate([y, np.zeros((n - 1) * 160 + 400 - len(y))])
    mel = np.linspace(0.0, 2595 * np.log10(1 + 8000 / 700.0), 28)
    bins = np.floor(513 * (700 * (10 ** (mel / 2595.0) - 1)) / 16000)
    fb = np.zeros((26, 257))
    for j in range(26):
        for i in range(int(bins[j]), int(bins[j + 1])):
            fb[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(int(bins[j + 1]), int(bins[j + 2])):
            fb[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    rows = []
    for r in range(n):
        p = np.abs(np.fft.rfft(y[r * 160 : r * 160 + 400], 512)) ** 2 / 512
        c = dct(np.log(np.maximum(fb @ p, np.finfo(float).eps)), type=2, norm="ortho")[:13]
        c *= 1 + 11 * np.sin(np.pi * np.arange(13) / 22)
        c[0] = np.log(p.sum())
        rows.append(c)
    return np.array(rows)


def test_mfcc_matches_python_speech_features_definition() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(int(0.37 * 16000)) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    got = mfcc_13(audio)
    want = _mfcc_by_definition(audio.astype(np.float64) * 32768.0)
    assert got.shape == want.shape == (n_mfcc_rows(t.size), 13)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    assert [n_mfcc_rows(n) for n in (1, 400, 401, 560, 561, 16000)] == [1, 1, 2, 2, 3, 99]
    # the int16 scale is part of the contract: float input in [-1, 1] is scaled by 32768
    assert abs(float(mfcc_13(audio, int16_scale=False)[5, 0]) - float(got[5, 0]) + 2 * np.log(32768.0)) < 1e-3


# ------------------------------------------------------------------------------------------------
# architectures


@pytest.mark.parametrize("cls, facts, n_params", [
    (TalkNet, TALKNET_KEYS, 15_743_451), (LightASD, LIGHT_KEYS, 1_021_120), (LRASD, LR_KEYS, 836_640),
])
def test_published_key_layout_and_size(cls, facts: dict, n_params: int) -> None:
    net = cls()
    sd = net.state_dict()
    for key, shape in facts.items():
        assert key in sd, key
        assert tuple(sd[key].shape) == shape, key
    assert all(k.split(".")[0] in ("model", "lossAV", "lossA", "lossV") for k in sd)
    assert sum(p.numel() for p in net.model.parameters()) == n_params  # TalkNet 15.0 Mi, Light-ASD 1.0 M, LR-ASD 0.84 M
    with torch.no_grad():
        out = net.eval()(torch.randn(2, 4 * 7, 13), torch.rand(2, 7, 112, 112))
    assert tuple(out["av"].shape) == (2, 7, 2)


def test_registered() -> None:
    assert {"av_sync", "talknet", "light_asd", "lr_asd"} <= set(list_scorers())


# ------------------------------------------------------------------------------------------------
# loading the published files and scoring


def test_random_published_checkpoint_loads_and_scores_a_demo_clip(tmp_path: Path, mini_demo: Path) -> None:
    from stage1_face_extraction.pipeline import FacePipeline
    from stage1_face_extraction.section import Stage1Config

    truth = json.loads((mini_demo / "truth.json").read_text())
    clip = next(c for _, c in sorted(truth["clips"].items()) if c["speaker_visible_frames"])
    for name, cls, prefix in (("light_asd", LightASD, ""), ("talknet", TalkNet, "module.")):
        net = _random_net(cls, seed=1)
        path = tmp_path / f"pretrain_{name}.model"
        torch.save({prefix + k: v for k, v in net.state_dict().items()}, path)  # as the repositories save it
        cfg = Stage1Config(asd={"name": name, "checkpoint": str(path), "vad": "energy", "windows_s": [1, 2]})
        pipe = FacePipeline(cfg)
        loaded = pipe.scorer.net.state_dict()
        for k, v in net.state_dict().items():
            assert torch.equal(loaded[k].cpu(), v), k
        res = pipe.process(mini_demo / clip["path"], utt_id=clip["utt_id"], speaker=clip["speaker"])
        assert res.record["status"] in ("ok", "no_speaker"), res.record
        assert res.tracks, "the demo clip has faces"
        assert pipe.scorer.last_info["audio_used"] and pipe.scorer.last_info["forwards"] >= 2
        for t in res.tracks:
            assert t.speaking.shape == (len(t),) and t.speaking.dtype == np.float32
            assert np.all((t.speaking >= 0) & (t.speaking <= 1))
        assert np.std(np.concatenate([t.speaking for t in res.tracks])) > 0  # a real forward, not a constant


@pytest.mark.parametrize(
    "name", ["light_asd", "lr_asd", pytest.param("talknet", marks=pytest.mark.slow)]
)  # talknet: ~20 s on 1 core
def test_batched_scores_equal_one_track_at_a_time(name: str) -> None:
    scorer = create_scorer(name, random_init=True, vad="energy", windows_s=[1, 2])
    scorer.net.load_state_dict(_random_net(type(scorer.net), seed=2).state_dict())
    rng = np.random.default_rng(0)
    lengths, starts = (30, 30, 14), (0, 0, 11)
    patches = [rng.random((n, 112, 112), dtype=np.float32) for n in lengths]
    times = [(s + np.arange(n)) / FPS for s, n in zip(starts, lengths)]
    audio = (0.1 * rng.standard_normal(2 * 16000)).astype(np.float32)
    together = scorer.score(patches, times, audio, 16000, FPS)
    forwards = scorer.last_info["forwards"]
    alone, forwards_alone = [], 0
    for p, t in zip(patches, times):
        alone.append(scorer.score([p], [t], audio, 16000, FPS)[0])
        forwards_alone += scorer.last_info["forwards"]
    tol = 1e-5 if scorer.device == "cpu" else 2e-3  # CUDA: TF32 convolutions, batch-size-dependent kernels
    for a, b, n in zip(together, alone, lengths):
        assert a.shape == (n,)
        np.testing.assert_allclose(a, b, atol=tol)
    # one forward per (window size, window length), shared by all tracks: fewer than per track
    assert forwards <= 5 < forwards_alone
    # the scores depend on the audio (an audio-visual model), and no audio still scores
    tone = (0.5 * np.sin(2 * np.pi * 300 * np.arange(audio.size) / 16000)).astype(np.float32)
    other = scorer.score(patches, times, tone, 16000, FPS)
    assert max(float(np.abs(a - b).max()) for a, b in zip(together, other)) > 1e-4
    silent = scorer.score(patches, times, None, 16000, FPS)
    assert scorer.last_info["status_hint"] == "no_audio" and [s.shape for s in silent] == [(n,) for n in lengths]


def test_resample_to_grid_25fps() -> None:
    t = np.arange(10, 58) / FPS  # 48 frames at 23.976 fps from 0.417 s
    k, rows = resample_to_grid(t, FPS)
    assert k[0] == int(np.ceil((t[0] - 0.5 / FPS) * 25)) and np.all(np.diff(k) == 1)
    assert len(k) in (49, 50, 51)  # 2.0 s of video
    assert np.all(np.diff(rows) >= 0) and rows[0] == 0 and rows[-1] == 47
    assert np.all(np.abs(t[rows] - k / 25.0) <= 0.5 / FPS + 1e-9)  # nearest source frame
    assert np.sum(np.diff(rows) == 0) >= 1  # 24 -> 25 fps duplicates a frame
    k25, rows25 = resample_to_grid(np.arange(5, 30) / 25.0, 25.0)
    assert list(k25) == list(range(5, 30)) and list(rows25) == list(range(25))


def test_smooth_keeps_the_length_and_truncates_at_the_ends() -> None:
    x = np.array([0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    got = smooth(x, 5)
    want = [np.mean(x[max(0, i - 2): i + 3]) for i in range(len(x))]
    np.testing.assert_allclose(got, want)
    for n in range(1, 8):  # shorter than the window too: np.convolve(mode="same") returned 5 values here
        for width in (1, 2, 4, 5, 9):
            assert smooth(np.random.default_rng(n).random(n), width).shape == (n,), (n, width)
    assert np.allclose(smooth(np.full(3, 0.7), 5), 0.7)


def test_short_tracks_among_long_ones_score() -> None:
    """Regression: a 22 s 30 fps clip with a 2-4 frame track (fewer 25 fps grid points than
    ``smooth_frames``) raised "fp and xp are not of the same length" in np.interp."""
    scorer = create_scorer("light_asd", random_init=True, vad="none", windows_s=[1, 2])
    fps = 30.0
    rng = np.random.default_rng(1)
    # (first frame, frames): long tracks, 2-4 frame tracks, a 1-frame one, one starting at 0,
    # one ending at the clip's last frame
    spans = [(0, 90), (40, 3), (75, 2), (100, 4), (150, 1), (12, 5), (30, 60), (176, 4)]
    patches = [rng.random((n, 112, 112), dtype=np.float32) for _, n in spans]
    times = [(s + np.arange(n)) / fps for s, n in spans]
    audio = (0.1 * rng.standard_normal(6 * 16000)).astype(np.float32)
    out = scorer.score(patches, times, audio, 16000, fps)
    assert [o.shape for o in out] == [(n,) for _, n in spans]
    assert all(o.dtype == np.float32 and np.all((o >= 0) & (o <= 1)) for o in out)
    # a short track's score does not depend on the long tracks scored with it
    alone = scorer.score([patches[1]], [times[1]], audio, 16000, fps)[0]
    np.testing.assert_allclose(out[1], alone, atol=1e-5 if scorer.device == "cpu" else 2e-3)
    # without audio (visual head) too
    assert [o.shape for o in scorer.score(patches, times, None, 16000, fps)] == [(n,) for _, n in spans]


def test_face_crop_is_mouth_centred_like_the_reference() -> None:
    scorer = create_scorer("light_asd", random_init=True, vad="none")
    spec = scorer.input_spec
    assert (spec.kind, spec.size, spec.gray, spec.fps) == ("face", (112, 112), True, 25.0)
    img = np.zeros((400, 400, 3), np.uint8)
    box = np.array([100.0, 100.0, 200.0, 200.0])  # centre (150, 150), side 100
    img[165:175, 145:155] = 255  # a bright spot 0.2 box sides below the centre: the crop centre
    patch = extract_patch(img, box, None, spec)
    ys, xs = np.nonzero(patch > 0.5)
    assert abs(ys.mean() - 55.5) < 2 and abs(xs.mean() - 55.5) < 2
    assert 14 < len(ys) ** 0.5 < 18  # 10 px at 112 / 70 px per crop = 16 px


# ------------------------------------------------------------------------------------------------
# wrong files


def test_wrong_or_truncated_checkpoints_fail_clearly(tmp_path: Path) -> None:
    light = tmp_path / "finetuning_TalkSet.model"
    torch.save(LightASD().state_dict(), light)
    with pytest.raises(CheckpointError, match="light_asd checkpoint.*set stage1.asd.name: light_asd"):
        create_scorer("talknet", checkpoint=str(light))
    lr = tmp_path / "lr_asd.model"
    torch.save(LRASD().state_dict(), lr)
    with pytest.raises(CheckpointError, match="lr_asd checkpoint.*set stage1.asd.name: lr_asd"):
        create_scorer("light_asd", checkpoint=str(lr))
    with pytest.raises(CheckpointError, match="light_asd checkpoint.*set stage1.asd.name: light_asd"):
        create_scorer("lr_asd", checkpoint=str(light))
    truncated = tmp_path / "truncated.model"
    truncated.write_bytes(light.read_bytes()[: light.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        create_scorer("light_asd", checkpoint=str(truncated))
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"<html>404 not found</html>" * 10)
    with pytest.raises(CheckpointError, match="not a torch checkpoint|truncated"):
        create_scorer("light_asd", checkpoint=str(garbage))
    with pytest.raises(CheckpointError, match="not found"):
        create_scorer("light_asd", checkpoint=str(tmp_path / "absent.model"))
    sd = LightASD().state_dict()
    sd["lossAV.FC.weight"] = torch.zeros(3, 128)
    del sd["lossV.FC.bias"]
    sd["model.extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.model"
    torch.save(sd, bad)
    with pytest.raises(
        CheckpointError, match="1 missing key.*lossV.FC.bias.*1 unexpected.*1 wrong shape.*lossAV.FC.weight"
    ):
        create_scorer("light_asd", checkpoint=str(bad))
    st = tmp_path / "cut.safetensors"
    from safetensors.torch import save_file

    save_file(LightASD().state_dict(), str(st))
    st.write_bytes(st.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or not a safetensors"):
        create_scorer("light_asd", checkpoint=str(st))


def test_pickled_objects_are_refused_with_no_way_around(tmp_path: Path) -> None:
    """A checkpoint that pickles a class (here argparse.Namespace, in the real world possibly
    os.system) is never unpickled: a clear error, and the old trusted_checkpoint flag is gone
    (an unknown key), so no params value can turn the full unpickle on."""
    import os

    path = tmp_path / "pickled.model"
    torch.save({"args": argparse.Namespace(lr=0.001), **LightASD().state_dict()}, path)
    with pytest.raises(CheckpointError, match="pickled objects.*convert it once"):
        create_scorer("light_asd", checkpoint=str(path))
    with pytest.raises(ConfigError, match="trusted_checkpoint"):
        create_scorer("light_asd", checkpoint=str(path), trusted_checkpoint=True)
    # a file naming os.system (a payload that would run a shell on unpickle) fails the same way, and
    # nothing ran: the canary file is never created
    canary = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {canary}",))

    evil = tmp_path / "evil.model"
    torch.save({"x": Payload(), **LightASD().state_dict()}, evil)
    with pytest.raises(CheckpointError, match="pickled objects"):
        create_scorer("light_asd", checkpoint=str(evil))
    assert not canary.exists()
    # the published form, a plain state dict, loads
    plain = tmp_path / "plain.model"
    torch.save(LightASD().state_dict(), plain)
    create_scorer("light_asd", checkpoint=str(plain))


def test_config_is_strict() -> None:
    with pytest.raises(ConfigError, match="checkpont"):
        create_scorer("light_asd", checkpont="x.model")
    with pytest.raises(ValueError, match="asd.checkpoint is required"):
        create_scorer("talknet")


# ------------------------------------------------------------------------------------------------
# fine-tuning


def test_clip_tracks_labels_and_cuts() -> None:
    def face(name: str, x: float, spk: bool = False) -> dict:
        return {"name": name, "box": [x, 50, x + 40, 90], "speaker": spk}

    frames = [{"frame": i, "t": i / 25, "faces": [face("A", 10, True), face("B", 200)]} for i in range(6)]
    frames += [{"frame": i, "t": i / 25, "faces": [face("B", 400)]} for i in range(6, 9)]  # cut: B jumps
    frames[2]["faces"][1]["speaking"] = True  # an explicit label wins
    tracks = clip_tracks({"frames": frames, "speech": [[0.07, 0.17]]})
    assert [len(t.frames) for t in tracks] == [6, 6, 3]
    a, b, b2 = tracks
    assert a.labels.tolist() == [False, False, True, True, True, False]  # t in [0.07, 0.17)
    assert b.labels.tolist() == [False, False, True, False, False, False]
    assert b2.frames.tolist() == [6, 7, 8] and not b2.labels.any()


def test_finetune_cli_writes_safetensors_the_scorer_loads(tmp_path: Path, mini_demo: Path) -> None:
    from stage1_face_extraction.stages import finetune_asd

    clips = load_labelled_corpus(mini_demo / "truth.json", splits=["train"])
    cfg = FinetuneConfig()
    tracks = prepare_tracks(clips[:1], cfg)
    assert tracks and all(len(t.mfcc) == 4 * len(t.labels) == 4 * len(t.video) for t in tracks)
    assert any(t.labels.any() for t in tracks) and any(not t.labels.all() for t in tracks)
    out = tmp_path / "asd"
    rc = finetune_asd.main([
        "--truth", str(mini_demo / "truth.json"), "--out", str(out), "--arch", "light_asd", "--epochs", "1",
        "--window-frames", "12", "--hop-frames", "12", "--batch-size", "8", "--no-progress",
    ])
    assert rc == 0
    weights, sidecar = out / "light_asd.safetensors", out / "light_asd.json"
    meta = json.loads(sidecar.read_text())
    assert meta["arch"] == "light_asd" and meta["train"]["steps"] >= 1 and meta["input"]["crop_scale"] == 0.7
    scorer = create_scorer("light_asd", checkpoint=str(weights), vad="none")
    from safetensors.torch import load_file

    trained = load_file(str(weights))
    torch.manual_seed(0)  # the CLI's default seed: the network training started from
    start = LightASD().state_dict()
    assert not torch.equal(trained["lossAV.FC.weight"], start["lossAV.FC.weight"])  # it trained
    assert not torch.equal(trained["model.visualEncoder.block1.bn_s_3.running_var"],
                           start["model.visualEncoder.block1.bn_s_3.running_var"])  # BN statistics re-estimated
    for k, v in scorer.net.state_dict().items():
        assert torch.equal(v.cpu(), trained[k]), k
    # a sidecar naming the other architecture is refused
    meta["arch"] = "talknet"
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="arch 'talknet'"):
        create_scorer("light_asd", checkpoint=str(weights))


def test_lr_asd_trains_with_its_published_loss() -> None:
    from stage1_face_extraction.asd.finetune import _loss

    cfg = FinetuneConfig(arch="lr_asd")
    assert cfg.learning_rate == 1e-3
    torch.manual_seed(0)
    net = LRASD().train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    a, v = torch.randn(2, 4 * 8, 13), torch.rand(2, 8, 64, 64)  # any face size runs; small is fast
    y = (torch.arange(8)[None].repeat(2, 1) >= 4).long()
    losses = []
    for _ in range(6):
        loss = _loss("lr_asd", net(a, v), y, epoch=1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all() and losses[-1] < losses[0]  # its two heads learn


def test_finetune_config_is_strict(tmp_path: Path) -> None:
    from stage1_face_extraction.stages import finetune_asd

    assert finetune_asd.main(["--truth", str(tmp_path / "none.json"), "--out", str(tmp_path)]) == 2
    with pytest.raises(ValueError, match="arch"):
        FinetuneConfig(arch="syncnet")


# ---------------------------------------------------------------------------------- learned_sync


def test_learned_sync_is_the_product_of_its_terms() -> None:
    """``learned_sync`` at ``sync_power`` 1 = the learned probability x av_sync on the mouth region
    of the same crops; a config naming a non-learned scorer or an unknown sync key fails."""
    rng = np.random.default_rng(0)
    fps, sr, n = 25.0, 16000, 75
    scorer = create_scorer("learned_sync", learned={"name": "light_asd", "random_init": True, "windows_s": [1, 2]},
                           sync={"vad": "energy"}, sync_power=1.0)
    assert scorer.input_spec == scorer.learned.input_spec and scorer.input_spec.size == (112, 112)
    times = np.arange(n) / fps
    crops = [rng.random((n, 112, 112), dtype=np.float32), rng.random((40, 112, 112), dtype=np.float32)]
    t = [times, times[10:50]]
    audio = (0.3 * rng.standard_normal(int(n / fps * sr))).astype(np.float32)
    got = scorer.score(crops, t, audio, sr, fps)
    p = scorer.learned.score(crops, t, audio, sr, fps)
    y = scorer.sync.score([scorer.mouth_patches(c) for c in crops], t, audio, sr, fps)
    assert [g.shape for g in got] == [(n,), (40,)]
    for g, a, b in zip(got, p, y):
        np.testing.assert_allclose(g, np.clip(a * b, 0, 1), rtol=1e-5, atol=1e-6)
    assert scorer.mouth_patches(crops[0]).shape == (n,) + tuple(scorer.sync.input_spec.size)
    with pytest.raises((ConfigError, ValueError), match="learned scorer"):
        create_scorer("learned_sync", learned={"name": "av_sync"})
    with pytest.raises(ConfigError):
        create_scorer("learned_sync", learned={"name": "light_asd", "random_init": True}, sync={"windw_s": 2})


def test_learned_sync_power_spreads_weak_sync_and_keeps_its_order() -> None:
    """With ``sync_power`` g the score is p * y ** g: a talking face with a weak sync term keeps
    evidence the product would crush, two talking faces keep the order of their sync terms, a quiet
    face stays low, and the scorer reports both terms per track (what learned_sync_sweep.py replays)."""
    from stage1_face_extraction.asd.learned_sync import combine_terms

    p = np.array([0.99, 0.99, 0.02], np.float32)  # talking, talking, quiet
    y = np.array([0.05, 0.60, 0.90], np.float32)
    np.testing.assert_allclose(combine_terms(p, y, 1.0), p * y, rtol=1e-6)  # g = 1: the product
    got = combine_terms(p, y, 0.5)
    np.testing.assert_allclose(got, p * np.sqrt(y), rtol=1e-5)
    assert got[0] > 0.2 > (p * y)[0]  # the weak-sync talker clears a 0.2 bar only with g < 1
    assert got[1] > got[0] > got[2]  # sync still orders the talkers; the quiet face stays low
    assert combine_terms(np.ones(2), np.array([-0.5, 2.0]), 0.5).tolist() == pytest.approx([0.0, 1.0])

    rng = np.random.default_rng(1)
    fps, sr, n = 25.0, 16000, 50
    scorer = create_scorer("learned_sync", learned={"name": "light_asd", "random_init": True, "windows_s": [1, 2]},
                           sync={"vad": "energy"})
    assert scorer.cfg.sync_power == 0.5  # the calibrated default
    crops = [rng.random((n, 112, 112), dtype=np.float32)]
    times = [np.arange(n) / fps]
    audio = (0.3 * rng.standard_normal(int(n / fps * sr))).astype(np.float32)
    got = scorer.score(crops, times, audio, sr, fps)[0]
    p, y = scorer.last_info["learned"][0], scorer.last_info["sync"][0]
    np.testing.assert_allclose(got, np.clip(p * np.clip(y, 0, 1) ** 0.5, 0, 1), rtol=1e-5, atol=1e-6)
    for bad in (0.0, 1.5):
        with pytest.raises((ConfigError, ValueError), match="sync_power"):
            create_scorer("learned_sync", learned={"name": "light_asd", "random_init": True}, sync_power=bad)
