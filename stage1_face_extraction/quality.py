"""Score stage-1 manifests against the demo corpus ground truth (``truth.json``).

Metrics (the stage-1 targets: precision >= 0.98, recall >= 0.90, coverage >= 0.97):

* **precision**: selected crops whose box has IoU >= 0.5 with the true speaker's box in that frame,
  over all selected crops (a crop from a frame where the speaker is not visible counts as wrong);
* **recall**: matched crops over ``min(frames with the speaker visible, max_frames)``, summed over
  utterances whose speaker is visible;
* **coverage**: utterances with a visible speaker that get at least one crop, over all such
  utterances.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


def iou(a, b) -> float:
    """IoU of two [x1, y1, x2, y2] boxes."""
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class QualityReport:
    precision: float
    recall: float
    coverage: float
    crops: int
    correct: int
    utterances: int
    speaker_visible: int
    covered: int
    statuses: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # utterances with wrong crops or missed

    def as_dict(self) -> dict:
        return asdict(self)


def score_manifest(records: dict[str, dict], truth: dict, max_frames: int = 160, iou_min: float = 0.5) -> QualityReport:
    """``records``: truth clip key (``<split>/dia{D}_utt{U}``) -> manifest record; ``truth``: the
    parsed truth.json. Clips of the truth without a record count as not covered."""
    crops = correct = visible = covered = 0
    need = matched = 0
    statuses: dict[str, int] = {}
    failures: list[str] = []
    for key, clip in sorted(truth["clips"].items()):
        rec = records.get(key)
        status = rec["status"] if rec else "absent"
        statuses[status] = statuses.get(status, 0) + 1
        by_frame = {f["frame"]: f for f in clip["frames"]}
        n_vis = sum(any(face["speaker"] for face in f["faces"]) for f in clip["frames"])
        good = 0
        for f in (rec or {}).get("frames", []):
            true = [face["box"] for face in by_frame.get(f["frame"], {"faces": []})["faces"] if face["speaker"]]
            ok = bool(true) and iou(true[0], f["box"]) >= iou_min
            good += ok
        n_sel = len((rec or {}).get("frames", []))
        crops += n_sel
        correct += good
        if n_vis:
            visible += 1
            covered += n_sel > 0
            need += min(n_vis, max_frames)
            matched += good
        if good < n_sel or (n_vis and n_sel == 0):
            failures.append(
                f"{key} ({clip.get('shot_plan')}): {status}, {good}/{n_sel} crops right, "
                f"speaker visible in {n_vis} frames"
            )
    return QualityReport(
        precision=correct / crops if crops else 0.0,
        recall=matched / need if need else 0.0,
        coverage=covered / visible if visible else 0.0,
        crops=crops, correct=correct, utterances=len(truth["clips"]), speaker_visible=visible,
        covered=covered, statuses=statuses, failures=failures,
    )


def speaker_visible_ratio(truth: dict) -> float:
    """Share of truth clips in which the speaker is visible in at least one frame."""
    vis = [any(face["speaker"] for f in c["frames"] for face in f["faces"]) for c in truth["clips"].values()]
    return float(np.mean(vis)) if vis else 0.0


@dataclass
class IdentityQuality:
    """How well the identity step clustered and named the tracks (:func:`score_identities`)."""

    clusters: int  # clusters over all groups
    right: int  # clusters whose name (or absence of one) is right
    named: int  # clusters that got a name
    named_right: int  # ... and it is the right one
    nameable: int  # clusters whose person speaks on screen in the group (the transcript can name them)
    tracks: int  # tracks with a cluster and a true person
    pure_tracks: int  # tracks in a cluster whose majority person is theirs
    errors: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        """Share of clusters with the right name (None being right for a person who never speaks)."""
        return self.right / self.clusters if self.clusters else 0.0

    @property
    def naming_precision(self) -> float:
        return self.named_right / self.named if self.named else 0.0

    @property
    def purity(self) -> float:
        return self.pure_tracks / self.tracks if self.tracks else 0.0

    def as_dict(self) -> dict:
        return {
            **asdict(self),
            "accuracy": self.accuracy,
            "naming_precision": self.naming_precision,
            "purity": self.purity,
        }


def score_identities(
    records: dict[str, dict], identities: dict[str, dict], truth: dict, iou_min: float = 0.5
) -> IdentityQuality:
    """Score clusters and names against the truth.

    ``records``: truth clip key (``<split>/<utt_id>``) -> manifest record (tracks with ``cluster``,
    ``identity``, ``mid_frame``, ``mid_box``); ``identities``: ``{group: report}`` with groups named
    ``<split>/...`` (``identities.jsonl`` of every split); ``truth``: the parsed truth.json.
    A track's true person is the truth face at its middle frame (IoU >= ``iou_min``); a cluster's is
    the majority of its tracks'. Its right name is that person when they speak ON SCREEN in some
    clip of the group, else none (nothing can tie a name to a face that is never seen speaking:
    a person who speaks only off screen, or never).
    """
    members: dict[tuple[str, int], list[str]] = {}
    names: dict[tuple[str, int], str | None] = {}
    for group, rep in identities.items():
        split = group.split("/")[0]
        for c in rep["clusters"]:
            names[(group, c["cluster"])] = c["name"]
            for u in c["utterances"]:
                rec = records.get(f"{split}/{u}")
                clip = truth["clips"].get(f"{split}/{u}")
                if rec is None or clip is None:
                    continue
                for t in rec["tracks"]:
                    if t.get("cluster") != c["cluster"]:
                        continue
                    faces = clip["frames"][t["mid_frame"]]["faces"] if t["mid_frame"] < len(clip["frames"]) else []
                    best = max(faces, key=lambda f: iou(f["box"], t["mid_box"]), default=None)
                    if best is not None and iou(best["box"], t["mid_box"]) >= iou_min:
                        members.setdefault((group, c["cluster"]), []).append(best["name"])
    seen_speaking: dict[str, set[str]] = {}
    for group, rep in identities.items():
        split = group.split("/")[0]
        utts = {u for c in rep["clusters"] for u in c["utterances"]}
        seen_speaking[group] = {
            truth["clips"][f"{split}/{u}"]["speaker"] for u in utts
            if truth["clips"].get(f"{split}/{u}", {}).get("speaker_visible_frames")
        }
    q = IdentityQuality(0, 0, 0, 0, 0, 0, 0)
    for key, people in sorted(members.items()):
        group = key[0]
        speakers = seen_speaking[group]
        major = max(sorted(set(people)), key=people.count)
        right_name = major if major in speakers else None
        got = names[key]
        q.clusters += 1
        q.tracks += len(people)
        q.pure_tracks += people.count(major)
        q.nameable += right_name is not None
        q.named += got is not None
        q.named_right += got is not None and got == right_name
        if got == right_name:
            q.right += 1
        else:
            q.errors.append(f"{group} cluster {key[1]}: named {got!r}, is {major} ({len(people)} tracks)")
    return q


@dataclass
class SceneGroupReport:
    """Quality of one group of real-scene clips (:func:`score_scenes`)."""

    clips: int
    precision: float
    recall: float
    coverage: float
    crops: int
    correct: int
    speaker_visible: int
    covered: int
    listener_alone: int  # clips in which the speaker is never visible (nothing may be chosen)
    false_picks: int  # ... of which got crops anyway

    @property
    def false_pick_rate(self) -> float:
        return self.false_picks / self.listener_alone if self.listener_alone else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "false_pick_rate": self.false_pick_rate}


def scene_group(clip: dict) -> str:
    """``quiet`` (the speaker alone or with a quiet listener) or ``talking`` (a muted listener talks too)."""
    return "talking" if clip.get("listener_kind") == "talking" else "quiet"


def score_scenes(
    records: dict[str, dict], truth: dict, max_frames: int = 160, iou_min: float = 0.5
) -> dict[str, SceneGroupReport]:
    """Score a real-scene benchmark (``composer.compose_scenes``) per group.

    Groups: ``all``, ``quiet``, ``talking`` (:func:`scene_group`) and ``<shot_plan>/<listener_kind>``
    for every scene type. Precision, recall and coverage as :func:`score_manifest`; false picks:
    clips whose speaker is never on screen (listener alone) that got any crop.
    """
    groups: dict[str, list[str]] = {"all": [], "quiet": [], "talking": []}
    for key, clip in sorted(truth["clips"].items()):
        groups["all"].append(key)
        groups[scene_group(clip)].append(key)
        kind = clip.get("listener_kind") or "-"
        groups.setdefault(f"{clip.get('shot_plan')}/{kind}", []).append(key)
    out = {}
    for name, keys in groups.items():
        if not keys:
            continue
        sub = {"clips": {k: truth["clips"][k] for k in keys}}
        rep = score_manifest(records, sub, max_frames, iou_min)
        alone = [
            k for k in keys if not any(face["speaker"] for f in truth["clips"][k]["frames"] for face in f["faces"])
        ]
        false = sum(bool((records.get(k) or {}).get("frames")) for k in alone)
        out[name] = SceneGroupReport(
            clips=len(keys), precision=rep.precision, recall=rep.recall, coverage=rep.coverage, crops=rep.crops,
            correct=rep.correct, speaker_visible=rep.speaker_visible, covered=rep.covered,
            listener_alone=len(alone), false_picks=false,
        )
    return out
