"""Write the demo corpus: a MELD-shaped folder of CSVs, mp4 clips and a ground-truth JSON.

    out_dir/
      train_sent_emo.csv, dev_sent_emo.csv, test_sent_emo.csv   (the official MELD schema)
      train_splits/dia{D}_utt{U}.mp4
      dev_splits_complete/dia{D}_utt{U}.mp4
      output_repeated_splits_test/dia{D}_utt{U}.mp4
      truth.json                                                (see SCHEMA.md)

Clips are H.264 (libx264, yuv420p) + AAC (mono) in mp4, written with PyAV with bit-exact flags and
one x264 thread, so the same config gives byte-identical files. Each clip depends only on the
config and its own seed (seed, split, dialogue, utterance), so clips can be rendered in parallel
worker processes without changing a byte.

Workers are started with the ``spawn`` method (the parent has torch and OpenCV thread pools that
must not be forked), so a script that calls :func:`generate_corpus` with ``workers > 1`` needs the
usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .. import bitexact
from ..meld import MELD_COLUMNS, DataConfig
from .assets import Character, build_library, character_by_name, detect, portable
from .scene import (
    Placement,
    SceneConfig,
    Shot,
    closeup_layout,
    drift_path,
    make_background,
    wide_layout,
    zoomed,
)
from .script import SPLITS, Dialogue, ScriptConfig, Utterance, format_time, make_script
from .speech import frame_envelope, mouth_opening, synthesize

logger = logging.getLogger(__name__)

MELD_HEADER = MELD_COLUMNS
CSV_NAMES: dict[str, str] = {split: spec.csv for split, spec in DataConfig().splits.items()}
CLIP_DIRS: dict[str, str] = {split: spec.clips for split, spec in DataConfig().splits.items()}
TRUTH_VERSION = 1
CLOSEUP_ZOOM = 1.6  # the close-up background is the room magnified this much
ROOM_MAX_SCORE = 0.3  # a room where the over-sensitive checker finds this much is redrawn
_SPLIT_INDEX = {s: i for i, s in enumerate(SPLITS)}


@dataclass
class DemoConfig:
    """params.yaml section ``demo``."""

    seed: int = 2023
    dialogues_per_split: dict[str, int] = field(default_factory=lambda: {"train": 6, "dev": 4, "test": 4})
    utterances_min: int = 4  # per dialogue, inclusive
    utterances_max: int = 6
    characters_min: int = 2  # per dialogue (2-3)
    characters_max: int = 3
    duration_min_s: float = 2.0  # clip length
    duration_max_s: float = 4.0
    fps: str = "24000/1001"  # exact frame rate as a fraction
    width: int = 640
    height: int = 360
    sample_rate: int = 44100  # mono AAC
    face_height_min: float = 80.0  # px, wide shots (three people: the lower 60% of the range)
    face_height_max: float = 120.0
    closeup_face_height_min: float = 135.0  # px, the listener close-up after a cut
    closeup_face_height_max: float = 160.0
    p_cut_to_listener: float = 0.2  # fraction of each split's clips
    p_speaker_off_screen: float = 0.1
    p_talking_over: float = 0.0  # fraction of normal clips where a listener's mouth moves too
    camera_drift_px: float = 3.0  # max slow camera sway (0 = locked-off camera)
    mouth_max_open: float = 0.11  # jaw drop at full opening / face height
    crf: int = 23  # x264 quality
    x264_preset: str = "veryfast"
    audio_bitrate: int = 96000
    workers: int = 2  # clip-rendering processes (output bytes do not depend on it)
    check_rooms: bool = True  # redraw a background where MTCNN sees a face-like pattern

    def __post_init__(self) -> None:
        unknown = sorted(set(self.dialogues_per_split) - set(SPLITS))
        if unknown:
            raise ValueError(f"demo.dialogues_per_split: unknown split(s) {unknown}; use {list(SPLITS)}")
        if any(int(v) < 0 for v in self.dialogues_per_split.values()):
            raise ValueError("demo.dialogues_per_split: counts must be >= 0")
        if self.width % 2 or self.height % 2:
            raise ValueError("demo.width and demo.height must be even (yuv420p)")
        if not 0.0 < self.duration_min_s <= self.duration_max_s:
            raise ValueError("demo: need 0 < duration_min_s <= duration_max_s")
        if not 0.0 <= self.p_cut_to_listener + self.p_speaker_off_screen <= 1.0:
            raise ValueError("demo: p_cut_to_listener + p_speaker_off_screen must be in [0, 1]")
        if self.frame_rate <= 0:
            raise ValueError(f"demo.fps must be a positive fraction, got {self.fps!r}")

    @property
    def frame_rate(self) -> Fraction:
        return Fraction(str(self.fps))

    def script_config(self) -> ScriptConfig:
        return ScriptConfig(
            dialogues_per_split={k: int(v) for k, v in self.dialogues_per_split.items()},
            utterances_min=self.utterances_min,
            utterances_max=self.utterances_max,
            characters_min=self.characters_min,
            characters_max=self.characters_max,
            duration_min_s=self.duration_min_s,
            duration_max_s=self.duration_max_s,
            fps=self.frame_rate,
            p_cut_to_listener=self.p_cut_to_listener,
            p_speaker_off_screen=self.p_speaker_off_screen,
            p_talking_over=self.p_talking_over,
        )

    def scene_config(self) -> SceneConfig:
        return SceneConfig(
            width=self.width,
            height=self.height,
            margin=max(2, int(np.ceil(self.camera_drift_px)) + 2),
            mouth_max_open=self.mouth_max_open,
        )


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


class ClipWriter:
    """Bit-exact mp4 writer: H.264 yuv420p video + mono AAC audio, interleaved frame by frame.

    The whole audio track is given up front; each :meth:`write` encodes one video frame and the
    audio up to that frame's end time. Leaving the context flushes both encoders and closes the file.
    """

    AUDIO_CHUNK = 1024  # samples per AAC frame

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: Fraction,
        audio: np.ndarray,
        sample_rate: int,
        crf: int = 23,
        preset: str = "veryfast",
        audio_bitrate: int = 96000,
    ):
        """audio: (N,) float32 mono waveform in [-1, 1]."""
        import av  # local import: PyAV only where clips are written

        self._av = av
        self.fps = fps
        self.sample_rate = sample_rate
        self.audio = np.ascontiguousarray(audio, dtype=np.float32)
        self._audio_pos = 0
        self._n_video = 0
        # bitexact.py: one x264 thread, no muxer/encoder version strings: bytes depend only on the input
        self.container = av.open(str(path), mode="w", format="mp4", options=bitexact.CONTAINER)
        self.video = self.container.add_stream("libx264", rate=fps, options=bitexact.x264(crf, preset))
        self.video.width, self.video.height, self.video.pix_fmt = width, height, "yuv420p"
        self.video.time_base = Fraction(fps.denominator, fps.numerator)
        self.audio_stream = self.container.add_stream(
            "aac", rate=sample_rate, options={**bitexact.AAC, "b": str(audio_bitrate)}
        )
        self.audio_stream.layout = "mono"

    def __enter__(self) -> ClipWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self._push_audio(self.audio.shape[0])
                for packet in self.video.encode(None):
                    self.container.mux(packet)
                for packet in self.audio_stream.encode(None):
                    self.container.mux(packet)
        finally:
            self.container.close()

    def write(self, image: np.ndarray) -> None:
        """Encode one (H, W, 3) uint8 RGB frame (and the audio that plays during it)."""
        frame = self._av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self._n_video
        for packet in self.video.encode(frame):
            self.container.mux(packet)
        self._n_video += 1
        self._push_audio(int(round(self._n_video / self.fps * self.sample_rate)))

    def _push_audio(self, until: int) -> None:
        until = min(until, self.audio.shape[0])
        step = self.AUDIO_CHUNK
        # whole AAC frames only, except the very last chunk of the track
        while self._audio_pos < until and (self._audio_pos + step <= until or until == self.audio.shape[0]):
            chunk = self.audio[self._audio_pos : self._audio_pos + step]
            frame = self._av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
            frame.sample_rate = self.sample_rate
            frame.pts = self._audio_pos
            for packet in self.audio_stream.encode(frame):
                self.container.mux(packet)
            self._audio_pos += chunk.shape[0]


# --------------------------------------------------------------------------------------------
# One clip
# --------------------------------------------------------------------------------------------


def _rng(cfg: DemoConfig, split: str, dialogue_id: int, utterance_id: int, purpose: int) -> np.random.Generator:
    """Independent generator per (split, dialogue, utterance, purpose): clips do not share state."""
    return np.random.default_rng([cfg.seed, _SPLIT_INDEX[split], dialogue_id, utterance_id, purpose])


def _room(cfg: DemoConfig, dia: Dialogue, attempt: int) -> np.ndarray:
    """The padded background of a dialogue: (H + 2m, W + 2m, 3) uint8; ``attempt`` redraws it."""
    sc = cfg.scene_config()
    rng = _rng(cfg, dia.split, dia.dialogue_id, attempt, 0)
    return make_background(rng, sc.width + 2 * sc.margin, sc.height + 2 * sc.margin)


def _wide(cfg: DemoConfig, dia: Dialogue, by_name: dict[str, Character]) -> list[Placement]:
    """The wide-shot layout shared by all clips of a dialogue."""
    rng = _rng(cfg, dia.split, dia.dialogue_id, 0, 2)
    return wide_layout(
        [by_name[n] for n in dia.characters], rng, cfg.width, cfg.height, (cfg.face_height_min, cfg.face_height_max)
    )


def make_room_checker() -> Any:
    """A deliberately over-sensitive MTCNN (low stage thresholds) for rejecting face-like rooms:
    MTCNN is not shift-invariant, so a pattern it misses at one camera offset may fire at another;
    the low thresholds catch such near-faces at any single offset."""
    from facenet_pytorch import MTCNN  # local import: pulls in torch

    return MTCNN(keep_all=True, device="cpu", thresholds=[0.5, 0.5, 0.3]).double()  # float64: assets.portable


def pick_room(cfg: DemoConfig, dia: Dialogue, checker: Any, max_attempts: int = 12) -> int:
    """First background draw of ``dia`` in which the over-sensitive ``checker`` sees no face
    (p >= ``ROOM_MAX_SCORE``) in the wide view and in a close-up zoom."""
    sc = cfg.scene_config()
    m = sc.margin
    worst = 0.0
    for attempt in range(max_attempts):
        bg = _room(cfg, dia, attempt)
        h, w = bg.shape[:2]
        views = (bg, zoomed(bg, 0.5 * w, CLOSEUP_ZOOM, w, h))
        scores = [detect(checker, v[m : h - m, m : w - m])[1] for v in views]
        worst = max((float(p.max()) for p in scores if p.size), default=0.0)
        if worst < ROOM_MAX_SCORE:
            return attempt
        logger.debug(
            "%s dialogue %d: room %d has a face-like pattern (p=%.2f), redrawing",
            dia.split,
            dia.dialogue_id,
            attempt,
            worst,
        )
    logger.warning(
        "%s dialogue %d: no face-free room in %d draws (p=%.2f)", dia.split, dia.dialogue_id, max_attempts, worst
    )
    return max_attempts - 1


def render_clip(
    cfg: DemoConfig, dia: Dialogue, utt: Utterance, library: tuple[Character, ...], path: Path, room: int = 0
) -> dict[str, Any]:
    """Render, encode and write one clip; returns its truth.json entry. ``room``: background draw."""
    sc = cfg.scene_config()
    fps = cfg.frame_rate
    by_name = character_by_name(library)
    background, wide = _room(cfg, dia, room), _wide(cfg, dia, by_name)
    rng = _rng(cfg, utt.split, utt.dialogue_id, utt.utterance_id, 1)
    duration = float(utt.n_frames / fps)

    speech = synthesize(rng, duration, cfg.sample_rate, by_name[utt.speaker].pitch_hz)
    audio = speech.audio
    mouths = {utt.speaker: mouth_opening(frame_envelope(speech.envelope, cfg.sample_rate, utt.n_frames, fps))}
    over_segments: list[tuple[float, float]] = []
    if utt.talking_over:
        other = synthesize(rng, duration, cfg.sample_rate, by_name[utt.talking_over].pitch_hz)
        audio = np.clip(audio + 0.6 * other.audio, -1.0, 1.0).astype(np.float32)
        mouths[utt.talking_over] = mouth_opening(frame_envelope(other.envelope, cfg.sample_rate, utt.n_frames, fps))
        over_segments = other.segments

    # shots of this clip
    listeners = [n for n in dia.characters if n != utt.speaker]
    closeup: Shot | None = None
    if utt.shot_plan == "speaker_off_screen":
        main = Shot(
            background,
            wide_layout(
                [by_name[n] for n in listeners], rng, sc.width, sc.height, (cfg.face_height_min, cfg.face_height_max)
            ),
            sc,
        )
    else:
        main = Shot(background, wide, sc)
    if utt.shot_plan == "cut_to_listener":
        assert utt.cut_to is not None and utt.cut_frame is not None
        face_h = float(rng.uniform(cfg.closeup_face_height_min, cfg.closeup_face_height_max))
        target = next(p for p in wide if p.character.name == utt.cut_to)
        centre_x = float((target.face_box()[0] + target.face_box()[2]) / 2.0) + sc.margin
        bg_close = zoomed(background, centre_x, CLOSEUP_ZOOM, background.shape[1], background.shape[0])
        closeup = Shot(bg_close, [closeup_layout(by_name[utt.cut_to], rng, sc.width, sc.height, face_h)], sc)
    drift = drift_path(rng, utt.n_frames, float(fps), cfg.camera_drift_px)

    frames_truth: list[dict[str, Any]] = []
    on_screen: list[str] = []
    speaker_visible = 0
    with ClipWriter(
        path, sc.width, sc.height, fps, audio, cfg.sample_rate, cfg.crf, cfg.x264_preset, cfg.audio_bitrate
    ) as w:
        for i in range(utt.n_frames):
            shot = closeup if closeup is not None and i >= (utt.cut_frame or 0) else main
            opening = {n: float(v[i]) for n, v in mouths.items()}
            image, faces = shot.render(opening, utt.speaker, (int(drift[i, 0]), int(drift[i, 1])))
            w.write(image)
            speaker_visible += any(f.speaker for f in faces)
            for f in faces:
                if f.name not in on_screen:
                    on_screen.append(f.name)
            frames_truth.append(
                {
                    "frame": i,
                    "t": round(float(i / fps), 4),
                    "faces": [
                        {
                            "name": f.name,
                            "box": [round(float(v), 2) for v in f.box],
                            "speaker": bool(f.speaker),
                            "mouth_open": round(float(f.mouth_open), 3),
                        }
                        for f in faces
                    ],
                }
            )

    return {
        "split": utt.split,
        "dialogue_id": utt.dialogue_id,
        "utterance_id": utt.utterance_id,
        "utt_id": utt.utt_id,
        "path": f"{CLIP_DIRS[utt.split]}/{utt.utt_id}.mp4",
        "speaker": utt.speaker,
        "emotion": utt.emotion,
        "sentiment": utt.sentiment,
        "speaker_visible_frames": int(speaker_visible),
        "shot_plan": utt.shot_plan,
        "cut_frame": utt.cut_frame,
        "cut_to": utt.cut_to,
        "talking_over": (
            {"name": utt.talking_over, "speech": [[round(a, 3), round(b, 3)] for a, b in over_segments]}
            if utt.talking_over
            else None
        ),
        "n_frames": utt.n_frames,
        "duration_s": round(duration, 4),
        "characters": on_screen,
        "dialogue_characters": list(dia.characters),
        "speech": [[round(a, 3), round(b, 3)] for a, b in speech.segments],
        "frames": frames_truth,
    }


# --------------------------------------------------------------------------------------------
# Worker processes
# --------------------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(cfg: DemoConfig, library: tuple[Character, ...]) -> None:
    import cv2

    cv2.setNumThreads(1)
    cv2.setUseOptimized(False)  # the worker's whole life: assets.portable
    _WORKER["cfg"] = cfg
    _WORKER["library"] = library


def _render_job(job: tuple[Dialogue, Utterance, str, int]) -> tuple[str, dict[str, Any]]:
    dia, utt, path, room = job
    return utt.key, render_clip(_WORKER["cfg"], dia, utt, _WORKER["library"], Path(path), room)


# --------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------


def write_meld_csv(path: Path, dialogues: list[Dialogue]) -> int:
    """Write one split's ``*_sent_emo.csv`` exactly like MELD (UTF-8, CRLF, minimal quoting)."""
    n = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        writer.writerow(MELD_HEADER)
        for dia in dialogues:
            for u in dia.utterances:
                n += 1
                writer.writerow(
                    [
                        n,
                        u.text,
                        u.speaker,
                        u.emotion,
                        u.sentiment,
                        u.dialogue_id,
                        u.utterance_id,
                        u.season,
                        u.episode,
                        format_time(u.start_s),
                        format_time(u.end_s),
                    ]
                )
    return n


ProgressFn = Callable[[int, int, str], None]


def generate_corpus(
    cfg: DemoConfig,
    out_dir: str | Path,
    progress: ProgressFn | None = None,
    library: tuple[Character, ...] | None = None,
) -> dict[str, Any]:
    """Generate the whole demo corpus into ``out_dir`` (created; existing files are overwritten).

    progress(done, total, clip_key) is called after each clip. Returns a summary dict (counts per
    split and shot kind, frames, bytes, seconds).
    """
    with portable():  # the same bytes on any x86-64 CPU
        return _generate_corpus(cfg, Path(out_dir), progress, library)


def _generate_corpus(cfg: DemoConfig, out: Path, progress: ProgressFn | None,
                     library: tuple[Character, ...] | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    library = library if library is not None else build_library()
    script = make_script(np.random.default_rng([cfg.seed, 1_000_003]), cfg.script_config(), [c.name for c in library])

    checker = make_room_checker() if cfg.check_rooms else None
    jobs: list[tuple[Dialogue, Utterance, str, int]] = []
    for split in SPLITS:
        write_meld_csv(out / CSV_NAMES[split], script[split])
        clip_dir = out / CLIP_DIRS[split]
        clip_dir.mkdir(exist_ok=True)
        for dia in script[split]:
            room = pick_room(cfg, dia, checker) if checker is not None else 0
            for u in dia.utterances:
                jobs.append((dia, u, str(clip_dir / f"{u.utt_id}.mp4"), room))

    clips: dict[str, dict[str, Any]] = {}
    total = len(jobs)
    if cfg.workers <= 1 or total <= 1:
        for dia, u, path, room in jobs:
            clips[u.key] = render_clip(cfg, dia, u, library, Path(path), room)
            if progress:
                progress(len(clips), total, u.key)
    else:
        ctx = multiprocessing.get_context("spawn")  # no fork after torch/OpenCV thread pools
        with ProcessPoolExecutor(
            max_workers=min(cfg.workers, total), mp_context=ctx, initializer=_init_worker, initargs=(cfg, library)
        ) as pool:
            for key, entry in pool.map(_render_job, jobs):
                clips[key] = entry
                if progress:
                    progress(len(clips), total, key)

    truth = {
        "version": TRUTH_VERSION,
        "seed": cfg.seed,
        "fps": cfg.fps,
        "fps_float": float(cfg.frame_rate),
        "width": cfg.width,
        "height": cfg.height,
        "sample_rate": cfg.sample_rate,
        "clips": {job[1].key: clips[job[1].key] for job in jobs},
    }
    with (out / "truth.json").open("w", encoding="utf-8", newline="\n") as fh:
        json.dump(truth, fh, ensure_ascii=False, separators=(",", ":"))
        fh.write("\n")

    summary = summarize(truth, out)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    logger.info(
        "demo corpus: %d clips (%s), %d frames, %.1f MB in %.1f s -> %s",
        summary["clips"],
        ", ".join(f"{k} {v}" for k, v in summary["clips_per_split"].items()),
        summary["frames"],
        summary["bytes"] / 1e6,
        summary["seconds"],
        out,
    )
    return summary


def summarize(truth: dict[str, Any], out: Path) -> dict[str, Any]:
    """Counts of a generated corpus (from its truth dict)."""
    clips = truth["clips"].values()
    per_split = Counter(c["split"] for c in clips)
    per_kind: dict[str, dict[str, int]] = {}
    for c in clips:
        per_kind.setdefault(c["split"], Counter())[c["shot_plan"]] += 1  # type: ignore[index]
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {
        "out_dir": str(out),
        "clips": len(truth["clips"]),
        "clips_per_split": {s: per_split.get(s, 0) for s in SPLITS},
        "shots_per_split": {s: dict(sorted(per_kind.get(s, {}).items())) for s in SPLITS},
        "dialogues_per_split": {s: len({c["dialogue_id"] for c in clips if c["split"] == s}) for s in SPLITS},
        "frames": sum(c["n_frames"] for c in clips),
        "bytes": size,
    }
