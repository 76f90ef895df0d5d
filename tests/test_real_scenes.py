"""Stage 1 on REAL footage: scenes composed from the real talking heads in ../shared (skipped when absent).

The composer is checked against its own construction (whose voice, where the faces are), then a
small version of ``benchmarks/stage1_real_scenes.py`` runs the default stage 1 (params.yaml) on 18
scenes of three people. By the speaking score alone (no identity step) it must meet the issue's
precision goals (quiet listeners >= 0.97, talking-over listeners >= 0.90, no false pick on a
listener-alone clip) and find the speaker in at least half the clips that show them; with the
default identity step (faces clustered and named from the transcript's speaker names) it must meet
all the issue's goals, coverage included (quiet >= 0.95, talking-over >= 0.60).
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from conftest import REPO_ROOT, SHARED
from stage1_face_extraction.common.config import from_dict, load_params
from stage1_face_extraction.composer import SceneConfig, compose_scenes, load_sources, plan_scenes
from stage1_face_extraction.identity.group import identify_group
from stage1_face_extraction.pipeline import AUDIO_SR, FacePipeline
from stage1_face_extraction.quality import iou, score_scenes
from stage1_face_extraction.section import Stage1Config
from stage1_face_extraction.video import probe, read_audio

HEADS = SHARED / "data" / "talking_heads"
# three people; quick to decode
NAMES = ["retalking_face_3", "retalking_face_5", "sadtalker_WDA_KatieHill_000"]


@pytest.fixture(scope="module")
def sources():
    if not HEADS.is_dir() or not any(HEADS.glob("*.mp4")):
        pytest.skip(f"real talking-head clips not found at {HEADS} (they live in ../shared, outside the repo)")
    return load_sources(HEADS, names=NAMES)


@pytest.fixture(scope="module")
def scenes(sources, tmp_path_factory):
    """Two clips of every scene type with a quiet listener and two of every type with a talking
    one, 640x360, 2-4.5 s (MELD's typical utterance lengths)."""
    out = tmp_path_factory.mktemp("scenes")
    base = dict(width=640, height=360, per_type=2)
    quiet = compose_scenes(sources, out / "quiet", SceneConfig(seed=5, listener_kinds=["quiet"], **base))
    talking = compose_scenes(
        sources, out / "talking", SceneConfig(seed=5, scene_types=["two_shot_left", "two_shot_right",
        "cut_to_listener", "listener_alone"], listener_kinds=["talking"], **base),
    )
    return out, quiet, talking


def test_plan_is_deterministic_and_covers_every_type(sources):
    cfg = SceneConfig(per_type=2)
    a, b = plan_scenes(sources, cfg), plan_scenes(sources, cfg)
    assert [p.utt_id for p in a] == [p.utt_id for p in b]
    assert [(p.speaker, p.listener, p.start) for p in a] == [(p.speaker, p.listener, p.start) for p in b]
    assert len(a) == 2 * (1 + 4 * 2)  # alone + 4 types x 2 listener kinds
    assert all(p.listener != p.speaker for p in a if p.listener is not None)
    with pytest.raises(ValueError, match="unknown scene type"):
        SceneConfig(scene_types=["three_shot"])


def test_sources_of_one_person_are_never_paired(sources):
    names = [s.name for s in sources]
    cfg = SceneConfig(per_type=4, same_person=[[names[0], names[1]]])
    assert cfg.person(names[1]) == cfg.person(names[0]) != cfg.person(names[2])
    plans = plan_scenes(sources, cfg)
    pairs = {frozenset((names[p.speaker], names[p.listener])) for p in plans if p.listener is not None}
    assert frozenset(names[:2]) not in pairs and pairs  # every pair includes the third person
    # without the group the same seed pairs them (the rule, not luck, keeps them apart)
    free = plan_scenes(sources, SceneConfig(per_type=4))
    assert frozenset(names[:2]) in {
        frozenset((names[p.speaker], names[p.listener])) for p in free if p.listener is not None
    }
    with pytest.raises(ValueError, match="fewer than 2 people"):
        plan_scenes(sources, SceneConfig(same_person=[names]))


def test_same_person_groups_finds_two_recordings_of_one_face():
    """retalking_face_3 and the SadTalker AlexandriaOcasioCortez clip show the same woman (the
    shared README counts 7 clips, they are 6 people); two other people stay apart."""
    from stage1_face_extraction.composer import same_person_groups
    from stage1_face_extraction.identity import create_embedder

    if not HEADS.is_dir():
        pytest.skip(f"real talking-head clips not found at {HEADS}")
    names = [
        "retalking_face_3",
        "retalking_face_5",
        "sadtalker_WDA_AlexandriaOcasioCortez_000",
        "sadtalker_WDA_KatieHill_000",
    ]
    srcs = load_sources(HEADS, names=names)
    assert same_person_groups(srcs, create_embedder("dlib_resnet")) == [["retalking_face_3", names[2]]]


def test_truth_follows_construction(scenes, sources):
    out, quiet, talking = scenes
    by_name = {s.name: s for s in sources}
    for split_dir, truth in (("quiet", quiet), ("talking", talking)):
        for key, clip in truth["clips"].items():
            path = out / split_dir / clip["path"]
            info = probe(path)
            assert (info.width, info.height) == (640, 360) and info.has_audio
            assert len(clip["frames"]) == clip["n_frames"]
            speaker_frames = [f for f in clip["frames"] if any(face["speaker"] for face in f["faces"])]
            if clip["shot_plan"] == "listener_alone":
                assert not speaker_frames and all(len(f["faces"]) == 1 for f in clip["frames"])
            elif clip["shot_plan"] == "cut_to_listener":
                assert len(speaker_frames) == clip["cut_frame"]
                assert all(len(f["faces"]) == 1 for f in clip["frames"][clip["cut_frame"]:])
            else:
                assert len(speaker_frames) == clip["n_frames"]
            # the heard voice is the speaker's own, from the recorded segment
            heard = read_audio(path, AUDIO_SR)
            src = by_name[clip["speaker"]]
            t0, t1 = clip["segment"]
            own = read_audio(src.path, AUDIO_SR)[int(t0 * AUDIO_SR) : int(t1 * AUDIO_SR)]
            n = (min(len(heard), len(own)) - 800) // 160 * 160
            env = lambda x: np.abs(x[:n]).reshape(-1, 160).mean(1)  # noqa: E731 - 10 ms envelope
            assert np.corrcoef(env(heard), env(own))[0, 1] > 0.9, key


def test_truth_boxes_match_a_detector_on_the_composed_frames(scenes):
    from stage1_face_extraction.detectors import create_detector
    from stage1_face_extraction.video import iter_frames

    out, quiet, _ = scenes
    det = create_detector("mtcnn", downscale=1.0, min_face_size=30, device="cpu")
    clip = quiet["clips"]["scenes/two_shot_left-quiet-00"]
    images = [fr.image for fr in iter_frames(out / "quiet" / clip["path"]) if fr.index in (3, 30)]
    for image, frame in zip(images, (3, 30)):
        found = det.detect([image])[0]
        for face in clip["frames"][frame]["faces"]:
            assert max(iou(face["box"], b) for b in found.boxes) > 0.6


@pytest.fixture(scope="module")
def stage1_runs(scenes):
    """The default stage 1 (params.yaml) on the 18 scenes, analysed once and selected twice: by the
    speaking score alone (no identity step: the scorer's own quality) and with the default identity
    step over all 18 clips (three people, as in one MELD dialogue or episode: the faces clustered
    and named from the transcript's speaker names)."""
    out, quiet, talking = scenes
    cfg = from_dict(Stage1Config, load_params(REPO_ROOT / "params.yaml")["stage1"], "stage1")
    assert cfg.identity.enabled, "the default params run the identity step"
    pipe = FacePipeline(cfg)
    truth, analyses = {"clips": {}}, {}
    for split_dir, tr in (("quiet", quiet), ("talking", talking)):
        for key, clip in tr["clips"].items():
            k = f"{split_dir}/{key}"
            truth["clips"][k] = clip
            analyses[k] = pipe.analyse(
                out / split_dir / clip["path"], utt_id=k, speaker=clip["speaker_person"], embed=True
            )
    speakers = {k: c["speaker_person"] for k, c in truth["clips"].items()}
    faces = [f for a in analyses.values() for f in a.faces]
    gi = identify_group("scenes", faces, speakers, cfg.identity, pipe.identity_embedder.distance_threshold)
    alone = {k: pipe.finish(copy.deepcopy(a)).record for k, a in analyses.items()}
    named = {k: pipe.finish(copy.deepcopy(a), gi.of(k)).record for k, a in analyses.items()}
    return truth, score_scenes(alone, truth), score_scenes(named, truth), gi


def test_default_scorer_alone_finds_the_real_speaker(stage1_runs):
    _, groups, _, _ = stage1_runs
    report = json.dumps({k: v.as_dict() for k, v in groups.items()}, indent=1)
    q, t = groups["quiet"], groups["talking"]
    # The precision goals hold: never a wrong face, never a pick on a listener alone.
    assert q.precision >= 0.97 and q.false_picks == 0, report
    assert t.precision >= 0.90 and t.false_picks == 0, report
    # Coverage: before the real-scene calibration the default found no speaker at all in real
    # footage (coverage 0). The scorer ALONE does not reach the coverage goals (benchmark,
    # benchmarks/README.md "Stage 1 on real footage": quiet ~0.8); this guards the gain.
    assert groups["all"].coverage >= 0.5, report


def test_default_stage1_with_names_meets_the_goals(stage1_runs):
    """With the identity step (default params), the issue's goals: quiet listeners precision >= 0.97,
    coverage >= 0.95, no false pick; talking-over listeners precision >= 0.90, coverage >= 0.60."""
    _, _, groups, gi = stage1_runs
    report = json.dumps({k: v.as_dict() for k, v in groups.items()}, indent=1)
    names = sorted(a.name for a in gi.names.values())
    q, t = groups["quiet"], groups["talking"]
    assert q.precision >= 0.97 and q.coverage >= 0.95 and q.false_picks == 0, (names, report)
    assert t.precision >= 0.90 and t.coverage >= 0.60 and t.false_picks == 0, (names, report)
    assert len(names) >= 2, names  # the co-occurrence naming found (at least) two of the three people
