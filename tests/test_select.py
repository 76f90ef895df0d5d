"""Speaker selection on hand-made tracks (no video, no models)."""

from __future__ import annotations

import numpy as np

from stage1_face_extraction.records import Track
from stage1_face_extraction.selection import SelectConfig, select_speaker, uniform_sample


def make_track(tid, shot, start, n, speaking, identity=None):
    frames = np.arange(start, start + n)
    boxes = np.tile(np.array([[10, 10, 60, 60]], np.float32), (n, 1)) + tid * 100
    return Track(
        track_id=tid, shot_id=shot, frames=frames, boxes=boxes, scores=np.ones(n, np.float32),
        detected=np.ones(n, bool), speaking=np.full(n, speaking, np.float32), identity=identity,
    )


def test_picks_speaking_track_and_samples():
    tracks = [make_track(0, 0, 0, 300, 0.9), make_track(1, 0, 0, 300, 0.2)]
    sel = select_speaker(tracks, SelectConfig(), max_frames=160)
    assert sel.status == "ok" and sel.tracks == [0]
    assert len(sel.frames) == 160 and {t for t, _ in sel.frames} == {0}
    frames = [f for _, f in sel.frames]
    assert frames == sorted(frames) and frames[0] == 0 and frames[-1] == 299


def test_ambiguous_or_weak_gives_no_speaker():
    tie = [make_track(0, 0, 0, 50, 0.8), make_track(1, 0, 0, 50, 0.78)]
    assert select_speaker(tie, SelectConfig()).status == "no_speaker"
    weak = [make_track(0, 0, 0, 50, 0.3)]
    assert select_speaker(weak, SelectConfig()).status == "no_speaker"
    assert select_speaker([], SelectConfig()).status == "no_face"
    short = [make_track(0, 0, 0, 3, 0.9)]
    assert select_speaker(short, SelectConfig(min_track_frames=8)).status == "no_face"


def test_listener_only_shot_is_not_selected():
    # wide shot with the speaker, then a cut to a silent listener close-up
    tracks = [make_track(0, 0, 0, 40, 0.9), make_track(1, 0, 0, 40, 0.1), make_track(2, 1, 40, 30, 0.15)]
    sel = select_speaker(tracks, SelectConfig())
    assert sel.tracks == [0] and max(f for _, f in sel.frames) == 39


def test_identity_consistency_across_shots():
    tracks = [make_track(0, 0, 0, 40, 0.9), make_track(1, 1, 40, 40, 0.8)]
    desc = {0: np.array([1.0, 0.0]), 1: np.array([0.0, 1.0])}
    assert select_speaker(tracks, SelectConfig(), descriptors=desc).tracks == [0]
    desc_same = {0: np.array([1.0, 0.1]), 1: np.array([0.9, 0.0])}
    assert select_speaker(tracks, SelectConfig(), descriptors=desc_same).tracks == [0, 1]


def test_named_speaker_restricts_candidates():
    tracks = [make_track(0, 0, 0, 40, 0.9, "Joey"), make_track(1, 0, 0, 40, 0.6, "Ross")]
    sel = select_speaker(tracks, SelectConfig(), speaker="Ross")
    assert sel.tracks == [1]


def test_named_speaker_absent_never_picks_someone_else():
    tracks = [make_track(0, 0, 0, 40, 0.9, "Joey"), make_track(1, 0, 0, 40, 0.1)]
    assert select_speaker(tracks, SelectConfig(), speaker="Ross").status == "no_speaker"
    tracks = [make_track(0, 0, 0, 40, 0.1, "Joey"), make_track(1, 0, 0, 40, 0.9)]
    assert select_speaker(tracks, SelectConfig(), speaker="Ross").tracks == [1]


def test_voiced_mask_focuses_evidence():
    t = make_track(0, 0, 0, 20, 0.0)
    t.speaking[10:] = 1.0
    voiced = np.zeros(20, bool)
    voiced[10:] = True
    assert select_speaker([t], SelectConfig(), voiced=voiced).status == "ok"
    assert select_speaker([t], SelectConfig(min_speaking=0.6)).status == "no_speaker"  # mean 0.5 unvoiced


def test_uniform_sample():
    assert uniform_sample(5, 160).tolist() == [0, 1, 2, 3, 4]
    idx = uniform_sample(1000, 10)
    assert len(idx) == 10 and idx[0] == 0 and idx[-1] == 999
