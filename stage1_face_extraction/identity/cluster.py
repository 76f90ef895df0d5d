"""Cluster face tracks into identities: ``cluster_tracks(embeddings, threshold) -> labels``.

Input: one L2-normalised embedding per track (e.g. the re-normalised mean of a few good frames),
``threshold`` in the embedders' unit: EUCLIDEAN distance between unit vectors
(:attr:`FaceEmbedder.distance_threshold`, same person below it).

Methods (scikit-learn):

* ``agglomerative`` (default): ``AgglomerativeClustering(n_clusters=None, distance_threshold=t,
  linkage='average')`` on a precomputed distance matrix; clusters stop merging when the average
  distance between their members reaches ``t``. ``metric='cosine'`` uses cosine distances
  ``1 - cos = d**2 / 2`` and converts ``t`` the same way, so ``threshold`` keeps its meaning.
* ``hdbscan``: ``HDBSCAN(min_cluster_size=max(2, m), min_samples=1, cluster_selection_epsilon=t,
  allow_single_cluster=True)`` on the same matrix; density-based, so it can leave tracks as noise.
  A threshold guard follows: a track whose nearest fellow member is >= ``t`` away becomes noise
  (HDBSCAN cannot make one-track clusters and otherwise attaches a lone person to some cluster).

Labels are ``0..K-1`` in order of first appearance. Clusters with fewer than ``min_cluster_size``
tracks (and HDBSCAN noise when ``min_cluster_size > 1``) get label ``-1`` ("no identity"); with
``min_cluster_size=1`` every track gets a label (HDBSCAN noise tracks become singletons).

Cannot-link (two tracks visible in the same frame are two people), two layers:

1. the pair's distance in the precomputed matrix is set to a value so large (``BIG``, more than
   ``t * N**2``) that no average- or complete-linkage merge can join clusters holding both;
2. a post-split pass guarantees the constraint for every method (single linkage, HDBSCAN): a
   cluster that still holds a co-visible pair is split greedily: its tracks, those in conflicts
   first (most conflicts first, then by closeness to the cluster centroid), each join the
   nearest-centroid sub-group they do not conflict with, or open a new one; so the conflicting
   tracks seed the sub-groups and the others follow the one they look like.

``co_visible_pairs(track_frames)`` builds the pairs from each track's frame keys.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from ..common.config import ConfigError

__all__ = ["ClusterConfig", "cluster_tracks", "co_visible_pairs", "cluster_centroids", "METHODS"]

METHODS = ("agglomerative", "hdbscan")
METRICS = ("euclidean", "cosine")
LINKAGES = ("average", "complete", "single")


@dataclass
class ClusterConfig:
    """Parameters of :func:`cluster_tracks` (``threshold=None``: the embedder's ``distance_threshold``)."""

    threshold: float | None = None
    method: str = "agglomerative"
    metric: str = "euclidean"
    linkage: str = "average"
    min_cluster_size: int = 1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"cluster method must be one of {METHODS}, got {self.method!r}")
        if self.metric not in METRICS:
            raise ConfigError(f"cluster metric must be one of {METRICS}, got {self.metric!r}")
        if self.linkage not in LINKAGES:
            raise ConfigError(f"cluster linkage must be one of {LINKAGES}, got {self.linkage!r}")
        if self.min_cluster_size < 1:
            raise ConfigError(f"min_cluster_size must be >= 1, got {self.min_cluster_size}")
        if self.threshold is not None and not self.threshold > 0:
            raise ConfigError(f"cluster threshold must be > 0, got {self.threshold}")

    def cluster(
        self,
        embeddings: np.ndarray,
        cannot_link: Iterable[tuple[int, int]] | None = None,
        default_threshold: float | None = None,
    ) -> np.ndarray:
        """:func:`cluster_tracks` with these parameters (``default_threshold`` when ``threshold`` is None)."""
        t = self.threshold if self.threshold is not None else default_threshold
        if t is None:
            raise ConfigError("no cluster threshold: set ClusterConfig.threshold or pass the embedder's")
        return cluster_tracks(embeddings, t, self.method, self.min_cluster_size, metric=self.metric,
                              linkage=self.linkage, cannot_link=cannot_link)


def co_visible_pairs(track_frames: Sequence[Iterable[Hashable]]) -> set[tuple[int, int]]:
    """Index pairs ``(i, j)``, i < j, of tracks sharing a frame key (e.g. ``(clip, frame_index)``)."""
    by_frame: dict[Hashable, list[int]] = {}
    for i, frames in enumerate(track_frames):
        for f in set(frames):
            by_frame.setdefault(f, []).append(i)
    pairs: set[tuple[int, int]] = set()
    for members in by_frame.values():
        pairs.update(combinations(sorted(members), 2))
    return pairs


def cluster_centroids(embeddings: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """``{label: unit mean embedding}`` of every cluster (label -1 left out)."""
    emb = np.asarray(embeddings, np.float64)
    out = {}
    for lab in sorted(set(int(v) for v in labels) - {-1}):
        m = emb[np.asarray(labels) == lab].mean(0)
        out[lab] = (m / max(np.linalg.norm(m), 1e-12)).astype(np.float32)
    return out


def _distances(emb: np.ndarray, metric: str) -> np.ndarray:
    g = np.clip(emb @ emb.T, -1.0, 1.0)
    d2 = np.maximum(2.0 - 2.0 * g, 0.0)
    d = d2 / 2.0 if metric == "cosine" else np.sqrt(d2)
    np.fill_diagonal(d, 0.0)
    return d


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Labels 0..K-1 by first appearance; -1 kept."""
    out = np.full(len(labels), -1, np.int64)
    seen: dict[int, int] = {}
    for i, v in enumerate(labels):
        if v < 0:
            continue
        out[i] = seen.setdefault(int(v), len(seen))
    return out


def _split_conflicts(labels: np.ndarray, emb: np.ndarray, pairs: set[tuple[int, int]]) -> np.ndarray:
    labels = labels.copy()
    if not pairs:
        return labels
    conflicts: dict[int, set[int]] = {}
    for i, j in pairs:
        conflicts.setdefault(i, set()).add(j)
        conflicts.setdefault(j, set()).add(i)
    next_label = int(labels.max()) + 1 if len(labels) else 0
    for lab in sorted(set(int(v) for v in labels) - {-1}):
        members = np.nonzero(labels == lab)[0]
        if not any(j in conflicts.get(int(i), ()) for i in members for j in members):
            continue
        centroid = emb[members].mean(0)
        mset = set(members.tolist())
        n_conf = np.array([len(conflicts.get(int(i), set()) & mset) for i in members])
        # conflicting tracks first (most conflicts first) so they seed the groups, then the rest
        order = members[np.lexsort((-(emb[members] @ centroid), -n_conf))]
        groups: list[list[int]] = []
        for i in order:
            best, best_sim = None, -np.inf
            for g in groups:
                if any(j in conflicts.get(int(i), ()) for j in g):
                    continue
                c = emb[g].mean(0)
                sim = float(emb[i] @ c / max(np.linalg.norm(c), 1e-12))
                if sim > best_sim:
                    best, best_sim = g, sim
            if best is None:
                groups.append([int(i)])
            else:
                best.append(int(i))
        for g in groups[1:]:
            labels[g] = next_label
            next_label += 1
    return labels


def cluster_tracks(
    embeddings: np.ndarray,
    threshold: float,
    method: str = "agglomerative",
    min_cluster_size: int = 1,
    *,
    metric: str = "euclidean",
    linkage: str = "average",
    cannot_link: Iterable[tuple[int, int]] | None = None,
) -> np.ndarray:
    """Identity label per track, (N,) int64 (module docstring: methods, -1, cannot-link).

    embeddings: (N, D) L2-normalised (re-normalised here for safety); threshold: euclidean distance
    on unit vectors below which two tracks are the same person; cannot_link: index pairs of tracks
    that must end in different clusters.
    """
    ClusterConfig(threshold, method, metric, linkage, min_cluster_size)  # validates
    emb = np.asarray(embeddings, np.float64)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got {emb.shape}")
    n = len(emb)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    pairs: set[tuple[int, int]] = set()
    for i, j in cannot_link or ():
        i, j = int(i), int(j)
        if not (0 <= i < n and 0 <= j < n):
            raise ValueError(f"cannot_link pair ({i}, {j}) out of range for {n} tracks")
        if i != j:
            pairs.add((min(i, j), max(i, j)))
    if n == 0:
        return np.zeros(0, np.int64)
    if n == 1:
        labels = np.zeros(1, np.int64)
    else:
        t = threshold**2 / 2.0 if metric == "cosine" else float(threshold)
        d = _distances(emb, metric)
        if pairs:
            big = 10.0 * (t + 1.0) * n * n + 10.0
            for i, j in pairs:
                d[i, j] = d[j, i] = big
        if method == "agglomerative":
            from sklearn.cluster import AgglomerativeClustering

            labels = AgglomerativeClustering(
                n_clusters=None, distance_threshold=t, metric="precomputed", linkage=linkage
            ).fit_predict(d)
        else:
            from sklearn.cluster import HDBSCAN

            try:
                labels = HDBSCAN(
                    min_cluster_size=max(2, min_cluster_size), min_samples=1, metric="precomputed",
                    cluster_selection_epsilon=float(t), allow_single_cluster=True, copy=True,
                ).fit_predict(d)
            except TypeError:
                # scikit-learn 1.9's epsilon_search fails ("only 0-dimensional arrays ...") when a
                # selected cluster climbs up to the root: epsilon merges everything, i.e. one cluster
                labels = np.zeros(n, np.int64)
            labels = np.array(labels, np.int64)
            # threshold guard: HDBSCAN attaches a lone far-away track to a cluster (it cannot make a
            # cluster of one); a track farther than t from every other member becomes noise
            for lab in set(labels.tolist()) - {-1}:
                members = np.nonzero(labels == lab)[0]
                if len(members) > 1:
                    sub = d[np.ix_(members, members)] + np.eye(len(members)) * 1e18
                    labels[members[sub.min(axis=1) >= t]] = -1
            if min_cluster_size <= 1:  # noise -> singletons, so that every track has an identity
                noise = np.nonzero(labels < 0)[0]
                labels = labels.copy()
                labels[noise] = labels.max() + 1 + np.arange(len(noise))
        labels = np.asarray(labels, np.int64)
    labels = _split_conflicts(labels, emb, pairs)
    if min_cluster_size > 1:
        ids, counts = np.unique(labels[labels >= 0], return_counts=True)
        small = set(ids[counts < min_cluster_size].tolist())
        labels = np.array([-1 if v in small else v for v in labels], np.int64)
    return _relabel(labels)
