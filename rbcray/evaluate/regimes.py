"""Training regimes of Bailo et al. Table 2 and the fixed real test split.

- ``RD``: ``n_real`` real images (60 in the paper);
- ``SD``: ``n_real`` synthetic images (the same count as RD);
- ``RD+aug``: the ``n_real`` real images plus augmented copies of them, ``total`` in all (960);
- ``RD+SD``: the ``n_real`` real images plus ``total - n_real`` synthetic ones;
- ``RD+SD+aug``: the ``n_real`` real images, ``synthetic_share`` of the remaining ``total - n_real``
  synthetic, the rest augmented copies of the real images (the paper gives the total, not the mix;
  rbcray's default splits it evenly and records the split in every report).

The test set is a fixed sample of real images chosen by ``split_seed`` alone (never by the trial
seed), disjoint from the real training pool; synthetic samples never enter it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rbcray.errors import ConfigError, DataError

REGIMES: tuple[str, ...] = ("RD", "SD", "RD+aug", "RD+SD", "RD+SD+aug")


@dataclass(frozen=True)
class TrainItem:
    """One training example: a real or synthetic sample (by index in its pool), maybe augmented."""

    origin: str  # "real" | "synthetic"
    index: int
    augment: bool = False


@dataclass(frozen=True)
class RegimeCounts:
    """How many real, synthetic and augmented-copy items a regime trains on."""

    real: int
    synthetic: int
    augmented: int

    @property
    def total(self) -> int:
        return self.real + self.synthetic + self.augmented


def regime_counts(regime: str, n_real: int, total: int, synthetic_share: float = 0.5) -> RegimeCounts:
    """Item counts of ``regime`` (see the module docstring)."""
    if regime not in REGIMES:
        raise ConfigError(f"unknown regime {regime!r}; regimes: {', '.join(REGIMES)}")
    if n_real < 1:
        raise ConfigError(f"n_real must be >= 1, got {n_real}")
    extra = total - n_real
    if regime in ("RD+aug", "RD+SD", "RD+SD+aug") and extra < 0:
        raise ConfigError(f"total ({total}) must be >= n_real ({n_real})")
    if regime == "RD":
        return RegimeCounts(n_real, 0, 0)
    if regime == "SD":
        return RegimeCounts(0, n_real, 0)
    if regime == "RD+aug":
        return RegimeCounts(n_real, 0, extra)
    if regime == "RD+SD":
        return RegimeCounts(n_real, extra, 0)
    n_syn = int(round(synthetic_share * extra))
    return RegimeCounts(n_real, n_syn, extra - n_syn)


def synthetic_needed(regimes: tuple[str, ...] | list[str], n_real: int, total: int, synthetic_share: float = 0.5) -> int:
    """The most synthetic samples any of ``regimes`` uses (every regime draws the lowest ids)."""
    return max((regime_counts(r, n_real, total, synthetic_share).synthetic for r in regimes), default=0)


def regime_items(regime: str, n_real: int, total: int, synthetic_share: float = 0.5) -> list[TrainItem]:
    """The training items of ``regime``: real items index the real training pool (0..n_real-1),
    synthetic items the synthetic pool (0..n-1), augmented copies cycle over the real items."""
    c = regime_counts(regime, n_real, total, synthetic_share)
    items = [TrainItem("real", i) for i in range(c.real)]
    items += [TrainItem("synthetic", i) for i in range(c.synthetic)]
    items += [TrainItem("real", k % n_real, augment=True) for k in range(c.augmented)]
    return items


def split_real(
    n_available: int, n_test: int, n_real: int, split_seed: int, test_pool: tuple[int, ...] | None = None
) -> tuple[list[int], list[int]]:
    """(test indices, real training indices), disjoint, fixed by ``split_seed``.

    With ``test_pool`` (a dataset's own test split) the test images come from it and the
    training images from the rest; otherwise both come from one seeded permutation.
    """
    rng = np.random.default_rng([split_seed, 0x7E57])
    if test_pool is not None:
        pool = sorted(set(test_pool))
        rest = [i for i in range(n_available) if i not in set(pool)]
        if n_test > len(pool):
            raise DataError(f"n_test = {n_test} but the dataset's test split holds only {len(pool)} images")
        if n_real > len(rest):
            raise DataError(f"n_real = {n_real} but only {len(rest)} images are outside the test split")
        test = sorted(int(i) for i in rng.permutation(pool)[:n_test])
        train = [int(i) for i in rng.permutation(rest)[:n_real]]
        return test, train
    if n_test + n_real > n_available:
        raise DataError(f"n_test + n_real = {n_test} + {n_real} but the dataset holds only {n_available} images")
    perm = rng.permutation(n_available)
    return sorted(int(i) for i in perm[:n_test]), [int(i) for i in perm[n_test:n_test + n_real]]
