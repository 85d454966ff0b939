"""Gupta et al.'s pseudo-label filter: keep a translated cell only if the real-data classifier
gives its target class probability p(c) >= t, with t grid-searched on validation data.

Pure functions of arrays; the classifier is :mod:`rbcray.models.morphology` (trained on real
train-split cells only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from rbcray.errors import ConfigError, DataError

#: Gupta et al.'s grid (they found t = 0.9 best for the humerus, worse at other t).
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def pseudo_label_filter(probs: np.ndarray, target: int, t: float) -> np.ndarray:
    """Boolean keep-mask over translated cells: ``probs[:, target] >= t``.

    ``probs`` is (N, K) class probabilities; t = 0 keeps everything (the unfiltered regime).
    """
    if not 0.0 <= t <= 1.0:
        raise ConfigError(f"pseudo-label threshold t = {t}: must be within 0..1")
    p = np.asarray(probs)
    if p.ndim != 2 or not 0 <= target < p.shape[1]:
        raise DataError(f"pseudo-label filter: probabilities of shape {p.shape} have no class {target}")
    return p[:, target] >= t


def acceptance_rate(probs: np.ndarray, target: int, t: float) -> float:
    """Share of translated cells the filter keeps (NaN for none); what the manifest records."""
    keep = pseudo_label_filter(probs, target, t)
    return float(keep.mean()) if len(keep) else float("nan")


def grid_search_threshold(
    score: Callable[[float], float], thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> tuple[float, dict[float, float]]:
    """The t maximising ``score(t)`` (a validation metric of the downstream model), and all scores.

    Ties go to the smaller t (more data kept). NaN scores never win.
    """
    if not thresholds:
        raise ConfigError("threshold grid is empty")
    scores = {float(t): float(score(float(t))) for t in thresholds}
    finite = {t: s for t, s in scores.items() if np.isfinite(s)}
    if not finite:
        raise DataError("every threshold of the grid scored NaN")
    best = max(sorted(finite), key=lambda t: finite[t])
    return best, scores
