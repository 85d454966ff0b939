"""Per-class AUC and F1 of a morphology classifier, with image-level bootstrap intervals.

Cells of one smear share stain, focus and often one patient's pathology, so they are not
independent: the intervals resample **test images** (all cells of a drawn image come along), not
cells. AUC is one-vs-rest on the class's probability (Mann-Whitney, ties counted half); F1 is of
the argmax prediction. Beside each F1 stands the F1 of a classifier that names the class at random
with its test prevalence p (its F1 is p) — the contrast a rare class's F1 must be read against;
an AUC is read against 0.5.

Labels are the Chula points carried onto derived instances (:mod:`rbcray.data.morphology`), so
the test cells are those whose derived outline holds exactly one point.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata

from rbcray.data.morphology import CLASSES


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the boolean ``positive`` (NaN without both kinds)."""
    pos = np.asarray(positive, bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(scores)
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def f1(pred: np.ndarray, positive: np.ndarray) -> float:
    """F1 of boolean predictions (NaN when there are neither predictions nor positives)."""
    pred, pos = np.asarray(pred, bool), np.asarray(positive, bool)
    tp = int((pred & pos).sum())
    denom = int(pred.sum()) + int(pos.sum())
    return float(2 * tp / denom) if denom else float("nan")


def class_metrics(probs: np.ndarray, labels: np.ndarray, idx: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-class AUC, F1 and prevalence of (probs, labels), optionally on the cells ``idx``."""
    if idx is not None:
        probs, labels = probs[idx], labels[idx]
    k = probs.shape[1]
    pred = probs.argmax(1)
    a = np.array([auc(probs[:, c], labels == c) for c in range(k)])
    f = np.array([f1(pred == c, labels == c) for c in range(k)])
    prev = np.array([(labels == c).mean() if len(labels) else np.nan for c in range(k)])
    return {"auc": a, "f1": f, "prevalence": prev}


def image_bootstrap(
    probs: np.ndarray, labels: np.ndarray, image_index: np.ndarray, n_boot: int = 1000, seed: int = 0, ci: float = 0.95
) -> dict[str, Any]:
    """Point estimates and percentile intervals of per-class AUC/F1 and macro means, resampling images.

    Returns ``{"classes": [{"class", "n_test", "auc", "auc_ci", "f1", "f1_ci", "f1_chance"}...],
    "macro_auc", "macro_auc_ci", "macro_f1", "macro_f1_ci", "n_images", "n_cells", "n_boot"}``;
    macro means run over classes with test cells.
    """
    images = np.unique(image_index)
    groups = [np.flatnonzero(image_index == i) for i in images]
    point = class_metrics(probs, labels)
    rng = np.random.default_rng(seed)
    reps = {"auc": [], "f1": []}
    for _ in range(n_boot):
        pick = rng.integers(0, len(groups), len(groups))
        idx = np.concatenate([groups[i] for i in pick])
        m = class_metrics(probs, labels, idx)
        reps["auc"].append(m["auc"])
        reps["f1"].append(m["f1"])
    ra, rf = np.array(reps["auc"]), np.array(reps["f1"])
    q = [(1 - ci) / 2, 1 - (1 - ci) / 2]
    present = np.array([(labels == c).any() for c in range(probs.shape[1])])

    def interval(r: np.ndarray) -> list[float]:
        r = r[np.isfinite(r)]
        return [float(v) for v in np.quantile(r, q)] if len(r) else [float("nan")] * 2

    rows = []
    for c in range(probs.shape[1]):
        rows.append(
            {
                "class": CLASSES[c] if c < len(CLASSES) else str(c),
                "n_test": int((labels == c).sum()),
                "auc": float(point["auc"][c]),
                "auc_ci": interval(ra[:, c]),
                "f1": float(point["f1"][c]),
                "f1_ci": interval(rf[:, c]),
                "f1_chance": float(point["prevalence"][c]),
            }
        )
    macro_a = np.nanmean(ra[:, present], axis=1)
    macro_f = np.nanmean(rf[:, present], axis=1)
    return {
        "classes": rows,
        "macro_auc": float(np.nanmean(point["auc"][present])),
        "macro_auc_ci": interval(macro_a),
        "macro_f1": float(np.nanmean(point["f1"][present])),
        "macro_f1_ci": interval(macro_f),
        "accuracy": float((probs.argmax(1) == labels).mean()) if len(labels) else float("nan"),
        "n_images": int(len(images)),
        "n_cells": int(len(labels)),
        "n_boot": int(n_boot),
    }


def to_markdown(res: dict[str, Any]) -> str:
    """The per-class table (AUC and F1 with 95% image-bootstrap intervals)."""

    def ci(v: float, c: list[float]) -> str:
        return "n/a" if not np.isfinite(v) else f"{v:.3f} [{c[0]:.3f}, {c[1]:.3f}]"

    lines = [
        f"{res['n_cells']} test cells in {res['n_images']} test images; intervals: 95% percentile, "
        f"{res['n_boot']} image-level bootstrap replicates.",
        "",
        "| class | test cells | AUC [95% CI] | F1 [95% CI] | F1 of chance (prevalence) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in res["classes"]:
        lines.append(f"| {r['class']} | {r['n_test']} | {ci(r['auc'], r['auc_ci'])} | {ci(r['f1'], r['f1_ci'])} | {r['f1_chance']:.3f} |")
    lines.append(f"| **macro** | {res['n_cells']} | {ci(res['macro_auc'], res['macro_auc_ci'])} | {ci(res['macro_f1'], res['macro_f1_ci'])} | |")
    return "\n".join(lines) + "\n"
