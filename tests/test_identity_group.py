"""Dialogue-level identity: clustering + naming a group's tracks, selection with names, the runner's
grouping, and the talking-over demo variant end to end (identity on vs off)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from stage1_face_extraction.common.config import ConfigError, from_dict
from stage1_face_extraction.identity.group import IdentityConfig, TrackFace, group_key, identify_group
from stage1_face_extraction.quality import score_identities, score_manifest
from stage1_face_extraction.records import Track
from stage1_face_extraction.selection import SelectConfig, select_speaker

DIM = 16
THRESHOLD = 0.42


def _people(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    return {name: q[i].astype(np.float32) for i, name in enumerate(["Ann", "Bob", "Cid", "Dee"])}


def _face(utt: str, tid: int, person: np.ndarray, evidence: float, rng, start: int = 0, end: int = 49) -> TrackFace:
    v = person + rng.normal(scale=0.03, size=DIM)
    return TrackFace(utt, tid, (v / np.linalg.norm(v)).astype(np.float32), evidence, start, end,
                     thumb=np.full((8, 8, 3), tid, np.uint8))


def _dialogue(lines: list[tuple[str, list[str], str | None]], seed: int = 1) -> tuple[list[TrackFace], dict]:
    """``lines``: (speaker, people on screen, person also moving the mouth or None) per utterance.
    The speaker's track speaks (0.7), a talking-over listener too (0.65), the others not (0.03)."""
    people = _people()
    rng = np.random.default_rng(seed)
    faces, speakers = [], {}
    for k, (speaker, on_screen, over) in enumerate(lines):
        utt = f"dia0_utt{k}"
        speakers[utt] = speaker
        for tid, who in enumerate(on_screen):
            ev = 0.7 if who == speaker else 0.65 if who == over else 0.03
            faces.append(_face(utt, tid, people[who], ev, rng))
    return faces, speakers


def _cfg(**kw) -> IdentityConfig:
    return from_dict(IdentityConfig, kw, "stage1.identity")


def test_dialogue_tracks_are_clustered_and_named() -> None:
    faces, speakers = _dialogue([
        ("Ann", ["Ann", "Bob", "Cid"], None),
        ("Bob", ["Ann", "Bob", "Cid"], None),
        ("Ann", ["Ann", "Bob"], "Bob"),  # Bob talks over Ann
        ("Bob", ["Bob", "Cid"], None),
    ])
    gi = identify_group("train/dia0", faces, speakers, _cfg(), THRESHOLD)
    assert len(set(gi.labels.tolist())) == 3
    for utt in speakers:
        for tid, (name, conf, cluster, _likely) in gi.of(utt).items():
            who = next(f for f in faces if f.utt_id == utt and f.track_id == tid)
            assert cluster >= 0
            if name is not None:
                assert 0.5 <= conf <= 1.0
                assert float(who.embedding @ _people()[name]) > 0.9, "the name is the face's own"
    named = {a.name for a in gi.names.values()}
    assert named == {"Ann", "Bob"}, "Cid never speaks: no name for them"
    # the tracks named Ann are Ann's
    ann = _people()["Ann"]
    for f, lab in zip(faces, gi.labels.tolist()):
        a = gi.names.get(lab)
        if a is not None and a.name == "Ann":
            assert float(f.embedding @ ann) > 0.9
    rep = gi.report()
    assert rep["group"] == "train/dia0" and rep["utterances"] == 4 and rep["tracks"] == len(faces)
    assert rep["speakers"] == {"Ann": 2, "Bob": 2} and rep["unmatched_speakers"] == []
    assert sorted(c["name"] or "" for c in rep["clusters"]) == ["", "Ann", "Bob"]
    assert sum(c["tracks"] for c in rep["clusters"]) == len(faces)
    tiles, labels = gi.sheet_tiles()
    assert (
        len(tiles) == 3
        and any(lab.startswith("Ann ") for lab in labels)
        and any(lab.startswith("? #") for lab in labels)
    )
    json.dumps(rep)  # JSON-able


def test_off_screen_speaker_is_unmatched() -> None:
    faces, speakers = _dialogue([
        ("Ann", ["Ann", "Bob"], None),
        ("Dee", ["Ann", "Bob"], None),  # Dee speaks off screen
        ("Bob", ["Ann", "Bob"], None),
    ])
    gi = identify_group("dev/dia0", faces, speakers, _cfg(), THRESHOLD)
    rep = gi.report()
    assert rep["unmatched_speakers"] == ["Dee"]
    assert {a.name for a in gi.names.values()} == {"Ann", "Bob"}


def test_cannot_link_splits_lookalikes_on_screen_together() -> None:
    people = _people()
    rng = np.random.default_rng(3)
    faces = [_face("u0", 0, people["Ann"], 0.7, rng), _face("u0", 1, people["Ann"], 0.03, rng),
             _face("u1", 0, people["Ann"], 0.7, rng, start=100, end=120)]
    gi = identify_group("g", faces, {"u0": "Ann", "u1": "Ann"}, _cfg(), THRESHOLD)
    assert gi.labels[0] != gi.labels[1], "two faces in the same frame are two people"
    assert len(set(gi.labels.tolist())) == 2


def test_references_override_and_single_clip_groups() -> None:
    people = _people()
    faces, speakers = _dialogue([("Ann", ["Ann", "Bob"], None), ("Bob", ["Ann", "Bob"], None)])
    refs = {"Bob": people["Bob"][None], "Zed": people["Cid"][None]}
    gi = identify_group("g", faces, speakers, _cfg(), THRESHOLD, references=refs)
    by_name = {a.name: a for a in gi.names.values()}
    assert by_name["Bob"].source == "reference" and by_name["Ann"].source == "cooccurrence"
    # one clip alone: co-occurrence names nothing (it would restate the speaking scores) ...
    one = [f for f in faces if f.utt_id == "dia0_utt0"]
    assert identify_group("g", one, {"dia0_utt0": "Ann"}, _cfg(), THRESHOLD).names == {}
    # ... references still do
    gi1 = identify_group("g", one, {"dia0_utt0": "Ann"}, _cfg(), THRESHOLD, references=refs)
    assert [a.name for a in gi1.names.values()] == ["Bob"]


def test_empty_group_and_config_checks() -> None:
    gi = identify_group("g", [], {"u0": "Ann"}, _cfg(), THRESHOLD)
    assert gi.report()["clusters"] == [] and gi.report()["unmatched_speakers"] == ["Ann"]
    with pytest.raises(ConfigError, match="scope"):
        _cfg(scope="season")
    with pytest.raises(ConfigError, match="bogus"):
        _cfg(cluster={"bogus": 1})
    with pytest.raises(ConfigError, match="frames_per_track"):
        _cfg(frames_per_track=0)
    assert group_key("dialogue", "train", 3, 1, 4, "dia3_utt0") == "train/dia3"
    assert group_key("episode", "train", 3, 1, 4, "dia3_utt0") == "train/s1e4"
    assert group_key("split", "dev", 3, 1, 4, "dia3_utt0") == "dev"


# ----------------------------------------------------------------------------------- selection


def _track(tid: int, ev: float, identity: str | None, n: int = 40) -> Track:
    frames = np.arange(n)
    return Track(tid, 0, frames, np.zeros((n, 4), np.float32), np.ones(n, np.float32), np.ones(n, bool),
                 speaking=np.full(n, ev, np.float32), identity=identity)


def test_named_speaker_wins_when_two_mouths_move() -> None:
    cfg = SelectConfig(min_speaking=0.3, min_margin=0.1, min_speaking_named=0.15)
    both = [_track(0, 0.60, "Bob"), _track(1, 0.55, "Ann")]
    assert select_speaker(both, cfg).status == "no_speaker", "without names two moving mouths are ambiguous"
    sel = select_speaker(both, cfg, speaker="Ann")
    assert sel.status == "ok" and sel.tracks == [1], "the named speaker, though the other scores higher"
    unsure = [_track(0, 0.2, "Ann"), _track(1, 0.02, "Bob")]
    assert select_speaker(unsure, cfg).status == "no_speaker"
    assert select_speaker(unsure, cfg, speaker="Ann").tracks == [0], "an unsure score is enough for the named face"
    assert select_speaker([_track(0, 0.1, "Ann")], cfg, speaker="Ann").status == "no_speaker"
    # the named speaker is not on screen: a face known to be someone else is never chosen
    assert select_speaker([_track(0, 0.9, "Bob")], cfg, speaker="Ann").status == "no_speaker"
    # ... an unknown face can be, and known people in its shot still compete on margin
    assert select_speaker([_track(0, 0.9, None), _track(1, 0.1, "Bob")], cfg, speaker="Ann").tracks == [0]
    assert select_speaker([_track(0, 0.6, None), _track(1, 0.58, "Bob")], cfg, speaker="Ann").status == "no_speaker"


def test_a_lone_named_track_needs_no_margin() -> None:
    """A named speaker whose lips av_sync cannot read (evidence ~0) is still the named face; two
    tracks of that name in one shot still need the margin."""
    cfg = SelectConfig(min_speaking=0.3, min_margin=0.1, min_speaking_named=0.0)
    weak = [_track(0, 0.04, "Ann"), _track(1, 0.5, "Bob")]
    assert select_speaker(weak, cfg).tracks == [1], "without the name the better-scored face wins"
    assert select_speaker(weak, cfg, speaker="Ann").tracks == [0]
    assert select_speaker([_track(0, 0.0, "Ann")], cfg, speaker="Ann").tracks == [0]
    twins = [_track(0, 0.30, "Ann"), _track(1, 0.25, "Ann")]
    assert select_speaker(twins, cfg, speaker="Ann").status == "no_speaker"
    assert (
        select_speaker([_track(0, 0.05, "Ann")], SelectConfig(min_speaking_named=0.15), speaker="Ann").status
        == "no_speaker"
    )


# ------------------------------------------------------------------------------------- runner


def test_a_face_likely_someone_else_is_never_the_speaker() -> None:
    """No track carries the speaker's name, so unnamed faces compete on their scores, except one
    whose cluster is likely another speaker's (naming.likely_margin): a muted talker who moved the
    lips in time with someone else's line is not picked for it."""
    cfg = SelectConfig(min_speaking=0.2, min_margin=0.1)
    muted, real = _track(0, 0.56, None), _track(1, 0.0, None)
    assert select_speaker([muted, real], cfg, speaker="Ann").tracks == [0], "without the likely name"
    muted.extra["likely"] = "Bob"
    assert select_speaker([muted, real], cfg, speaker="Ann").status == "no_speaker"
    muted.extra["likely"] = "Ann"
    assert select_speaker([muted, real], cfg, speaker="Ann").tracks == [0], "likely the speaker: eligible"
    muted.extra["likely"] = "Bob"
    assert select_speaker([muted, real], cfg).tracks == [0], "no transcript speaker: names play no part"


def test_likely_names_reach_the_tracks() -> None:
    """identify_group keeps likely names apart from names; GroupIdentity.of hands them to selection."""
    people = _people()
    rng = np.random.default_rng(3)
    # Ann speaks (0.5) during Bob's line, Bob's lips never register: 0 -> Bob is the best naming
    # of cluster(Ann) by a small margin only
    faces = [_face("u0", 0, people["Ann"], 0.30, rng), _face("u0", 1, people["Bob"], 0.0, rng),
             _face("u1", 0, people["Ann"], 0.50, rng), _face("u1", 1, people["Bob"], 0.0, rng)]
    speakers = {"u0": "Ann", "u1": "Bob"}
    gi = identify_group("g", faces, speakers, _cfg(naming={"likely_margin": 0.05}), THRESHOLD)
    assert gi.names == {}, "too weak to name"
    likely = {tid: entry[3] for tid, entry in gi.of("u1").items()}
    assert likely == {0: "Bob", 1: None}
    off = identify_group("g", faces, speakers, _cfg(naming={"likely_margin": None}), THRESHOLD)
    assert all(entry[3] is None for entry in off.of("u1").values())
    assert [c["likely"] for c in gi.report()["clusters"]] == ["Bob", None]


def test_runner_rejects_scattered_groups(repo_root: Path) -> None:
    from stage1_face_extraction.common.config import load_section
    from stage1_face_extraction.executors import ClipJob, ClipRunner
    from stage1_face_extraction.section import Stage1Config

    cfg = load_section(repo_root / "params.yaml", "stage1", Stage1Config)
    jobs = [ClipJob("a.mp4", "a", group="g1"), ClipJob("b.mp4", "b", group="g2"), ClipJob("c.mp4", "c", group="g1")]
    with ClipRunner(cfg, workers=1) as runner, pytest.raises(ValueError, match="not contiguous"):
        list(runner.map(jobs))


# ------------------------------------------------------------------- talking over, end to end

TALKING_OVER_DEMO = {
    "seed": 5,
    "dialogues_per_split": {"train": 2, "dev": 1, "test": 1},
    "utterances_min": 4,
    "utterances_max": 5,
    "duration_min_s": 2.0,
    "duration_max_s": 3.0,
    "p_cut_to_listener": 0.0,
    "p_speaker_off_screen": 0.0,
    "p_talking_over": 0.6,
    "workers": 2,
}


@pytest.fixture(scope="module")
def talking_over(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> dict:
    """A demo corpus where a listener talks over the speaker in ~60 % of the clips, run through
    prepare + extract_faces with the identity step off and on."""
    from stage1_face_extraction.demo.generate import DemoConfig, generate_corpus
    from stage1_face_extraction.stages import extract_faces, prepare
    from stage1_face_extraction.store import read_identities, read_manifest

    root = tmp_path_factory.mktemp("talking_over")
    corpus = root / "MELD.Raw"
    generate_corpus(from_dict(DemoConfig, TALKING_OVER_DEMO, "demo"), corpus)
    truth = json.loads((corpus / "truth.json").read_text(encoding="utf-8"))
    out = {"truth": truth}
    for scope in ("none", "dialogue"):
        params = yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))
        params["data"]["meld_root"] = str(corpus)
        params["stage1"]["identity"]["scope"] = scope
        params["stage1"]["contact_sheets"] = 0
        pfile = root / f"params-{scope}.yaml"
        pfile.write_text(yaml.safe_dump(params), encoding="utf-8")
        table = root / f"utt-{scope}.parquet"
        assert prepare.main(["--params", str(pfile), "--out", str(table)]) == 0
        faces = root / f"faces-{scope}"
        argv = ["--params", str(pfile), "--utterances", str(table), "--meld-root", str(corpus), "--out", str(faces)]
        assert extract_faces.main(argv) == 0
        records, ids = {}, {}
        for split in ("train", "dev", "test"):
            records.update({f"{split}/{r['utt_id']}": r for r in read_manifest(faces / split / "manifest.jsonl")})
            if scope != "none":
                ids.update(read_identities(faces / split / "identities.jsonl"))
        out[scope] = (records, ids, faces)
    return out


def test_talking_over_yields_the_named_speaker(talking_over: dict) -> None:
    truth = talking_over["truth"]
    over = {k: c for k, c in truth["clips"].items() if c["talking_over"]}
    assert len(over) >= 5, "the variant corpus must hold talking-over clips"
    sub = {**truth, "clips": over}
    plain = score_manifest({k: talking_over["none"][0][k] for k in over}, sub)
    named = score_manifest({k: talking_over["dialogue"][0][k] for k in over}, sub)
    msg = f"identity off: {plain.as_dict()}\nidentity on: {named.as_dict()}"
    assert named.precision >= 0.95, msg
    assert named.coverage > plain.coverage, "names must recover clips the speaking score alone leaves ambiguous\n" + msg
    whole = score_manifest(talking_over["dialogue"][0], truth)
    assert whole.precision >= 0.95 and whole.coverage >= 0.9, whole.as_dict()


def test_identity_reports_and_manifest_fields(talking_over: dict) -> None:
    records, ids, faces = talking_over["dialogue"]
    truth = talking_over["truth"]
    q = score_identities(records, ids, truth)
    assert q.clusters >= 8 and q.accuracy >= 0.95 and q.purity >= 0.95, q.as_dict()
    assert set(ids) == {f"{c['split']}/dia{c['dialogue_id']}" for c in truth["clips"].values()}
    for key, rec in records.items():
        clip = truth["clips"][key]
        for t in rec["tracks"]:
            assert {"identity", "identity_score", "cluster"} <= set(t)
        for f in rec["frames"]:
            assert "identity" in f and "identity_score" in f
        # when a track of the clip is named as the speaker, every selected crop comes from one
        if any(t["identity"] == clip["speaker"] for t in rec["tracks"]):
            assert all(f["identity"] == clip["speaker"] for f in rec["frames"]), key
    assert not (faces / "train" / "identity_sheets").exists()  # pictures live outside the faces folder
    sheets = sorted((faces.with_name(faces.name + "_pictures") / "train" / "identity_sheets").glob("*.png"))
    assert [p.name for p in sheets] == ["train_dia0.png", "train_dia1.png"]
    import cv2

    img = cv2.imread(str(sheets[0]))
    assert img is not None and img.shape[0] >= 96 and img.std() > 10
