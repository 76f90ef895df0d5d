"""Emotion-recognition metrics (FacialMMT reports support-weighted F1 over the 7 classes) and the
confusion-matrix picture."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stage1_face_extraction.common.atomic import atomic_write_bytes
from stage1_face_extraction.common.labels import EMOTIONS

__all__ = ["classification_metrics", "confusion_matrix", "plot_confusion", "summarize_seed_tests",
           "summarize_seeds"]


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n: int = len(EMOTIONS)) -> np.ndarray:
    """(n, n) counts, rows = true class, columns = predicted."""
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str] = EMOTIONS) -> dict:
    """``weighted_f1``, ``macro_f1``, ``accuracy`` (percent, as FacialMMT reports), ``per_class_f1``
    (``{label: percent}``), ``support`` and the confusion matrix (``confusion``, rows = true)."""
    from sklearn.metrics import accuracy_score, f1_score

    idx = list(range(len(labels)))
    y_true, y_pred = list(map(int, y_true)), list(map(int, y_pred))
    per = f1_score(y_true, y_pred, labels=idx, average=None, zero_division=0)
    return {
        "weighted_f1": round(
            100.0 * float(f1_score(y_true, y_pred, labels=idx, average="weighted", zero_division=0)), 4
        ),
        "macro_f1": round(100.0 * float(f1_score(y_true, y_pred, labels=idx, average="macro", zero_division=0)), 4),
        "accuracy": round(100.0 * float(accuracy_score(y_true, y_pred)), 4) if y_true else 0.0,
        "per_class_f1": {lab: round(100.0 * float(f), 4) for lab, f in zip(labels, per)},
        "support": {lab: int(c) for lab, c in zip(labels, np.bincount(y_true, minlength=len(labels)))},
        "n": len(y_true),
        "confusion": confusion_matrix(y_true, y_pred, len(labels)).tolist(),
    }


def plot_confusion(cm: Sequence[Sequence[int]], path: str | Path, labels: Sequence[str] = EMOTIONS,
                   title: str = "") -> Path:
    """Row-normalised confusion matrix with counts, as a PNG (written via temp file and rename:
    a kill never leaves half a picture at ``path``)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=110)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def summarize_seeds(runs: Sequence[dict], keys: Sequence[str] = ("weighted_f1", "macro_f1", "accuracy")) -> dict:
    """Mean and (sample) std over seeds of each metric in ``keys``."""
    out = {}
    for k in keys:
        v = np.asarray([r[k] for r in runs], np.float64)
        out[k] = {"mean": round(float(v.mean()), 4), "std": round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 4)}
    return out


def summarize_seed_tests(dev_runs: Sequence[dict], tests: dict[int, dict], best_seed: int,
                         keys: Sequence[str] = ("weighted_f1", "macro_f1", "accuracy")) -> dict:
    """Test scores of a multi-seed run: ``runs`` (per seed: its best dev weighted F1 as
    ``dev_weighted_f1`` and its test ``keys``), the mean and std over the seeds of each test metric
    (:func:`summarize_seeds`), the best-dev seed and its test weighted F1.

    Args:
        dev_runs: ``[{"seed": s, "weighted_f1": dev W-F1, ...}]`` (the train stage's seeds record).
        tests: ``{seed: classification_metrics(...) on test}`` for every seed of ``dev_runs``.
        best_seed: the seed with the best dev weighted F1.
    """
    runs = [{"seed": int(r["seed"]), "dev_weighted_f1": r["weighted_f1"], **{k: tests[int(r["seed"])][k] for k in keys}}
            for r in dev_runs]
    return {"runs": runs, **summarize_seeds(runs, keys), "best_dev_seed": int(best_seed),
            "best_dev_seed_weighted_f1": tests[int(best_seed)]["weighted_f1"]}
