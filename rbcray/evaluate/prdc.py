"""Precision, recall, density and coverage of generated features (Naeem et al. 2020).

With B(x, k) the ball around x reaching its k-th nearest neighbour within its own set:
precision = share of fake points inside some real ball (fidelity); recall = share of real points
inside some fake ball (diversity); density = mean number of real balls holding a fake point, / k
(fidelity robust to outliers, ~1 for identical distributions); coverage = share of real points whose
ball holds at least one fake point. Intervals: percentile intervals over resamples of both sets
that keep the distinct points of a bootstrap draw (~63 %): a duplicated point would have a ball of
radius 0, and the k-NN radii depend on the set size, so the interval is indicative of the spread
rather than an exact bootstrap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

KEYS = ("precision", "recall", "density", "coverage")


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.maximum(d, 0)


def _radii(x: np.ndarray, k: int) -> np.ndarray:
    d = _sqdist(x, x)
    return np.partition(d, k, axis=1)[:, k]  # column 0 is the point itself (distance 0)


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """The four values for (n, d) real and (m, d) fake features (squared distances throughout)."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    r_real, r_fake = _radii(real, k), _radii(fake, k)
    d_rf = _sqdist(real, fake)  # (n, m)
    inside = d_rf <= r_real[:, None]  # fake j inside real ball i
    return {
        "precision": float(inside.any(axis=0).mean()),
        "recall": float((d_rf <= r_fake[None, :]).any(axis=1).mean()),
        "density": float(inside.sum(axis=0).mean() / k),
        "coverage": float((d_rf.min(axis=1) <= r_real).mean()),
    }


def prdc_with_ci(real: np.ndarray, fake: np.ndarray, k: int = 5, n_boot: int = 50, seed: int = 0, ci: float = 0.95) -> dict[str, Any]:
    """``{key: value, key + "_ci": [lo, hi]}`` for the four keys, plus ``k`` and the set sizes."""
    if min(len(real), len(fake)) <= k:
        return {key: None for key in KEYS} | {"note": f"PRDC needs more than k = {k} feature vectors per side"}
    out: dict[str, Any] = dict(prdc(real, fake, k))
    rng = np.random.default_rng([seed, 0x9DC])
    reps = {key: [] for key in KEYS}
    for _ in range(n_boot):
        ri = np.unique(rng.integers(0, len(real), len(real)))
        fi = np.unique(rng.integers(0, len(fake), len(fake)))
        if min(len(ri), len(fi)) <= k:
            continue
        v = prdc(real[ri], fake[fi], k)
        for key in KEYS:
            reps[key].append(v[key])
    for key in KEYS:
        lo, hi = np.quantile(reps[key], [(1 - ci) / 2, 1 - (1 - ci) / 2])
        out[key + "_ci"] = [float(lo), float(hi)]
    out.update(k=k, n_real=len(real), n_fake=len(fake))
    return out
