"""Choose the speaker's track(s) in one utterance clip and sample at most ``max_frames`` frames.

Input: the clip's tracks with per-frame speaking scores (from an ASD scorer) and, optionally, a
per-frame voice-activity mask. Output: the selected tracks and the ordered list of (track, frame)
pairs to crop.

Rules (all thresholds in :class:`SelectConfig`):

1. A track's *evidence* is its mean speaking score over the frames where voice is active (over all
   its frames when the clip has no voiced frame inside the track).
2. Within each shot, the track with the highest evidence is the candidate, accepted when its
   evidence >= ``min_speaking`` and it beats the runner-up of the same shot by ``min_margin``
   (two mouths moving with the speech equally is ambiguous: no face beats a wrong face).
3. Identity is kept consistent across shots: when a track has a known identity (the identity step
   fills ``Track.identity`` and ``speaker`` names the expected speaker), only tracks of that
   identity are eligible, other people's tracks do not count as rivals (the named speaker is
   preferred when several mouths move; a lone named track in its shot needs no margin) and
   ``min_speaking_named`` replaces ``min_speaking`` (an unsure speaking score is enough when the
   face is the named speaker's; 0: the name alone is enough); when no track has it,
   tracks known to be someone else are not eligible, nor tracks whose cluster is *likely* someone
   else (``Track.extra["likely"]``: the identity step's best naming, too ambiguous for a name).
   Without names, candidates of different shots must look alike (cosine similarity of their
   appearance descriptors >= ``min_same_person``, when descriptors are given);
   those unlike the strongest candidate are dropped.
4. Tracks shorter than ``min_track_frames`` are ignored; the selected frames are the union of the
   accepted tracks' frames (one track per frame), sampled uniformly to at most ``max_frames``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from stage1_face_extraction.records import Track

log = logging.getLogger(__name__)


@dataclass
class SelectConfig:
    """``stage1.select`` section."""

    min_speaking: float = 0.5  # evidence a track needs to count as the speaker
    # the same for a track the identity step named as the speaker (0: the name is enough)
    min_speaking_named: float = 0.0
    min_margin: float = 0.1  # over the runner-up in the same shot
    min_track_frames: int = 8
    min_same_person: float = 0.6  # cosine similarity of appearance descriptors across shots


@dataclass
class Selection:
    """What :func:`select_speaker` decided."""

    status: str  # ok | no_face | no_speaker
    tracks: list[int]  # accepted track ids
    frames: list[tuple[int, int]]  # (track_id, source frame) in frame order, at most max_frames
    evidence: dict[int, float]  # track id -> evidence, for every track considered
    reason: str = ""


def track_evidence(track: Track, voiced: np.ndarray | None) -> float:
    """Mean speaking score of ``track`` over its voiced frames (all frames when none is voiced).

    ``voiced``: (n_frames,) bool over the clip's source frames, or None.
    """
    if track.speaking is None or len(track) == 0:
        return 0.0
    s = np.asarray(track.speaking, np.float64)  # (T,)
    if voiced is not None:
        idx = track.frames[track.frames < len(voiced)]
        mask = voiced[idx]
        if mask.any():
            return float(s[: len(idx)][mask].mean())
    return float(s.mean())


def uniform_sample(n: int, k: int) -> np.ndarray:
    """Indices of ``min(n, k)`` items spread uniformly over ``range(n)`` (first and last kept)."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, k)).astype(np.int64))


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def select_speaker(
    tracks: list[Track],
    cfg: SelectConfig,
    voiced: np.ndarray | None = None,
    speaker: str | None = None,
    descriptors: dict[int, np.ndarray] | None = None,
    max_frames: int = 160,
) -> Selection:
    """Apply the rules of the module docstring to one clip's tracks; at most ``max_frames`` frames
    (the pipeline passes ``stage1.max_frames``)."""
    tracks = [t for t in tracks if len(t) >= cfg.min_track_frames]
    if not tracks:
        return Selection("no_face", [], [], {}, "no face track long enough")
    evidence = {t.track_id: track_evidence(t, voiced) for t in tracks}
    eligible = tracks
    named = speaker is not None and any(t.identity == speaker for t in tracks)
    min_speaking = cfg.min_speaking_named if named else cfg.min_speaking
    if speaker is not None:
        if named:
            eligible = [t for t in tracks if t.identity == speaker]
        else:  # the named speaker is not recognised here: never pick a face known (or likely) to be someone else
            eligible = [t for t in tracks if t.identity is None and t.extra.get("likely") in (None, speaker)]
    by_shot: dict[int, list[Track]] = {}
    for t in eligible:
        by_shot.setdefault(t.shot_id, []).append(t)
    candidates: list[Track] = []
    for shot_id, group in sorted(by_shot.items()):
        group = sorted(group, key=lambda t: -evidence[t.track_id])
        best = group[0]
        e = evidence[best.track_id]
        runner = evidence[group[1].track_id] if len(group) > 1 else 0.0
        # Other people in the shot compete on margin, unless the named speaker is among them: then
        # only another track of the same name is a rival, and a lone named track has none.
        rivals = [evidence[t.track_id] for t in tracks if t.shot_id == shot_id and t not in group]
        runner = runner if named else max([runner, *rivals])
        unrivalled = named and len(group) == 1
        if e >= min_speaking and (unrivalled or e - runner >= cfg.min_margin):
            candidates.append(best)
    if not candidates:
        top = max(evidence.values())
        return Selection("no_speaker", [], [], evidence, f"no confident speaker (best evidence {top:.2f})")
    if descriptors and speaker is None and len(candidates) > 1:
        anchor = max(candidates, key=lambda t: evidence[t.track_id] * len(t))
        if anchor.track_id in descriptors:
            candidates = [
                t
                for t in candidates
                if t is anchor
                or t.track_id not in descriptors
                or _cos(descriptors[t.track_id], descriptors[anchor.track_id]) >= cfg.min_same_person
            ]
    # One track per frame: if accepted tracks overlap in time (same shot cannot, by rule 2), the
    # one with more evidence wins.
    owner: dict[int, int] = {}
    for t in sorted(candidates, key=lambda t: evidence[t.track_id]):
        for f in t.frames.tolist():
            owner[int(f)] = t.track_id
    frames = sorted(owner.items())  # (frame, track)
    keep = uniform_sample(len(frames), max_frames)
    picked = [(frames[i][1], frames[i][0]) for i in keep.tolist()]
    return Selection("ok", sorted(t.track_id for t in candidates), picked, evidence)
