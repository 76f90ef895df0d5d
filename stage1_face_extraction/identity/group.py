"""Who is who across a group of clips (a dialogue, an episode or a split): cluster, then name.

Input: one :class:`TrackFace` per face track of every clip of the group (the track's unit
embedding: the re-normalised mean of a few good frames, its speaking evidence, its frame range) and
the transcript's speaker per utterance. Output: a :class:`GroupIdentity` giving every track its
cluster and, when the cluster was named, the name and a confidence in [0, 1].

Steps:

1. **cluster** all tracks of the group (:func:`~.cluster.cluster_tracks`; ``cluster.threshold``
   null = the embedder's ``distance_threshold``), with cannot-link between tracks on screen in the
   same frame of the same clip (two faces at once are two people);
2. **name** the clusters (:func:`~.naming.assign_names`): per utterance, a cluster's evidence is
   the best speaking evidence of its tracks in that clip, as a share of the line
   (:func:`~.naming.shares_per_utterance`); co-occurrence with the ``Speaker`` column
   and the Hungarian method (groups of two clips or more), overridden by reference photos
   (``references``) when given (the only naming for a group of one clip). A cluster whose best
   naming is too ambiguous for a name but clear by ``naming.likely_margin`` gets a *likely* name
   (``GroupIdentity.likely``): selection never picks it as another speaker's face.

``GroupIdentity.report()`` is the per-group JSON record the ``extract_faces`` stage writes to
``identities.jsonl`` (schema in ``stage1_face_extraction/SCHEMA.md``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..common.config import ConfigError
from .base import l2_normalize
from .cluster import ClusterConfig, cluster_centroids, co_visible_pairs
from .naming import NameAssignment, NamingConfig, assign_names, shares_per_utterance, utterances_from_maps

log = logging.getLogger(__name__)

__all__ = ["IdentityConfig", "TrackFace", "GroupIdentity", "identify_group", "group_key", "SCOPES"]

SCOPES = ("none", "clip", "dialogue", "episode", "split")


def _default_embedder() -> dict[str, Any]:
    return {"name": "dlib_resnet"}


@dataclass
class IdentityConfig:
    """``stage1.identity`` section.

    ``scope``: which clips are clustered together: ``dialogue`` (MELD's Dialogue_ID, the default),
    ``episode`` (Season + Episode), ``split`` (all clips of a split), ``clip`` (each clip alone:
    only reference photos can name it) or ``none`` (no identity step: selection from the speaking
    score alone). ``embedder``: ``{name: ..., <its keys>}`` (registry
    :func:`~stage1_face_extraction.identity.create_embedder`). ``frames_per_track``: faces embedded
    per track (the best-detected, spread over the track). ``references``: a folder of ``NAME/``
    sub-folders of photos, or null. ``sheets``: identity pictures (one face per cluster, labelled
    with its name) written for the first N groups of each split.
    """

    scope: str = "dialogue"
    embedder: dict[str, Any] = field(default_factory=_default_embedder)
    frames_per_track: int = 1
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    naming: NamingConfig = field(default_factory=NamingConfig)
    references: str | None = None
    sheets: int = 8

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ConfigError(f"stage1.identity.scope must be one of {SCOPES}, got {self.scope!r}")
        if not isinstance(self.embedder, dict) or "name" not in self.embedder:
            raise ConfigError(f"stage1.identity.embedder must be a mapping with a 'name' key, got {self.embedder!r}")
        if self.frames_per_track < 1:
            raise ConfigError(f"stage1.identity.frames_per_track must be >= 1, got {self.frames_per_track}")

    @property
    def enabled(self) -> bool:
        return self.scope != "none"

    def create_embedder(self):
        from .base import create_embedder

        cfg = dict(self.embedder)
        return create_embedder(cfg.pop("name"), **cfg)


def group_key(scope: str, split: str, dialogue_id: int, season: int, episode: int, utt_id: str) -> str:
    """The group a clip belongs to under ``scope`` (``train/dia3``, ``train/s1e4``, ``train``, ``train/dia3_utt0``)."""
    if scope == "dialogue":
        return f"{split}/dia{int(dialogue_id)}"
    if scope == "episode":
        return f"{split}/s{int(season)}e{int(episode)}"
    if scope == "split":
        return split
    return f"{split}/{utt_id}"


def _num(v: float | None) -> float | None:
    """Rounded for JSON; None for missing, NaN (references) and inf (no alternative naming)."""
    return None if v is None or not np.isfinite(v) else round(float(v), 4)


@dataclass
class TrackFace:
    """One track's identity input (made by the pipeline's analyse step)."""

    utt_id: str
    track_id: int
    embedding: np.ndarray  # (D,) float32, unit norm
    evidence: float  # speaking evidence of the track in its clip, [0, 1]
    start: int  # first / last source frame (inclusive) in its clip
    end: int
    thumb: np.ndarray | None = None  # (h, w, 3) uint8 RGB aligned face, for the identity sheet


@dataclass
class GroupIdentity:
    """Clusters and names of one group."""

    group: str
    faces: list[TrackFace]
    labels: np.ndarray  # (N,) cluster per face, -1 = none
    names: dict[int, NameAssignment]
    speakers: dict[str, str | None]  # utt_id -> transcript speaker
    likely: dict[int, NameAssignment] = field(default_factory=dict)  # unnamed clusters' probable names

    def of(self, utt_id: str) -> dict[int, tuple[str | None, float | None, int, str | None]]:
        """``{track_id: (name or None, confidence or None, cluster, likely name or None)}`` for the
        tracks of clip ``utt_id``; the likely name (``naming.likely_margin``) only ever excludes."""
        out = {}
        for f, lab in zip(self.faces, self.labels.tolist()):
            if f.utt_id == utt_id:
                a = self.names.get(lab)
                w = self.likely.get(lab)
                out[f.track_id] = (a.name if a else None, round(a.confidence, 4) if a else None, int(lab),
                                   w.name if w else None)
        return out

    def report(self) -> dict[str, Any]:
        """JSON-able summary: clusters with their names, confidence, support and tracks."""
        clusters = []
        for lab in sorted(set(self.labels.tolist()) - {-1}):
            members = [f for f, v in zip(self.faces, self.labels.tolist()) if v == lab]
            a = self.names.get(lab)
            w = self.likely.get(lab)
            clusters.append({
                "cluster": int(lab),
                "name": a.name if a else None,
                "likely": w.name if w else None,
                "confidence": round(a.confidence, 4) if a else None,
                "support": _num(a.support if a else None),
                "margin": _num(a.margin if a else None),
                "source": a.source if a else None,
                "tracks": len(members),
                "utterances": sorted({f.utt_id for f in members}),
                "speaking": round(float(max(f.evidence for f in members)), 4),
            })
        named = {a.name for a in self.names.values()}
        lines: dict[str, int] = {}
        for s in self.speakers.values():
            if s:
                lines[s] = lines.get(s, 0) + 1
        return {
            "group": self.group,
            "utterances": len(self.speakers),
            "tracks": len(self.faces),
            "clusters": clusters,
            "speakers": dict(sorted(lines.items())),
            "unmatched_speakers": sorted(set(lines) - named),
        }

    def sheet_tiles(self) -> tuple[list[np.ndarray], list[str]]:
        """One face per cluster (from its most speaking track) and its label ``name 0.87`` / ``? #k``."""
        tiles, labels = [], []
        for lab in sorted(set(self.labels.tolist()) - {-1}):
            members = [f for f, v in zip(self.faces, self.labels.tolist()) if v == lab and f.thumb is not None]
            if not members:
                continue
            best = max(members, key=lambda f: f.evidence)
            a = self.names.get(lab)
            tiles.append(best.thumb)
            labels.append(f"{a.name} {a.confidence:.2f}" if a else f"? #{lab}")
        return tiles, labels


def identify_group(
    group: str,
    faces: Sequence[TrackFace],
    speakers: Mapping[str, str | None],
    cfg: IdentityConfig,
    threshold: float,
    references: Mapping[str, np.ndarray] | None = None,
) -> GroupIdentity:
    """Cluster and name the tracks of one group (module docstring).

    faces: every track of the group's clips that has an embedding; speakers: ``{utt_id: name}`` for
    every clip of the group (also those without faces); threshold: the embedder's
    ``distance_threshold`` (used when ``cfg.cluster.threshold`` is null, and for references).
    """
    faces = list(faces)
    speakers = dict(speakers)
    if not faces:
        return GroupIdentity(group, [], np.zeros(0, np.int64), {}, speakers)
    emb = l2_normalize(np.stack([f.embedding for f in faces]))  # (N, D)
    frames = [[(f.utt_id, k) for k in range(f.start, f.end + 1)] for f in faces]
    labels = cfg.cluster.cluster(emb, cannot_link=co_visible_pairs(frames), default_threshold=threshold)
    on_screen: dict[str, set[int]] = {}
    evidence: dict[tuple[str, int], float] = {}
    for f, lab in zip(faces, labels.tolist()):
        if lab < 0:
            continue
        on_screen.setdefault(f.utt_id, set()).add(lab)
        key = (f.utt_id, lab)
        evidence[key] = max(evidence.get(key, 0.0), float(f.evidence))
    # Co-occurrence needs a group of clips: over one clip it would only restate the speaking scores
    # (the selection already weighs them, with stricter thresholds); one clip is named by references.
    utts = utterances_from_maps(on_screen, evidence, speakers) if len(speakers) > 1 else []
    utts = shares_per_utterance(utts, cfg.naming.offscreen_prior)
    centroids = cluster_centroids(emb, labels) if references else None
    found = assign_names(
        utts, cfg.naming, references=references, cluster_embeddings=centroids, reference_threshold=threshold,
        likely=True,
    )
    names = {c: a for c, a in found.items() if a.source != "likely"}
    likely = {c: a for c, a in found.items() if a.source == "likely"}
    log.debug("%s: %d tracks, %d clusters, named %s", group, len(faces), len(set(labels.tolist()) - {-1}),
              {k: v.name for k, v in names.items()})
    return GroupIdentity(group, faces, labels, names, speakers, likely)
