"""Kernel distance (KID) between two feature sets, with its spread over random subsets.

Bińkowski et al. 2018: the unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y/d + 1)^3,
averaged over ``n_subsets`` random subsets of ``subset_size`` per side; the std over subsets is the
interval that goes with it. Unbiased: two samples of one distribution give values scattered around
0 (negative values happen). Features come from any encoder -- here the one trained on real
train-split images only (:mod:`rbcray.evaluate.encoder`), never downloaded weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def mmd2_cubic(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel between (m, d) and (n, d) feature arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = a.shape[1]
    kxx = (a @ a.T / d + 1) ** 3
    kyy = (b @ b.T / d + 1) ** 3
    kxy = (a @ b.T / d + 1) ** 3
    m, n = len(a), len(b)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean())


def kid(a: np.ndarray, b: np.ndarray, n_subsets: int = 50, subset_size: int = 200, seed: int = 0) -> dict[str, Any]:
    """``{"kid": mean, "std": std over subsets, "n_subsets", "subset_size"}`` (subsets drawn without
    replacement within each, by ``np.random.default_rng(seed)``; at most half the smaller side)."""
    # at most half of the smaller side, so that subsets differ and their spread means something
    m = min(subset_size, min(len(a), len(b)) // 2)
    if m < 2:
        return {"kid": None, "std": None, "note": "KID needs at least 2 feature vectors per side"}
    rng = np.random.default_rng([seed, 0x41D])
    vals = np.array([
        mmd2_cubic(a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]) for _ in range(n_subsets)
    ])
    return {"kid": float(vals.mean()), "std": float(vals.std(ddof=1)) if n_subsets > 1 else 0.0,
            "n_subsets": int(n_subsets), "subset_size": int(m)}
