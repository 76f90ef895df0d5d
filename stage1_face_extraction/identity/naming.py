"""Name identity clusters from the transcript's Speaker column.

``assign_names(utterances) -> {cluster: NameAssignment}``.

Input, per utterance: the speaker's name (MELD's ``Speaker``; None = unknown) and, for every
identity cluster on screen during it, its speaking evidence (e.g. the best active-speaker score of
that cluster's tracks in the utterance, in [0, 1]; 0 = on screen but silent).

Co-occurrence: ``C[cluster, name] = sum of evidence(utterance, cluster)`` over the utterances whose
speaker is ``name`` in which the cluster is on screen. The dialogue-level identity step
(``group.identify_group``) first turns each utterance's evidence into shares of that line
(:func:`shares_per_utterance`, with a virtual off-screen speaker), so that a listener talking over
the speaker takes only part of the line. The names are then assigned one-to-one by the
Hungarian method (``scipy.optimize.linear_sum_assignment`` on ``-C``, i.e. maximum total agreeing
evidence). An assigned pair is kept only when

* ``support = C[cluster, name] >= min_support`` (enough agreeing evidence: a cluster that is on
  screen a lot but never speaks has ~0 and stays unnamed), and
* ``confidence = C[cluster, name] / sum_n C[cluster, n] >= min_confidence`` (the share of the
  cluster's speaking evidence that agrees with the name), and
* ``margin >= min_margin``: forbidding this pair costs the best assignment at least that much
  agreement (:func:`assignment_margin`); when two people both speak during the same lines, both
  namings explain them about equally and neither name is given.

An assigned pair that misses a threshold but has some agreeing evidence and ``margin >=
likely_margin`` is a *likely* name (``assign_names(..., likely=True)``, ``source="likely"``): not a
name, only "probably not anyone else": when a person talks over someone else's line, their
evidence in that line costs them the margin a name needs, yet they still agree best with their own
lines; as a likely name it keeps them from being chosen for the other person's lines.

Reference faces take precedence: when ``references`` (``{name: (K, D) unit embeddings}``) and
``cluster_embeddings`` (``{cluster: (k, D)}``, e.g. its tracks' embeddings or its centroid) are
given, every cluster whose mean embedding is within ``reference_threshold`` (the embedder's
``distance_threshold``) of a name's nearest reference photo gets that name
(:func:`~stage1_face_extraction.identity.reference.match_tracks`; confidence ``1 - d / t``,
``source='reference'``), several clusters may share it (one person split in two clusters). Those
clusters AND those names are then taken out of the co-occurrence assignment, which names the
rest. A name with reference photos that matched no cluster still takes part in the co-occurrence
assignment.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..common.config import ConfigError

__all__ = ["UtteranceFaces", "NamingConfig", "NameAssignment", "assign_names", "cooccurrence", "shares_per_utterance",
           "utterances_from_maps"]


@dataclass
class UtteranceFaces:
    """One utterance: ``speaker`` (None = unknown) and ``{cluster: speaking evidence}`` of the clusters on screen."""

    utterance: Hashable
    speaker: str | None
    evidence: dict[int, float] = field(default_factory=dict)


@dataclass
class NamingConfig:
    """Thresholds of :func:`assign_names` (module docstring)."""

    min_support: float = 0.3
    min_confidence: float = 0.4
    offscreen_prior: float = 0.2  # speaking evidence of a virtual off-screen speaker (shares_per_utterance)
    min_margin: float = 0.25  # assignment_margin a co-occurrence name needs
    likely_margin: float | None = 0.1  # assignment_margin that makes an unnamed cluster "likely" its name (None: off)

    def __post_init__(self) -> None:
        if self.min_support < 0:
            raise ConfigError(f"min_support must be >= 0, got {self.min_support}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(f"min_confidence must be in [0, 1], got {self.min_confidence}")
        if self.offscreen_prior < 0:
            raise ConfigError(f"offscreen_prior must be >= 0, got {self.offscreen_prior}")
        if self.min_margin < 0:
            raise ConfigError(f"min_margin must be >= 0, got {self.min_margin}")
        if self.likely_margin is not None and self.likely_margin < 0:
            raise ConfigError(f"likely_margin must be >= 0 or null, got {self.likely_margin}")


def shares_per_utterance(utterances: Sequence[UtteranceFaces], offscreen_prior: float) -> list[UtteranceFaces]:
    """Each utterance's evidence turned into shares of ONE line: ``ev_c / (sum_c' ev_c' + offscreen_prior)``.

    Every line then weighs the same in the co-occurrence, whoever is on screen, and the clusters
    on screen split it by how much each speaks, so a listener who also moves the mouth takes part
    of the line instead of all of it; ``offscreen_prior`` is a virtual off-screen speaker's
    evidence, so a line during which nobody on screen speaks gives its clusters little.
    """
    out = []
    for u in utterances:
        ev = {c: max(float(v), 0.0) if np.isfinite(v) else 0.0 for c, v in u.evidence.items()}
        total = sum(ev.values()) + offscreen_prior
        out.append(UtteranceFaces(u.utterance, u.speaker, {c: v / total if total > 0 else 0.0 for c, v in ev.items()}))
    return out


class NameAssignment(NamedTuple):
    """``name``, ``confidence`` in [0, 1], ``support`` (agreeing evidence; NaN for references), ``source``,
    ``margin`` (:func:`assignment_margin`; NaN for references)."""

    name: str
    confidence: float
    support: float
    source: str  # "cooccurrence" | "reference" | "likely" (not a name: see assign_names(likely=True))
    margin: float = float("nan")


def utterances_from_maps(
    on_screen: Mapping[Hashable, Iterable[int]],
    evidence: Mapping[tuple[Hashable, int], float],
    speakers: Mapping[Hashable, str | None],
) -> list[UtteranceFaces]:
    """Build :class:`UtteranceFaces` from three maps: clusters on screen per utterance, speaking evidence
    per ``(utterance, cluster)`` (missing: 0; a key implies the cluster is on screen) and the speaker
    per utterance. Utterances are those of any map, in first-seen order."""
    order: dict[Hashable, None] = {}
    for u in list(speakers) + list(on_screen) + [u for u, _ in evidence]:
        order.setdefault(u, None)
    out = [UtteranceFaces(u, speakers.get(u), {int(c): 0.0 for c in on_screen.get(u, ())}) for u in order]
    by_id = {x.utterance: x for x in out}
    for (u, c), ev in evidence.items():
        by_id[u].evidence[int(c)] = float(ev)
    return out


def cooccurrence(utterances: Sequence[UtteranceFaces]) -> tuple[list[int], list[str], np.ndarray]:
    """(clusters, names, C) with ``C[i, j]`` = evidence of clusters[i] summed over names[j]'s utterances.

    Clusters: every cluster on screen in some utterance; names: every non-empty speaker; both sorted.
    Negative evidence is clipped to 0.
    """
    clusters = sorted({int(c) for u in utterances for c in u.evidence})
    names = sorted({u.speaker for u in utterances if u.speaker})
    ci = {c: i for i, c in enumerate(clusters)}
    ni = {n: j for j, n in enumerate(names)}
    C = np.zeros((len(clusters), len(names)), np.float64)
    for u in utterances:
        if not u.speaker:
            continue
        for c, ev in u.evidence.items():
            ev = float(ev)
            if np.isfinite(ev) and ev > 0:
                C[ci[int(c)], ni[u.speaker]] += ev
    return clusters, names, C


def assign_names(
    utterances: Sequence[UtteranceFaces],
    config: NamingConfig | None = None,
    *,
    references: Mapping[str, np.ndarray] | None = None,
    cluster_embeddings: Mapping[int, np.ndarray] | None = None,
    reference_threshold: float | None = None,
    likely: bool = False,
) -> dict[int, NameAssignment]:
    """``{cluster: NameAssignment}`` for the clusters that get a name (module docstring); others are absent.

    ``likely``: also return, with ``source="likely"``, the assigned pairs that miss a threshold but
    have some agreeing evidence (support > 0) and ``margin >= config.likely_margin`` (never when
    that is None): too weak to NAME the cluster, strong enough to say it is probably not anyone
    else (``selection.py`` never picks such a cluster as another speaker's face).
    """
    from scipy.optimize import linear_sum_assignment

    cfg = config or NamingConfig()
    out: dict[int, NameAssignment] = {}
    if references and cluster_embeddings:
        if reference_threshold is None:
            raise ConfigError("reference_threshold (the embedder's distance_threshold) is needed with references")
        from .reference import match_tracks

        for c, (name, score) in match_tracks(dict(cluster_embeddings), dict(references), reference_threshold).items():
            out[int(c)] = NameAssignment(name, float(score), float("nan"), "reference")
    clusters, names, C = cooccurrence(utterances)
    taken_names = {a.name for a in out.values()}
    rows = [i for i, c in enumerate(clusters) if c not in out]
    cols = [j for j, n in enumerate(names) if n not in taken_names]
    if not rows or not cols:
        return out
    sub = C[np.ix_(rows, cols)]
    r, k = linear_sum_assignment(-sub)
    best = float(sub[r, k].sum())
    for a, b in zip(r, k):
        i, j = rows[a], cols[b]
        support = float(C[i, j])
        total = float(C[i].sum())
        conf = support / total if total > 0 else 0.0
        margin = assignment_margin(sub, a, b, best)
        if support >= cfg.min_support and support > 0 and conf >= cfg.min_confidence and margin >= cfg.min_margin:
            out[clusters[i]] = NameAssignment(names[j], conf, support, "cooccurrence", margin)
        elif likely and cfg.likely_margin is not None and support > 0 and margin >= cfg.likely_margin:
            out[clusters[i]] = NameAssignment(names[j], conf, support, "likely", margin)
    return out


def assignment_margin(C: np.ndarray, i: int, j: int, best: float | None = None) -> float:
    """How much total agreement the optimal one-to-one assignment of ``C`` loses when the pair
    ``(i, j)`` is forbidden (``inf`` when no other assignment exists): a small margin means another
    naming explains the lines almost as well (e.g. two people who both speak during the same lines),
    and the name is better left out than guessed."""
    from scipy.optimize import linear_sum_assignment

    if best is None:
        r, k = linear_sum_assignment(-C)
        best = float(C[r, k].sum())
    forbidden = C.astype(np.float64).copy()
    big = 1e6 * (1.0 + float(np.abs(C).sum()))
    forbidden[i, j] = -big
    r, k = linear_sum_assignment(-forbidden)
    alt = float(forbidden[r, k].sum())
    return float("inf") if alt <= -big / 2 else best - alt
