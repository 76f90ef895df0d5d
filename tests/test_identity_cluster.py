"""Identity groundwork: track clustering, cluster naming, and the inception_resnet_v1 / arcface embedders."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest

from stage1_face_extraction.common.config import ConfigError
from stage1_face_extraction.identity import create_embedder, list_embedders
from stage1_face_extraction.identity.cluster import ClusterConfig, cluster_tracks, co_visible_pairs
from stage1_face_extraction.identity.naming import (
    NamingConfig,
    UtteranceFaces,
    assign_names,
    assignment_margin,
    cooccurrence,
    utterances_from_maps,
)
from stage1_face_extraction.identity.reference import embed_image_faces, read_rgb

SINGLE = ["obama_1", "obama_2", "obama_3", "biden_1", "biden_2", "rose_leslie_1", "rose_leslie_2", "kit_harington_1"]


def person(stem: str) -> str:
    return stem.rsplit("_", 1)[0]


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def purity_completeness(labels, truth) -> tuple[float, float]:
    """purity: share of tracks in a cluster whose majority person is theirs; completeness: same, swapped."""
    n = len(labels)
    pur = (
        sum(Counter(t for lab2, t in zip(labels, truth) if lab2 == lab).most_common(1)[0][1] for lab in set(labels)) / n
    )
    com = sum(Counter(lab for lab, t2 in zip(labels, truth) if t2 == t).most_common(1)[0][1] for t in set(truth)) / n
    return pur, com


# ------------------------------------------------------------------------------ real photos


@pytest.fixture(scope="module")
def dlib_photo_embeddings(shared_faces_dir):
    from stage1_face_extraction.detectors import create_detector

    emb = create_embedder("dlib_resnet")
    det = create_detector("mtcnn", min_score=0.9, min_face_size=40, device="cpu")
    vecs = []
    for stem in SINGLE:
        _, e = embed_image_faces(emb, det, read_rgb(shared_faces_dir / f"{stem}.jpg"))
        assert len(e) >= 1, stem
        vecs.append(e[0])
    return np.stack(vecs), emb.distance_threshold


@pytest.mark.parametrize(
    "method, metric", [("agglomerative", "euclidean"), ("agglomerative", "cosine"), ("hdbscan", "euclidean")]
)
def test_real_photos_cluster_by_person(dlib_photo_embeddings, method, metric):
    emb, thr = dlib_photo_embeddings
    labels = cluster_tracks(emb, thr, method, metric=metric)
    truth = [person(s) for s in SINGLE]
    pur, com = purity_completeness(labels.tolist(), truth)
    # measured: purity = completeness = 1.0 for all three (4 clusters for 4 people); perfect for any
    # threshold in 0.30-0.56 (agglomerative) / 0.30-0.54 (hdbscan); same person <= 0.31, others >= 0.54
    assert (pur, com) == (1.0, 1.0), (labels, truth)
    assert len(set(labels.tolist())) == 4


def test_real_photos_cannot_link_splits_a_person(dlib_photo_embeddings):
    emb, thr = dlib_photo_embeddings
    labels = cluster_tracks(emb, thr, cannot_link=[(0, 1)])  # obama_1 and obama_2 "in one frame"
    assert labels[0] != labels[1]
    assert len(set(labels.tolist())) == 5
    assert labels[3] == labels[4] and labels[5] == labels[6]


# ---------------------------------------------------------------------------- synthetic


def _blobs(k=3, per=4, dim=32, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(k, dim)))
    emb = unit(np.repeat(centres, per, 0) + noise * rng.normal(size=(k * per, dim)))
    return emb, np.repeat(np.arange(k), per)


@pytest.mark.parametrize("method", ["agglomerative", "hdbscan"])
def test_cluster_blobs_and_edge_cases(method):
    emb, truth = _blobs()
    labels = cluster_tracks(emb, 0.6, method)
    assert labels.tolist() == truth.tolist()  # relabelled by first appearance
    assert cluster_tracks(emb[:0], 0.6, method).shape == (0,)
    assert cluster_tracks(emb[:1], 0.6, method).tolist() == [0]
    # tiny threshold: nothing merges with agglomerative; min_cluster_size=2 then drops every singleton
    if method == "agglomerative":
        assert len(set(cluster_tracks(emb, 1e-3, method).tolist())) == len(emb)
        assert set(cluster_tracks(emb, 1e-3, method, min_cluster_size=2).tolist()) == {-1}


@pytest.mark.parametrize(
    "method, linkage", [("agglomerative", "average"), ("agglomerative", "single"), ("hdbscan", "average")]
)
def test_cannot_link_splits_co_visible_tracks(method, linkage):
    # two people whose embeddings are nearly the same (twins / a weak embedder) but who are seen together
    emb, _ = _blobs(k=1, per=6, noise=0.02, seed=3)
    frames = [{0, 1, 2}, {10, 11}, {0, 1}, {10, 12}, {2, 20}, {11, 21}]  # tracks 0,2,4 = A; 1,3,5 = B
    pairs = co_visible_pairs([{("clip", f) for f in fr} for fr in frames])
    assert (0, 2) in pairs and (1, 3) in pairs and (1, 5) in pairs and (0, 4) in pairs
    assert cluster_tracks(emb, 0.6, method, linkage=linkage).tolist() == [0] * 6  # no constraint: one cluster
    labels = cluster_tracks(emb, 0.6, method, linkage=linkage, cannot_link=pairs)
    for i, j in pairs:
        assert labels[i] != labels[j], (i, j, labels)


def test_hdbscan_huge_epsilon_gives_one_cluster():
    # scikit-learn's epsilon search fails when epsilon reaches the root; cluster_tracks falls back
    emb, _ = _blobs(k=4, per=2, noise=0.1, seed=0)
    assert cluster_tracks(emb, 1.9, "hdbscan").tolist() == [0] * 8
    assert cluster_tracks(emb, 1.9, "hdbscan", cannot_link=[(0, 1)]).tolist()[:2] == [0, 1]


def test_cannot_link_post_split_keeps_nearest_together():
    rng = np.random.default_rng(5)
    a, b = unit(rng.normal(size=(2, 16)))
    mid = unit(a + b)
    emb = unit(np.stack([a, a + 0.01 * rng.normal(size=16), b, b + 0.01 * rng.normal(size=16), mid]))
    # single linkage + a huge threshold puts everything in one cluster; 0 and 2 are co-visible
    labels = cluster_tracks(emb, 2.0, linkage="single", cannot_link=[(0, 2)])
    assert labels[0] != labels[2] and labels[0] == labels[1] and labels[2] == labels[3]


def test_cluster_config_validation_and_threshold():
    with pytest.raises(ConfigError, match="method"):
        ClusterConfig(method="kmeans")
    with pytest.raises(ConfigError, match="min_cluster_size"):
        ClusterConfig(min_cluster_size=0)
    with pytest.raises(ConfigError, match="threshold"):
        ClusterConfig().cluster(np.eye(3))
    emb, truth = _blobs()
    assert ClusterConfig().cluster(emb, default_threshold=0.6).tolist() == truth.tolist()
    assert ClusterConfig(threshold=0.6, method="hdbscan").cluster(emb).tolist() == truth.tolist()
    with pytest.raises(ValueError, match="out of range"):
        cluster_tracks(emb, 0.6, cannot_link=[(0, 99)])


# ------------------------------------------------------------------------------- naming


def _dialogue(seed=0, n_utt=60):
    """Clusters 0..3 are Rachel, Ross, Monica, Joey; cluster 4 is on screen a lot and never speaks;
    cluster 5 is Chandler, who never speaks here. Listeners get small noisy evidence, the speaker's
    cluster is sometimes off screen or scored low."""
    rng = np.random.default_rng(seed)
    truth = {0: "Rachel", 1: "Ross", 2: "Monica", 3: "Joey"}
    names = list(truth.values())
    utts = []
    for k in range(n_utt):
        spk = int(rng.integers(0, 4))
        ev: dict[int, float] = {}
        if rng.random() > 0.15:  # speaker on screen 85 % of the time
            ev[spk] = float(rng.uniform(0.3, 1.0))
        for c in rng.choice([c for c in range(4) if c != spk], size=int(rng.integers(0, 3)), replace=False):
            ev[int(c)] = float(rng.uniform(0.0, 0.35))  # listeners, sometimes mouth moves
        if rng.random() < 0.7:
            ev[4] = 0.0 if rng.random() < 0.8 else float(rng.uniform(0.0, 0.1))  # the distractor
        if rng.random() < 0.2:
            ev[5] = 0.0
        utts.append(UtteranceFaces(k, names[spk], ev))
    utts.append(UtteranceFaces("no_speaker", None, {0: 1.0}))
    return utts, truth


def test_assign_names_recovers_truth_and_leaves_distractor_unnamed():
    utts, truth = _dialogue()
    clusters, names, C = cooccurrence(utts)
    assert clusters == [0, 1, 2, 3, 4, 5] and names == ["Joey", "Monica", "Rachel", "Ross"]
    got = assign_names(utts, NamingConfig(min_support=1.0, min_confidence=0.5))
    assert {c: a.name for c, a in got.items()} == truth
    assert 4 not in got and 5 not in got  # distractor on screen in ~70 % of the lines, never speaking
    for c, a in got.items():
        assert a.source == "cooccurrence" and 0.5 <= a.confidence <= 1.0 and a.support >= 1.0
        name, conf = a[:2]
        assert conf == pytest.approx(C[clusters.index(c), names.index(name)] / C[clusters.index(c)].sum())


def test_assign_names_min_support_and_confidence():
    utts = [UtteranceFaces(0, "A", {0: 0.6}), UtteranceFaces(1, "B", {0: 0.4, 1: 0.2})]
    assert assign_names(utts, NamingConfig(min_support=0.5, min_confidence=0.5)) == {
        # margin: forbidding 0 -> A leaves 0 -> B (0.4) + 1 -> A (0): 0.8 - 0.4
        0: ("A", pytest.approx(0.6), pytest.approx(0.6), "cooccurrence", pytest.approx(0.4))
    }
    assert assign_names(utts, NamingConfig(min_support=0.1, min_confidence=0.5))[1].name == "B"
    assert 0 not in assign_names(utts, NamingConfig(min_support=0.1, min_confidence=0.7))
    assert assign_names([], NamingConfig()) == {}
    with pytest.raises(ConfigError):
        NamingConfig(min_confidence=2.0)
    with pytest.raises(ConfigError, match="min_margin"):
        NamingConfig(min_margin=-1.0)


def test_assign_names_leaves_ambiguous_pairs_unnamed():
    """Two people who both speak during both names' lines: either naming explains the lines
    about as well, so neither name is given (min_margin), unless the margin rule is off."""
    utts = [UtteranceFaces(0, "A", {0: 0.5, 1: 0.45}), UtteranceFaces(1, "B", {0: 0.4, 1: 0.42}),
            UtteranceFaces(2, "A", {0: 0.3, 1: 0.3})]
    cfg = NamingConfig(min_support=0.1, min_confidence=0.1, min_margin=0.25)
    assert assign_names(utts, cfg) == {}
    loose = assign_names(utts, NamingConfig(min_support=0.1, min_confidence=0.1, min_margin=0.0))
    assert {c: a.name for c, a in loose.items()} == {0: "A", 1: "B"}
    assert all(a.margin == pytest.approx(0.07) for a in loose.values())
    # a clear dialogue keeps its names: margin = what the swap loses
    clear = [UtteranceFaces(0, "A", {0: 0.7, 1: 0.02}), UtteranceFaces(1, "B", {0: 0.05, 1: 0.6})]
    got = assign_names(clear, cfg)
    assert {c: a.name for c, a in got.items()} == {0: "A", 1: "B"}
    assert got[0].margin == pytest.approx(0.7 + 0.6 - 0.02 - 0.05)
    assert assignment_margin(np.array([[0.9]]), 0, 0) == float("inf"), "no other naming exists"


def test_utterances_from_maps_round_trip():
    utts, truth = _dialogue(seed=2)
    on_screen = {u.utterance: list(u.evidence) for u in utts}
    evidence = {(u.utterance, c): ev for u in utts for c, ev in u.evidence.items() if ev > 0}
    speakers = {u.utterance: u.speaker for u in utts}
    rebuilt = utterances_from_maps(on_screen, evidence, speakers)
    assert rebuilt == utts
    assert {c: a.name for c, a in assign_names(rebuilt).items()} == truth


def test_reference_override_precedence():
    utts, truth = _dialogue(seed=1)
    rng = np.random.default_rng(9)
    faces = {c: unit(rng.normal(size=128)) for c in range(6)}
    # references: cluster 0's face is "Phoebe" (overrides its co-occurrence name Rachel); the
    # distractor cluster 4 gets a name by reference only; "Ross" has a photo that matches nothing
    refs = {
        "Phoebe": unit(faces[0] + 0.02 * rng.normal(size=128))[None],
        "Gunther": unit(faces[4] + 0.02 * rng.normal(size=128))[None],
        "Ross": unit(rng.normal(size=128))[None],
    }
    emb = {c: v[None] for c, v in faces.items()}
    got = assign_names(utts, references=refs, cluster_embeddings=emb, reference_threshold=0.42)
    assert got[0].name == "Phoebe" and got[0].source == "reference" and 0 < got[0].confidence <= 1
    assert got[4].name == "Gunther" and got[4].source == "reference"
    assert got[1].name == "Ross" and got[1].source == "cooccurrence"  # unmatched reference name still usable
    assert {c: got[c].name for c in (2, 3)} == {2: truth[2], 3: truth[3]}
    assert "Rachel" not in {a.name for a in got.values()} or got[0].name != "Rachel"
    with pytest.raises(ConfigError, match="reference_threshold"):
        assign_names(utts, references=refs, cluster_embeddings=emb)


# ------------------------------------------------------------------------------ embedders


def test_new_embedders_registered():
    assert {"arcface", "inception_resnet_v1", "dlib_resnet"} <= set(list_embedders())


def test_inception_resnet_v1_refuses_without_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(FileNotFoundError, match=r"20180402-114759-vggface2\.pt.*releases/download"):
        create_embedder("inception_resnet_v1")
    with pytest.raises(FileNotFoundError, match="20180408-102900-casia-webface.pt"):
        create_embedder("inception_resnet_v1", pretrained="casia-webface")
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        create_embedder("inception_resnet_v1", weights=tmp_path / "nope.pt")
    with pytest.raises(ConfigError, match="pretrained"):
        create_embedder("inception_resnet_v1", pretrained="imagenet")


@pytest.fixture(scope="module")
def random_inception():
    import torch

    torch.manual_seed(0)
    return create_embedder("inception_resnet_v1", random_init=True)


def test_inception_resnet_v1_random_init_embeds_unit_vectors(random_inception, caplog):
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, size=(200, 180, 3), dtype=np.uint8) for _ in range(3)]
    boxes = np.array([[20, 20, 150, 190], [0, 0, 180, 200], [40, 30, 120, 140]], np.float32)
    lms = np.full((3, 5, 2), np.nan, np.float32)
    out = random_inception.embed(imgs, boxes, lms)
    assert out.shape == (3, 512) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert random_inception.crops(imgs, boxes, None).shape == (3, 160, 160, 3)
    x = random_inception.preprocess(np.full((1, 160, 160, 3), 255, np.uint8))
    assert x.shape == (1, 3, 160, 160) and x.max() == pytest.approx(127.5 / 128)
    with caplog.at_level(logging.WARNING):
        create_embedder("inception_resnet_v1", random_init=True)
    assert "RANDOM weights" in caplog.text


def test_inception_resnet_v1_loads_a_state_dict_file(random_inception, tmp_path):
    import torch

    state = {k: v.clone() for k, v in random_inception._net.state_dict().items()}
    state["logits.weight"] = torch.zeros(8631, 512)  # facenet files carry the classifier: dropped
    state["logits.bias"] = torch.zeros(8631)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    loaded = create_embedder("inception_resnet_v1", weights=path)
    img = [np.random.default_rng(1).integers(0, 255, size=(160, 160, 3), dtype=np.uint8)]
    np.testing.assert_allclose(loaded.embed(img), random_inception.embed(img), atol=1e-5)
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not an InceptionResnetV1 state_dict"):
        create_embedder("inception_resnet_v1", weights=tmp_path / "bad.pt")


def _tiny_arcface(path, batch=1, dim=512, seed=0, sub_mul=False):
    """ONNX graph (batch, 3, 112, 112) -> GlobalAveragePool -> Flatten -> MatMul W (3, dim)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(seed).normal(size=(3, dim)).astype(np.float32)
    nodes = []
    src = "data"
    if sub_mul:  # mxnet-style graph that normalises inside
        nodes += [helper.make_node("Sub", ["data", "mean"], ["s"], name="_minus0"),
                  helper.make_node("Mul", ["s", "scale"], ["m"], name="_mul0")]
        src = "m"
    nodes += [
        helper.make_node("GlobalAveragePool", [src], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flat", axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["fc1"], name="fc"),
    ]
    inits = [numpy_helper.from_array(w, "W")]
    if sub_mul:
        inits += [
            numpy_helper.from_array(np.float32([127.5]), "mean"),
            numpy_helper.from_array(np.float32([1 / 127.5]), "scale"),
        ]
    b = batch if batch else "N"
    graph = helper.make_graph(
        nodes, "tiny_arcface",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [b, 3, 112, 112])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [b, dim])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return w


@pytest.mark.parametrize("batch", [1, 0])  # fixed batch of 1, dynamic batch
def test_arcface_tiny_onnx_load_run_normalise(tmp_path, batch):
    pack = tmp_path / "buffalo_tiny"
    pack.mkdir()
    (pack / "det_10g.onnx").write_bytes(b"not read")  # a detector in the same pack is skipped
    w = _tiny_arcface(pack / "w600k_r50.onnx", batch=batch)
    emb = create_embedder("arcface", model=str(pack))
    assert emb.model_file.name == "w600k_r50.onnx" and (emb.input_mean, emb.input_std) == (127.5, 127.5)
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, size=(240, 200, 3), dtype=np.uint8) for _ in range(3)]
    boxes = np.array([[40, 30, 160, 190], [10, 10, 190, 230], [60, 50, 140, 150]], np.float32)
    lms = np.stack([
        np.array([[75, 95], [125, 95], [100, 125], [80, 150], [120, 150]], np.float32),
        np.full((5, 2), np.nan, np.float32),  # -> landmarks guessed from the box
        np.array([[85, 90], [115, 92], [100, 110], [88, 128], [112, 129]], np.float32),
    ])
    out = emb.embed(imgs, boxes, lms)
    assert out.shape == (3, 512) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    crops = emb.crops(imgs, boxes, lms)
    assert crops.shape == (3, 112, 112, 3)
    expected = ((crops.astype(np.float64) - 127.5) / 127.5).mean(axis=(1, 2)) @ w  # RGB order, no swap
    np.testing.assert_allclose(out, unit(expected), atol=1e-4)


def test_arcface_alignment_maps_landmarks_onto_template():
    from stage1_face_extraction.identity.arcface import ARCFACE_TEMPLATE, arcface_matrix

    rng = np.random.default_rng(2)
    ang, s, t = 0.3, 1.7, np.array([40.0, 25.0])
    rot = s * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    lm = ARCFACE_TEMPLATE @ rot.T + t  # the template seen rotated, scaled and shifted
    m = arcface_matrix(lm + 0.0 * rng.normal(size=lm.shape), np.array([0, 0, 300, 300]))
    np.testing.assert_allclose(lm @ m[:, :2].T + m[:, 2], ARCFACE_TEMPLATE, atol=1e-6)


def test_arcface_mxnet_style_graph_gets_raw_pixels(tmp_path):
    _tiny_arcface(tmp_path / "r100.onnx", sub_mul=True, dim=128)
    emb = create_embedder("arcface", model=tmp_path / "r100.onnx")
    assert (emb.input_mean, emb.input_std) == (0.0, 1.0) and emb.dim == 128
    assert emb.embed([np.zeros((112, 112, 3), np.uint8)] * 2).shape == (2, 128)
    assert create_embedder("arcface", model=tmp_path / "r100.onnx", input_mean=127.5, input_std=128).input_std == 128


def test_arcface_missing_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ArcFace model not found: .*nope.*buffalo_l\.zip.*insightface"):
        create_embedder("arcface", model=str(tmp_path / "nope"))
    (tmp_path / "det_10g.onnx").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match=r"no ArcFace recognition \.onnx .*det_10g\.onnx.*buffalo_l"):
        create_embedder("arcface", model=str(tmp_path))
    with pytest.raises(ConfigError, match="unknown config key"):
        create_embedder("arcface", weights="x")


def test_assign_names_likely_names_only_with_a_margin():
    """A pair too weak to name (margin under min_margin) comes back as 'likely' when its margin
    reaches likely_margin; never with no agreeing evidence, never when likely_margin is None."""
    # cluster 0 speaks in both names' lines (a talking-over listener), cluster 1 never: 0 -> B
    # wins by 0.3 (forbid it: 0 -> A 0.5 + 1 -> B 0.0 = 0.5 vs 0.8)
    utts = [UtteranceFaces(0, "A", {0: 0.5, 1: 0.0}), UtteranceFaces(1, "B", {0: 0.8, 1: 0.0})]
    cfg = NamingConfig(min_support=0.1, min_confidence=0.1, min_margin=0.5, likely_margin=0.2)
    assert assign_names(utts, cfg) == {}, "likely names only on request"
    got = assign_names(utts, cfg, likely=True)
    assert list(got) == [0] and got[0].name == "B" and got[0].source == "likely"
    assert got[0].margin == pytest.approx(0.3)
    assert 1 not in got, "support 0: not even likely"
    assert assign_names(utts, NamingConfig(min_support=0.1, min_confidence=0.1, min_margin=0.5,
                                           likely_margin=0.35), likely=True) == {}
    assert assign_names(utts, NamingConfig(min_support=0.1, min_confidence=0.1, min_margin=0.5, likely_margin=None),
                        likely=True) == {}
    with pytest.raises(ConfigError, match="likely_margin"):
        NamingConfig(likely_margin=-0.1)
