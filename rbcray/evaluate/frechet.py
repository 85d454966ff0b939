"""Fréchet distance between Gaussians fitted to two feature sets, with a bootstrap interval.

FID's formula (Heusel et al. 2017) in the feature space of an encoder trained on real train-split
images only (:mod:`rbcray.evaluate.encoder`) -- not Inception, whose weights rbcray never
downloads; values compare across models scored with the same encoder file, not with published
FIDs. The interval resamples both sets with replacement (percentile bootstrap); like the estimate
itself it is biased upwards for small sets, which is why every report puts a real-vs-real
split-half value of the same size beside it.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2))."""
    from scipy import linalg

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    c1, c2 = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular covariances (few samples): the usual approximate root
        covmean = np.asarray(linalg.sqrtm(c1 @ c2)).real
    return float(max(((mu1 - mu2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean), 0.0))


def frechet(a: np.ndarray, b: np.ndarray, n_boot: int = 100, seed: int = 0, ci: float = 0.95) -> dict[str, Any]:
    """``{"fd": value, "ci": [lo, hi], "n_a", "n_b"}``."""
    if len(a) < 2 or len(b) < 2:
        return {"fd": None, "ci": None, "note": "Fréchet distance needs at least 2 feature vectors per side"}
    rng = np.random.default_rng([seed, 0xFD])
    reps = [frechet_distance(a[rng.integers(0, len(a), len(a))], b[rng.integers(0, len(b), len(b))]) for _ in range(n_boot)]
    lo, hi = np.quantile(reps, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return {"fd": frechet_distance(a, b), "ci": [float(lo), float(hi)], "n_a": len(a), "n_b": len(b)}
