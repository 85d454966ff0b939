"""Paired contrasts, the hierarchical bootstrap and "synthetic data is worth N real images".

Pure functions of arrays and a generator (no training, no I/O): tests build the inputs by hand.

A cell of the study (one model, one regime, one RD size) is trained once per **RD subset** (a
different draw of the real training images from the train split) and per **seed**, and scored
on the same real test images. Its estimate is the mean over subsets and seeds of the metric on
the whole test set. The interval comes from a *hierarchical* bootstrap: replicate ``b`` draws
subsets with replacement, seeds with replacement and test images with replacement, then
averages the metric of every drawn (subset, seed) on the drawn images. One table of draws per
test set is shared by every cell on it, so the difference of two cells — a **paired contrast**
such as RD+SD − RD+aug — is computed replicate by replicate and gets its own interval, with the
variance of subsets, seeds and images all folded in.

Learning curve: RD alone at sizes n_1 < ... < n_K, and RD+SD (the same real images plus a
fixed number of synthetic ones) at the same sizes. At size n_k the synthetic data is *worth*
``n* - n_k`` real images, where ``n*`` is the RD size whose (interpolated) RD score equals the
RD+SD score at n_k; the interval repeats that in every bootstrap replicate. When RD+SD scores
above the largest RD size (or below the smallest), ``n*`` is censored at that end and said so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BootTables:
    """Resampling draws of one test set, shared by every cell on it: (B, N) image indices,
    (B, S) subset indices, (B, R) seed indices."""

    image: np.ndarray
    subset: np.ndarray
    seed: np.ndarray

    @property
    def n_boot(self) -> int:
        return int(self.image.shape[0])


def boot_tables(n_images: int, n_subsets: int, n_seeds: int, n_boot: int, rng: np.random.Generator) -> BootTables:
    """Draw the index tables (images, then subsets, then seeds: a fixed order, so a table is a
    pure function of its generator)."""
    if min(n_images, n_subsets, n_seeds, n_boot) < 1:
        raise ValueError("boot_tables: every count must be >= 1")
    return BootTables(
        rng.integers(0, n_images, size=(n_boot, n_images)),
        rng.integers(0, n_subsets, size=(n_boot, n_subsets)),
        rng.integers(0, n_seeds, size=(n_boot, n_seeds)),
    )


def hierarchical(points: np.ndarray, unit_reps: np.ndarray, tables: BootTables) -> tuple[float, np.ndarray]:
    """(estimate, replicates) of one cell.

    ``points[s, r]`` is the metric of (subset s, seed r) on the whole test set; ``unit_reps[s, r, b]``
    the same model's metric on the test images ``tables.image[b]``. Replicate b averages
    ``unit_reps[s, r, b]`` over s in ``tables.subset[b]`` and r in ``tables.seed[b]``.
    """
    points = np.asarray(points, float)
    unit_reps = np.asarray(unit_reps, float)
    S, R, B = unit_reps.shape
    if points.shape != (S, R) or B != tables.n_boot:
        raise ValueError(f"hierarchical: points {points.shape} / replicates {unit_reps.shape} do not match the tables")
    if tables.subset.max() >= S or tables.seed.max() >= R:
        raise ValueError("hierarchical: the tables index more subsets or seeds than the cell has")
    b = np.arange(B)
    # (B, S', R') grid of drawn (subset, seed) pairs, each evaluated on replicate b's images
    picked = unit_reps[tables.subset[:, :, None], tables.seed[:, None, :], b[:, None, None]]
    return float(points.mean()), picked.reshape(B, -1).mean(axis=1)


def unit_replicates(metric: Callable[[np.ndarray | None], float], tables: BootTables) -> tuple[float, np.ndarray]:
    """(metric on all images, metric on each replicate's images) of one trained model;
    ``metric(indices)`` scores the model on the given test images (None = all of them)."""
    return float(metric(None)), np.array([metric(idx) for idx in tables.image], float)


def interval(reps: np.ndarray, ci: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates."""
    lo, hi = np.quantile(np.asarray(reps, float), [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Contrast:
    """A paired difference ``a - b`` (same test images, same draws)."""

    a: str
    b: str
    diff: float
    ci_low: float
    ci_high: float
    #: share of replicates in which a beats b
    p_a_better: float

    def to_dict(self) -> dict[str, float | str]:
        return dict(self.__dict__)


def contrast(a: str, point_a: float, reps_a: np.ndarray, b: str, point_b: float, reps_b: np.ndarray,
             ci: float = 0.95) -> Contrast:
    """Paired contrast of two cells summarised with the same :class:`BootTables`."""
    d = np.asarray(reps_a, float) - np.asarray(reps_b, float)
    lo, hi = interval(d, ci)
    return Contrast(a, b, float(point_a - point_b), lo, hi, float(np.mean(d > 0)))


#: contrasts every report gives when the regimes are present: (a, b)
CONTRASTS: tuple[tuple[str, str], ...] = (
    ("RD+SD", "RD+aug"),
    ("RD+SD+aug", "RD+aug"),
    ("SD", "RD"),
    ("RD+aug", "RD"),
    ("RD+SD", "RD"),
    ("RD+SD+aug", "RD"),
)


# ----------------------------------------------------------------------------- learning curve
def equivalent_size(sizes: Sequence[float], rd: Sequence[float], target: float) -> tuple[float, str | None]:
    """The RD size at which the RD curve reaches ``target``: (size, censoring).

    The curve is made monotone (running maximum: more real images never count as worse) and
    interpolated linearly in log(size). Censoring is ``"above"`` when ``target`` exceeds the
    whole curve (returns the largest size), ``"below"`` when it is under the smallest size's
    score (returns the smallest size), else None.
    """
    x = np.log(np.asarray(sizes, float))
    y = np.maximum.accumulate(np.asarray(rd, float))
    if len(x) < 2 or np.any(np.diff(x) <= 0):
        raise ValueError("equivalent_size: needs >= 2 increasing sizes")
    if target > y[-1]:
        return float(sizes[-1]), "above"
    if target < y[0]:
        return float(sizes[0]), "below"
    k = int(np.searchsorted(y, target, side="left"))  # first k with y[k] >= target
    if k == 0 or y[k] == y[k - 1]:
        return float(np.exp(x[k])), None
    t = (target - y[k - 1]) / (y[k] - y[k - 1])
    return float(np.exp(x[k - 1] + t * (x[k] - x[k - 1]))), None


@dataclass(frozen=True)
class Worth:
    """What the synthetic data is worth at one RD size, in real images."""

    n_real: int
    worth: float
    ci_low: float
    ci_high: float
    censored: str | None
    #: share of bootstrap replicates censored at either end of the curve
    censored_share: float

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def synthetic_worth(
    sizes: Sequence[int], rd_points: Sequence[float], rd_reps: np.ndarray, sd_points: Sequence[float],
    sd_reps: np.ndarray, ci: float = 0.95,
) -> list[Worth]:
    """Per RD size: RD+SD's equivalent in extra real images, with a paired bootstrap interval.

    ``rd_reps`` / ``sd_reps`` are (K, B) replicates of the RD and RD+SD cells at the K sizes,
    drawn with one set of tables (paired).
    """
    rd_reps, sd_reps = np.asarray(rd_reps, float), np.asarray(sd_reps, float)
    out = []
    for k, n in enumerate(sizes):
        eq, cens = equivalent_size(sizes, rd_points, float(sd_points[k]))
        rep_eq = [equivalent_size(sizes, rd_reps[:, b], sd_reps[k, b]) for b in range(rd_reps.shape[1])]
        w = np.array([e for e, _ in rep_eq]) - n
        lo, hi = interval(w, ci)
        share = float(np.mean([c is not None for _, c in rep_eq]))
        out.append(Worth(int(n), eq - n, lo, hi, cens, share))
    return out
