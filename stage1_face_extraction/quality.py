"""Score stage-1 manifests against the demo corpus ground truth (``truth.json``).

Metrics (the thresholds of the Stage 1 issue: precision >= 0.98, recall >= 0.90, coverage >= 0.97):

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
            failures.append(f"{key} ({clip.get('shot_plan')}): {status}, {good}/{n_sel} crops right, speaker visible in {n_vis} frames")
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
