"""One clip in, one result out: decode -> shots -> detect -> track -> speaking scores -> [identity] -> select -> crops.

The clip is decoded three times, streamed (PyAV decodes 640x360 at ~900 fps here, the face
detector is the cost), so memory never grows with clip length:

1. shots + face detection every ``detector.stride`` frames (and on the first frame of every shot),
   batched; boxes are tracked inside shots and interpolated between detections;
2. the patches the active-speaker scorer declares (mouth regions for ``av_sync``) for every track
   row, a small appearance descriptor per track (cross-shot consistency without names) and, when
   the identity step is on, ``identity.frames_per_track`` faces per track for the identity embedder;
3. aligned ``face_size`` crops for the selected frames only.

Passes 1-2 are :meth:`FacePipeline.analyse` (-> :class:`ClipAnalysis`), pass 3 with the selection
is :meth:`FacePipeline.finish`. Between them, the caller may run the identity step over a whole
group of analysed clips (``identity.group.identify_group``: cluster a dialogue's tracks, name the
clusters from the transcript's speakers) and hand each clip its tracks' names; the
``extract_faces`` stage does that per dialogue. :meth:`FacePipeline.process` runs all of it on one
clip (the identity step only with reference photos).

The result is a manifest record (schema in ``SCHEMA.md``) plus the crops (N, S, S, 3) uint8 RGB.
Statuses: ``ok``; ``no_face`` (no face track); ``no_speaker`` (faces, but none speaks with
confidence: no faces are written rather than a wrong face); ``no_audio`` (the clip has no audio
stream: the speaker is chosen from mouth motion alone, faces are written when one track clearly
moves its mouth); ``decode_error`` (the video cannot be read); ``error`` (any other exception
while processing the clip: ``reason`` is ``Type: message``, the run goes on); ``missing``.

``stage1.max_clip_seconds`` bounds one clip's processing (analysis and finish together): past it
the pipeline raises :class:`~stage1_face_extraction.clock.ClipTimeout` at its next check (between
steps and after every decoded frame; ``clock.py`` says why a cooperative deadline), which the
executors record as status ``error``. The same :class:`~stage1_face_extraction.clock.ClipClock`
fills ``record["timings"]``: seconds per step (``decode_s``, ``shots_s``, ``detect_s``, ``track_s``, ``asd_s``,
``identity_s``, ``crop_s``), ``total_s`` and ``video_s`` (the clip's length).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from stage1_face_extraction.align import align_face
from stage1_face_extraction.asd import create_scorer, extract_patch
from stage1_face_extraction.clock import ClipClock, check_limit
from stage1_face_extraction.detectors import create_detector
from stage1_face_extraction.identity.base import l2_normalize
from stage1_face_extraction.identity.group import IdentityConfig, TrackFace, identify_group
from stage1_face_extraction.records import Detections, Track
from stage1_face_extraction.selection import SelectConfig, select_speaker, track_evidence
from stage1_face_extraction.shots import ShotConfig, shot_stream
from stage1_face_extraction.tracking import TrackerConfig, track_faces
from stage1_face_extraction.video import DecodeError, NoAudioError, iter_frames, probe, read_audio

log = logging.getLogger(__name__)

AUDIO_SR = 16000
THUMB_SIZE = 96  # identity-sheet thumbnails


def _default_detector() -> dict[str, Any]:
    return {"name": "mtcnn", "stride": 2, "downscale": 0.5, "min_score": 0.9, "min_face_size": 40}


def _default_asd() -> dict[str, Any]:
    return {"name": "av_sync"}


@dataclass
class PipelineConfig:
    """What one clip gives: the pipeline's part of the ``stage1`` section of params.yaml (the section
    itself, with how the clips run and how the results are stored, is
    :class:`~stage1_face_extraction.section.Stage1Config`).

    ``detector`` and ``asd`` are ``{name: ..., <that component's own keys>}``; the registries check
    the keys (an unknown key fails with the list of valid ones). ``detector.stride`` is ours: detect
    every ``stride``-th frame and let the tracker interpolate between. ``max_frames``: crops per clip
    at most (the selection's cap; ``stage1.select`` has no such key: :data:`MOVED_KEYS`).
    ``max_clip_seconds``: a clip whose processing takes longer is recorded with status ``error``
    and the run goes on (null or 0: no limit; ``clock.py``). ``torch_threads``: per worker (per Ray
    actor: its CPUs); not a runner knob, the float results depend on it.
    """

    #: keys that would be ignored where they are written -> the key to write instead (see
    #: ``common.config.from_dict``): the selection's frame cap is ``stage1.max_frames``.
    MOVED_KEYS: ClassVar[dict[str, str]] = {"select.max_frames": "max_frames"}

    max_frames: int = 160
    max_clip_seconds: float | None = 1800.0  # a clip whose processing takes longer gets status error (null/0: no limit)
    face_size: int = 160
    align_margin: float = 0.0  # facenet-pytorch MTCNN's default crop margin
    torch_threads: int = 1  # per worker (per Ray actor: its CPUs)
    detector: dict[str, Any] = field(default_factory=_default_detector)
    asd: dict[str, Any] = field(default_factory=_default_asd)
    shots: ShotConfig = field(default_factory=ShotConfig)
    tracking: TrackerConfig = field(default_factory=TrackerConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)

    def __post_init__(self) -> None:
        for key in ("detector", "asd"):
            value = getattr(self, key)
            if not isinstance(value, dict) or "name" not in value:
                raise ValueError(f"stage1.{key} must be a mapping with a 'name' key, got {value!r}")
        self.max_clip_seconds = check_limit(self.max_clip_seconds)
        if self.max_frames < 1 or self.face_size < 16:
            raise ValueError("stage1.max_frames must be >= 1 and face_size >= 16")


@dataclass
class ClipResult:
    """What :meth:`FacePipeline.process` returns for one clip."""

    record: dict[str, Any]  # manifest record (store.validate_record schema)
    crops: np.ndarray  # (N, face_size, face_size, 3) uint8 RGB, N <= max_frames
    tracks: list[Track] = field(default_factory=list)  # for previews; not serialised


@dataclass
class ClipAnalysis:
    """What :meth:`FacePipeline.analyse` found in one clip (passes 1-2), input of :meth:`FacePipeline.finish`."""

    path: str
    record: dict[str, Any]  # manifest record so far
    final: bool = False  # the status is already decided (missing, decode_error): nothing to finish
    times: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (n_frames,) seconds
    tracks: list[Track] = field(default_factory=list)  # with per-frame speaking scores
    voiced: np.ndarray | None = None  # (n_frames,) bool voice activity, None without audio / VAD
    descriptors: dict[int, np.ndarray] = field(default_factory=dict)  # appearance, per track
    has_audio: bool = False
    faces: list[TrackFace] = field(default_factory=list)  # identity embeddings (embed=True)
    elapsed_s: float = 0.0  # processing time so far (counts against stage1.max_clip_seconds in finish)


def detected_rows(track: Track) -> np.ndarray:
    """Rows of ``track`` with a real detection (all rows when none has one)."""
    return np.flatnonzero(track.detected) if track.detected.any() else np.arange(len(track))


def identity_rows(track: Track, k: int) -> set[int]:
    """Rows of ``track`` to embed: the ``k`` best-scored detected rows, one from each of ``k``
    equal parts of the track (spread over it, so one bad moment does not decide)."""
    rows = detected_rows(track)
    parts = np.array_split(rows, min(k, len(rows)))
    return {int(p[np.argmax(track.scores[p])]) for p in parts if len(p)}


def _empty_crops(size: int) -> np.ndarray:
    return np.zeros((0, size, size, 3), np.uint8)


class FacePipeline:
    """Holds the models (created once, reused for every clip of a worker)."""

    def __init__(self, cfg: PipelineConfig) -> None:
        self.cfg = cfg
        det_cfg = dict(cfg.detector)
        det_name = det_cfg.pop("name")
        self.stride = int(det_cfg.pop("stride", 1))
        if self.stride < 1:
            raise ValueError(f"stage1.detector.stride must be >= 1, got {self.stride}")
        self.detector = create_detector(det_name, **det_cfg)
        asd_cfg = dict(cfg.asd)
        self.scorer = create_scorer(asd_cfg.pop("name"), **asd_cfg)
        # FaceEmbedder of stage1.identity.embedder; created here when the identity step is on, or
        # set by the caller (the CLI creates it for --reference)
        self.identity_embedder = cfg.identity.create_embedder() if cfg.identity.enabled else None

    # --------------------------------------------------------------------------------- passes

    def _detect_pass(self, path: str, clock: ClipClock) -> tuple[list[Detections | None], np.ndarray, np.ndarray]:
        """Pass 1. Returns per-frame detections (None where not run), times (n,), shot ids (n,)."""
        dets: list[Detections | None] = []
        times: list[float] = []
        shot_ids: list[int] = []
        batch_imgs: list[np.ndarray] = []
        batch_idx: list[int] = []
        last_shot = -1

        def flush() -> None:
            if batch_imgs:
                for i, d in zip(batch_idx, self.detector.detect(batch_imgs)):
                    dets[i] = d
                batch_imgs.clear()
                batch_idx.clear()

        def queue(i: int, image: np.ndarray) -> None:
            batch_imgs.append(image)
            batch_idx.append(i)
            if len(batch_imgs) >= self.detector.batch_size:
                flush()

        # The last frame of every shot (and of the clip) is detected too, so that tracks reach
        # the cut / the end instead of stopping up to stride - 1 frames short (the tracker only
        # interpolates between detections).
        prev: tuple[int, np.ndarray] | None = None  # the previous frame, when it was not detected
        frames = shot_stream(clock.frames(iter_frames(path)), self.cfg.shots)
        for fr, sid in clock.frames(frames, key="shots_s", where="shot detection"):
            if sid != last_shot and prev is not None:
                queue(*prev)
            dets.append(None)
            times.append(fr.t)
            shot_ids.append(sid)
            if fr.index % self.stride == 0 or sid != last_shot:
                queue(len(dets) - 1, fr.image)
                prev = None
            else:
                prev = (len(dets) - 1, fr.image)
            last_shot = sid
        if prev is not None:
            queue(*prev)
        flush()
        return dets, np.asarray(times, np.float64), np.asarray(shot_ids, np.int64)

    def _patch_pass(self, path: str, tracks: list[Track], clock: ClipClock,
                    id_frames: int = 0) -> tuple[list[np.ndarray], dict[int, np.ndarray]]:
        """Pass 2. ASD patches per track row and an appearance descriptor per track.

        With ``id_frames`` > 0, up to that many (frame, box, landmarks) samples of the best-detected
        rows of every track of at least ``select.min_track_frames`` rows are kept in
        ``track.extra["id_samples"]`` for :meth:`_embed_tracks`.
        """
        spec = self.scorer.input_spec
        active: dict[int, list[Track]] = {}
        for t in tracks:
            for f in t.frames.tolist():
                active.setdefault(int(f), []).append(t)
        patches: dict[int, list[np.ndarray]] = {t.track_id: [] for t in tracks}
        # descriptor frames: up to 5 detected rows spread over the track
        desc_rows = {}
        id_rows: dict[int, set[int]] = {}
        for t in tracks:
            rows = detected_rows(t)
            desc_rows[t.track_id] = set(rows[np.linspace(0, len(rows) - 1, min(5, len(rows))).astype(int)].tolist())
            if id_frames > 0 and len(t) >= self.cfg.select.min_track_frames:
                id_rows[t.track_id] = identity_rows(t, id_frames)
                t.extra["id_samples"] = []
        desc: dict[int, list[np.ndarray]] = {t.track_id: [] for t in tracks}
        last = max(active) if active else -1
        for fr in clock.frames(iter_frames(path)):
            if fr.index > last:
                break
            for t in active.get(fr.index, ()):
                r = fr.index - t.start
                lm = t.landmarks[r] if t.landmarks is not None else None
                patches[t.track_id].append(extract_patch(fr.image, t.boxes[r], lm, spec))
                if r in desc_rows[t.track_id]:
                    face = align_face(fr.image, lm, t.boxes[r], size=32)
                    g = face.astype(np.float32).mean(axis=2).ravel()
                    desc[t.track_id].append((g - g.mean()) / (g.std() + 1e-6))
                if r in id_rows.get(t.track_id, ()):
                    t.extra["id_samples"].append((fr.image, t.boxes[r], lm))
        out = [np.stack(patches[t.track_id]).astype(np.float32) for t in tracks]
        descriptors = {tid: np.mean(v, axis=0) for tid, v in desc.items() if v}
        return out, descriptors

    def _embed_tracks(self, tracks: list[Track]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """``{track_id: (unit embedding (D,), thumbnail (THUMB_SIZE, THUMB_SIZE, 3))}`` from each track's ``id_samples``
        (one embedder call for the whole clip); the samples are dropped afterwards."""
        emb = self.identity_embedder
        owners, images, boxes, lms = [], [], [], []
        thumbs = {}
        for t in tracks:
            samples = t.extra.pop("id_samples", [])
            for image, box, lm in samples:
                owners.append(t.track_id)
                images.append(image)
                boxes.append(box)
                lms.append(np.full((5, 2), np.nan, np.float32) if lm is None else lm)
            if samples:
                image, box, lm = samples[0]
                thumbs[t.track_id] = align_face(image, lm, box, size=THUMB_SIZE)
        if not images:
            return {}
        vecs = emb.embed(images, np.stack(boxes), np.stack(lms))  # (K, D)
        owners_arr = np.asarray(owners)
        out = {}
        for tid, thumb in thumbs.items():
            m = vecs[owners_arr == tid].mean(axis=0, keepdims=True)
            out[tid] = (l2_normalize(m)[0], thumb)
        return out

    def _crop_pass(
        self, path: str, tracks: dict[int, Track], picked: list[tuple[int, int]], clock: ClipClock
    ) -> np.ndarray:
        """Pass 3. Aligned crops (N, S, S, 3) for the picked (track, frame) pairs, in order."""
        want = {f: tid for tid, f in picked}
        crops: dict[int, np.ndarray] = {}
        last = max(want)
        for fr in clock.frames(iter_frames(path)):
            if fr.index > last:
                break
            tid = want.get(fr.index)
            if tid is None:
                continue
            t = tracks[tid]
            r = fr.index - t.start
            lm = t.landmarks[r] if t.landmarks is not None else None
            crops[fr.index] = align_face(
                fr.image, lm, t.boxes[r], size=self.cfg.face_size, margin=self.cfg.align_margin
            )
        return np.stack([crops[f] for _, f in picked]) if crops else _empty_crops(self.cfg.face_size)

    # ------------------------------------------------------------------------------------ API

    def analyse(
        self, path: str | Path, utt_id: str | None = None, speaker: str | None = None, clip: str | None = None,
        embed: bool = False,
    ) -> ClipAnalysis:
        """Passes 1-2 on one clip: shots, faces, tracks, speaking scores and (``embed``) identity
        embeddings. Never raises for a bad clip: the record's status says why (``final``); raises
        :class:`~stage1_face_extraction.clock.ClipTimeout` past ``stage1.max_clip_seconds`` (the
        executors record it as status ``error``)."""
        path = str(path)
        clock = ClipClock(self.cfg.max_clip_seconds)
        rec: dict[str, Any] = {
            "clip": clip or path, "utt_id": utt_id, "status": "ok", "fps": None, "n_frames": 0,
            "frames": [], "tracks": [], "speaker": speaker, "timings": {},
        }
        a = ClipAnalysis(path=path, record=rec)
        if not Path(path).is_file():
            rec["status"], rec["reason"] = "missing", "clip file not found"
            a.final = True
            return a
        try:
            with clock.step("decode_s"):
                info = probe(path)
            rec["fps"] = info.fps
            with clock.step("detect_s"):  # face detection; the decoding and shot detection in it: decode_s, shots_s
                dets, times, shot_ids = self._detect_pass(path, clock)
        except DecodeError as exc:
            rec["status"], rec["reason"] = "decode_error", str(exc)
            a.final = True
            return a
        n = len(dets)
        rec["n_frames"] = n
        rec["shots"] = int(shot_ids.max()) + 1 if n else 0
        a.times = times
        with clock.step("track_s"):
            a.tracks = tracks = track_faces(dets, np.arange(n), shot_ids, self.cfg.tracking)
        audio = None
        with clock.step("decode_s"):
            if info.has_audio:
                try:
                    audio = read_audio(path, AUDIO_SR)
                except NoAudioError:
                    audio = None
                except DecodeError as exc:
                    log.warning("%s: audio unreadable (%s); scoring from mouth motion alone", path, exc)
        if audio is not None and audio.size == 0:
            audio = None
        a.has_audio = audio is not None
        clock.add("identity_s", 0.0)
        if tracks:
            embed = embed and self.identity_embedder is not None
            with clock.step("asd_s"):  # patches, speaking scores, voice activity (decoding: decode_s)
                patches, a.descriptors = self._patch_pass(path, tracks, clock,
                                                          id_frames=self.cfg.identity.frames_per_track if embed else 0)
                scores = self.scorer.score(patches, [times[t.frames] for t in tracks], audio, AUDIO_SR, info.fps)
                for t, sc in zip(tracks, scores):
                    t.speaking = np.asarray(sc, np.float32)
                voice_at = getattr(self.scorer, "voice_at", None)
                if audio is not None and voice_at is not None:
                    a.voiced = np.asarray(voice_at(audio, AUDIO_SR, times)) >= 0.5
            if embed:
                with clock.step("identity_s"):
                    for tid, (vec, thumb) in self._embed_tracks(tracks).items():
                        t = next(t for t in tracks if t.track_id == tid)
                        a.faces.append(TrackFace(
                            utt_id=str(utt_id or path), track_id=tid, embedding=vec,
                            evidence=track_evidence(t, a.voiced), start=t.start, end=t.end, thumb=thumb,
                        ))
        rec["timings"] = {**clock.timings, "video_s": n / info.fps if info.fps else 0.0}
        a.elapsed_s = clock.elapsed()
        return a

    def finish(
        self, a: ClipAnalysis, identities: dict[int, tuple[str | None, float | None, int]] | None = None
    ) -> ClipResult:
        """Selection and pass 3 (crops) for an analysed clip.

        ``identities``: ``{track_id: (name, confidence, cluster)}`` from the identity step
        (:meth:`GroupIdentity.of`), or None without one. With it, tracks carry ``identity`` /
        ``identity_score`` / ``cluster`` in the manifest, and only the tracks named as the clip's
        speaker are eligible when any is (``selection.py``, rule 3).
        """
        rec = a.record
        size = self.cfg.face_size
        if a.final:
            return ClipResult(rec, _empty_crops(size))
        clock = ClipClock(self.cfg.max_clip_seconds, spent=a.elapsed_s)
        clock.check("finish")
        with clock.step("crop_s"):  # selection, alignment, the manifest rows (decoding: decode_s)
            crops = self._finish(a, identities, clock)
        timings = rec["timings"]
        for key, seconds in clock.timings.items():
            timings[key] = timings.get(key, 0.0) + seconds
        timings["total_s"] = sum(v for k, v in timings.items() if k.endswith("_s") and k not in ("video_s", "total_s"))
        return ClipResult(rec, crops, a.tracks)

    def _finish(self, a: ClipAnalysis, identities, clock: ClipClock) -> np.ndarray:
        """:meth:`finish` without the clock: fills ``a.record``, returns the crops."""
        rec = a.record
        size = self.cfg.face_size
        tracks, times = a.tracks, a.times
        speaker = rec.get("speaker")
        if identities is not None:
            for t in tracks:
                name, score, cluster, *likely = identities.get(t.track_id, (None, None, -1, None))
                t.identity, t.identity_score, t.extra["cluster"] = name, score, cluster
                t.extra["likely"] = likely[0] if likely else None
        sel = select_speaker(
            tracks, self.cfg.select, voiced=a.voiced, speaker=speaker if identities is not None else None,
            descriptors=a.descriptors, max_frames=self.cfg.max_frames,
        )
        by_id = {t.track_id: t for t in tracks}
        crops = _empty_crops(size)
        if sel.status == "ok":
            crops = self._crop_pass(a.path, by_id, sel.frames, clock)
            for tid, f in sel.frames:
                t = by_id[tid]
                r = f - t.start
                rec["frames"].append({
                    "frame": int(f), "t": float(times[f]), "box": [float(v) for v in t.boxes[r]],
                    "det_score": float(t.scores[r]), "speaking": float(t.speaking[r]), "track": int(tid),
                })
                if identities is not None:
                    rec["frames"][-1].update(identity=t.identity, identity_score=t.identity_score)
        rec["status"] = "no_audio" if not a.has_audio and sel.status in ("ok", "no_speaker") else sel.status
        if sel.reason:
            rec["reason"] = sel.reason
        rec["tracks"] = [
            {
                "track": t.track_id, "shot": t.shot_id, "start": t.start, "end": t.end, "n": len(t),
                "detected": int(t.detected.sum()), "evidence": sel.evidence.get(t.track_id, 0.0),
                "mean_speaking": float(np.mean(t.speaking)) if t.speaking is not None and len(t) else 0.0,
                "selected": t.track_id in sel.tracks,
                "mid_frame": int(t.frames[len(t) // 2]), "mid_box": [float(v) for v in t.boxes[len(t) // 2]],
            }
            for t in tracks
        ]
        if identities is not None:
            for summary, t in zip(rec["tracks"], tracks):
                summary.update(identity=t.identity, identity_score=t.identity_score, cluster=t.extra["cluster"])
        return crops

    def process(
        self, path: str | Path, utt_id: str | None = None, speaker: str | None = None, clip: str | None = None,
        references: dict[str, np.ndarray] | None = None,
    ) -> ClipResult:
        """Every step on ONE clip: :meth:`analyse`, the identity step over this clip alone when
        ``references`` (``{name: (K, D) embeddings}``, ``identity.load_references``) are given, then
        :meth:`finish`. Never raises for a bad clip: the status says why (a clip past
        ``stage1.max_clip_seconds`` raises ``ClipTimeout``, which callers record as status ``error``).

        With references, the clip's tracks are clustered and named by the same ``identify_group``
        as a dialogue's (over one clip only the reference photos name clusters).
        """
        if references and self.identity_embedder is None:  # stage1.identity.scope: none
            self.identity_embedder = self.cfg.identity.create_embedder()
        a = self.analyse(path, utt_id=utt_id, speaker=speaker, clip=clip, embed=bool(references))
        if not references:
            return self.finish(a)
        key = str(utt_id or path)
        gi = identify_group(
            key, a.faces, {key: speaker}, self.cfg.identity, self.identity_embedder.distance_threshold, references
        )
        return self.finish(a, gi.of(key))
