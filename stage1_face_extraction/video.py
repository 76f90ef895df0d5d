"""Streamed clip decoding with PyAV: RGB frames with timestamps, and 16 kHz mono audio.

Frames are decoded one at a time (memory does not grow with clip length) and each carries its
presentation time ``t`` in seconds on ONE clip time base shared with the audio:

* ``t = 0`` is the clip origin: the earliest start time among the video and audio streams
  (the container start time when no stream states one), so ``t >= 0`` for every frame.
* :func:`read_audio` returns samples whose sample 0 sits at ``t = 0``: when the audio stream
  starts after the origin, leading silence is padded; samples before the origin are cut.
* ``t`` comes from each frame's pts (correct for variable frame rate); a frame without pts
  gets ``t`` extrapolated from the last timed frame at the stream's average frame rate (or
  ``index / fps`` when no frame carries a pts).

Rotation metadata (the display matrix side data phones write) is applied to the frames, so
images come out as a player would show them; :class:`VideoInfo` reports display width/height
and the rotation in degrees counter-clockwise (0, 90, 180 or 270).

Errors: :class:`DecodeError` for anything that is not a decodable video (zero-byte file, text
file, truncated container, no video stream, corrupt packets that stop the decoder), with the
path in the message; a missing path raises the built-in :class:`FileNotFoundError`.
:func:`read_audio` raises :class:`NoAudioError` when the clip has no audio stream (check
``probe(path).has_audio`` first to avoid it).

    info = probe("dia0_utt0.mp4")
    for frame in iter_frames("dia0_utt0.mp4", stride=2, max_side=640):
        frame.image  # (H, W, 3) uint8 RGB
    wav = read_audio("dia0_utt0.mp4")  # (n,) float32 at 16 kHz

:func:`write_video` writes H.264 (+ AAC) mp4 clips (synthetic corpora, tests), streaming too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from . import bitexact
from .records import Frame, VideoInfo

logger = logging.getLogger(__name__)

__all__ = [
    "DecodeError", "NoAudioError", "probe", "iter_frames", "read_audio", "clip_origin", "write_video",
]


class DecodeError(RuntimeError):
    """The file is not a decodable video (corrupt, truncated, unreadable, no video stream)."""


class NoAudioError(DecodeError):
    """The clip has no audio stream."""


# ------------------------------------------------------------------------------------------ helpers


@contextmanager
def _open(path: str | Path):
    """Open ``path`` for reading; av errors become :class:`DecodeError` naming the path."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video file not found: {path}")
    if path.is_dir():
        raise DecodeError(f"{path}: is a directory, not a video file")
    if path.stat().st_size == 0:
        raise DecodeError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(str(path), mode="r")
    except av.FFmpegError as exc:
        raise DecodeError(f"{path}: cannot open as a media file ({exc})") from exc
    try:
        yield container
    finally:
        container.close()


def _video_stream(container, path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise DecodeError(f"{path}: no video stream (truncated or not a video file)")
    return container.streams.video[0]


def _seconds(value: int | None, time_base: Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def clip_origin(container) -> float:
    """Clip time origin in seconds: the earliest video/audio stream start (see module doc)."""
    starts = []
    for stream in list(container.streams.video[:1]) + list(container.streams.audio[:1]):
        s = _seconds(stream.start_time, stream.time_base)
        if s is not None:
            starts.append(s)
    if starts:
        return min(starts)
    if container.start_time is not None:  # microseconds (AV_TIME_BASE)
        return container.start_time / 1_000_000
    return 0.0


def _stream_fps(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return 25.0  # nothing declared: a common default, only used to date frames without pts


def _normalise_rotation(deg: float | int | None) -> int:
    """Degrees counter-clockwise from a display matrix -> one of 0, 90, 180, 270."""
    if deg is None or (isinstance(deg, float) and math.isnan(deg)):
        return 0
    return int(round(float(deg) / 90.0)) % 4 * 90


def _apply_rotation(image: np.ndarray, rotation: int) -> np.ndarray:
    # image: (H, W, 3); rotation counter-clockwise degrees as in the display matrix
    if rotation == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, k=rotation // 90))


def _frame_rotation(frame) -> int:
    try:
        return _normalise_rotation(frame.rotation)
    except (AttributeError, ValueError, TypeError):  # no side data, or an odd matrix
        return 0


def _target_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    # even sizes keep swscale on its fast paths; never below 2 pixels
    w = max(2, int(round(width * scale / 2)) * 2)
    h = max(2, int(round(height * scale / 2)) * 2)
    return min(w, max_side), min(h, max_side)


# --------------------------------------------------------------------------------------------- API


def probe(path: str | Path) -> VideoInfo:
    """Stream facts of a clip (container header plus the first decoded frame for rotation).

    ``n_frames`` is the header's frame count when present, else ``duration * fps`` rounded
    (an estimate; count frames with :func:`iter_frames` for the exact number). ``width`` and
    ``height`` are display sizes (after rotation).
    """
    with _open(path) as container:
        vs = _video_stream(container, path)
        fps = _stream_fps(vs)
        width, height = vs.codec_context.width, vs.codec_context.height
        rotation = 0
        try:
            for frame in container.decode(vs):
                rotation = _frame_rotation(frame)
                width, height = frame.width, frame.height
                break
        except av.FFmpegError as exc:
            raise DecodeError(f"{path}: cannot decode the first video frame ({exc})") from exc
        if rotation in (90, 270):
            width, height = height, width
        duration = _seconds(vs.duration, vs.time_base)
        if duration is None and container.duration is not None:
            duration = container.duration / 1_000_000
        duration = float(duration or 0.0)
        n_frames = int(vs.frames or 0) or int(round(duration * fps))
        return VideoInfo(
            path=str(path),
            fps=fps,
            n_frames=n_frames,
            width=int(width),
            height=int(height),
            duration_s=duration,
            has_audio=bool(container.streams.audio),
            rotation=rotation,
        )


def iter_frames(
    path: str | Path,
    *,
    stride: int = 1,
    max_side: int | None = None,
    threads: bool = True,
    max_bad_packets: int = 0,
) -> Iterator[Frame]:
    """Yield every ``stride``-th decoded frame of ``path`` as RGB uint8, streaming.

    Args:
        stride: keep frames whose decode index is a multiple of ``stride`` (all frames are still
            decoded, as inter-coded video requires; skipped ones are never converted to RGB).
        max_side: downscale (keeping aspect ratio, even sizes) so that max(H, W) <= max_side.
        threads: let FFmpeg decode with its own threads (frame/slice threading).
        max_bad_packets: corrupt packets to skip (with a warning) before giving up; 0 = strict.

    Yields:
        :class:`Frame` with ``index`` (index among ALL decoded frames, so indices of a strided
        read are 0, stride, 2*stride, ...), ``t`` seconds on the clip time base and ``image``
        (H, W, 3) uint8 RGB after rotation and downscaling.

    Raises:
        DecodeError: not a video, or more than ``max_bad_packets`` corrupt packets (frames
            already yielded stay valid).
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if max_side is not None and max_side < 2:
        raise ValueError(f"max_side must be >= 2, got {max_side}")
    with _open(path) as container:
        vs = _video_stream(container, path)
        if threads:
            vs.thread_type = "AUTO"
        origin = clip_origin(container)
        fps = _stream_fps(vs)
        state = {"index": -1, "last_t": None, "last_t_index": -1}
        bad = 0
        for packet in _demux(container, vs, path):
            try:
                frames = packet.decode()  # [] while the decoder buffers; flush packet at the end
            except av.FFmpegError as exc:
                bad += 1
                if bad > max_bad_packets:
                    raise DecodeError(
                        f"{path}: decoding failed after {state['index'] + 1} frame(s) ({exc})"
                    ) from exc
                logger.warning("%s: skipped a corrupt packet (%s)", path, exc)
                continue
            for frame in frames:
                out = _to_frame(frame, state, origin, fps, vs.time_base, stride, max_side)
                if out is not None:
                    yield out
        n = state["index"] + 1
        if n == 0:
            raise DecodeError(f"{path}: the video stream has no decodable frame")
        expected = int(vs.frames or 0)
        if expected and n < expected:
            logger.warning(
                "%s: decoded %d of %d frames declared in the header (truncated file?)",
                path, n, expected,
            )


def _demux(container, vs, path):
    """Packets of ``vs`` (the last one is the empty flush packet); av errors -> DecodeError."""
    it = container.demux(vs)
    while True:
        try:
            packet = next(it)
        except StopIteration:
            return
        except av.FFmpegError as exc:
            raise DecodeError(f"{path}: demuxing failed ({exc})") from exc
        yield packet


def _to_frame(frame, state, origin, fps, stream_tb, stride, max_side) -> Frame | None:
    """Date one decoded av frame (advancing ``state``) and convert it when it is kept."""
    state["index"] += 1
    index = state["index"]
    pts_s = _seconds(frame.pts, frame.time_base or stream_tb)
    if pts_s is not None:
        t = pts_s - origin
        state["last_t"], state["last_t_index"] = t, index
    elif state["last_t"] is not None:
        t = state["last_t"] + (index - state["last_t_index"]) / fps
    else:
        t = index / fps
    if index % stride:
        return None
    w, h = _target_size(frame.width, frame.height, max_side)
    image = frame.to_ndarray(format="rgb24", width=w, height=h)  # (h, w, 3) uint8
    image = _apply_rotation(image, _frame_rotation(frame))
    return Frame(index=index, t=float(t), image=image)


def read_audio(path: str | Path, sr: int = 16000) -> np.ndarray:
    """The clip's first audio stream as (n,) float32 mono at ``sr`` Hz, sample 0 at t = 0.

    Channels are down-mixed and resampled by FFmpeg's resampler (``av.AudioResampler``).
    Samples are aligned to the clip origin shared with :func:`iter_frames` (see module doc).

    Raises:
        NoAudioError: the clip has no audio stream.
        DecodeError: the file cannot be read.
    """
    if sr <= 0:
        raise ValueError(f"sr must be > 0, got {sr}")
    with _open(path) as container:
        if not container.streams.audio:
            raise NoAudioError(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        origin = clip_origin(container)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
        chunks: list[np.ndarray] = []
        first_t: float | None = None
        try:
            for frame in container.decode(stream):
                if first_t is None:
                    first_t = _seconds(frame.pts, frame.time_base or stream.time_base)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))  # (1, n) packed flt -> (n,)
            for out in resampler.resample(None):  # flush
                chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as exc:
            raise DecodeError(f"{path}: audio decoding failed ({exc})") from exc
        wav = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
        offset = 0 if first_t is None else int(round((first_t - origin) * sr))
        if offset > 0:
            wav = np.concatenate([np.zeros(offset, np.float32), wav])
        elif offset < 0:
            wav = wav[-offset:]
        return np.ascontiguousarray(wav)


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float = 25.0,
    *,
    audio: np.ndarray | None = None,
    sr: int = 16000,
    times: Sequence[float] | None = None,
    rotation: int = 0,
    crf: int = 23,
    preset: str = "veryfast",
    faststart: bool = False,
) -> Path:
    """Write an H.264 mp4 from (H, W, 3) uint8 RGB frames (consumed one by one).

    Args:
        fps: nominal frame rate (constant frame rate unless ``times`` is given).
        audio: optional (n,) float32 mono samples in [-1, 1] at ``sr``, encoded as AAC from t = 0.
        times: per-frame presentation times in seconds (variable frame rate; millisecond
            resolution, strictly increasing).
        rotation: display rotation in degrees counter-clockwise written as display-matrix side
            data (players, and :func:`iter_frames`, rotate the picture by it).
        faststart: put the index (moov atom) at the start of the file.

    H and W must be even (yuv420p); all frames must have the size of the first.
    """
    path = Path(path)
    options = {**bitexact.CONTAINER, **({"movflags": "faststart"} if faststart else {})}
    container = av.open(str(path), mode="w", options=options)
    try:
        # bit-exact: one x264 thread, no version strings (the bytes do not depend on the machine)
        vs = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001),
                                  options=bitexact.x264(crf, preset))
        vs.pix_fmt = "yuv420p"
        if times is not None:
            vs.codec_context.time_base = Fraction(1, 1000)
        if rotation % 360:
            vs.set_display_rotation(int(rotation))
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=sr, options=bitexact.AAC)
            astream.layout = "mono"
        n = 0
        for i, image in enumerate(frames):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"frame {i}: expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
            if i == 0:
                if image.shape[0] % 2 or image.shape[1] % 2:
                    raise ValueError(f"frame size must be even for yuv420p, got {image.shape[1]}x{image.shape[0]}")
                vs.height, vs.width = image.shape[:2]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if times is not None:
                frame.pts = int(round(times[i] * 1000))
                frame.time_base = Fraction(1, 1000)
            else:
                frame.pts = i
            for packet in vs.encode(frame):
                container.mux(packet)
            n += 1
        if n == 0:
            raise ValueError("no frames to write")
        for packet in vs.encode():
            container.mux(packet)
        if astream is not None:
            samples = np.asarray(audio, np.float32).reshape(1, -1)  # (1, n) packed mono
            step = 1024
            for start in range(0, samples.shape[1], step):
                chunk = np.ascontiguousarray(samples[:, start : start + step])
                af = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                af.sample_rate = sr
                af.pts = start
                af.time_base = Fraction(1, sr)
                for packet in astream.encode(af):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    finally:
        container.close()
    return path
