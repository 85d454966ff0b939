"""The study's statistics on constructed data: hierarchical bootstrap, paired contrasts, worth."""

from __future__ import annotations

import numpy as np
import pytest

from rbcray.evaluate.contrasts import (
    BootTables,
    boot_tables,
    contrast,
    equivalent_size,
    hierarchical,
    interval,
    synthetic_worth,
    unit_replicates,
)


def test_hierarchical_hand_computed():
    # 2 subsets x 1 seed, 2 replicates; replicate 0 draws subset 1 twice, replicate 1 subsets 0 and 1
    points = np.array([[0.5], [0.7]])
    unit = np.array([[[0.4, 0.6]], [[0.8, 1.0]]])  # (S, R, B)
    t = BootTables(image=np.zeros((2, 3), int), subset=np.array([[1, 1], [0, 1]]), seed=np.zeros((2, 1), int))
    est, reps = hierarchical(points, unit, t)
    assert est == pytest.approx(0.6)
    assert reps == pytest.approx([0.8, (0.6 + 1.0) / 2])


def test_hierarchical_interval_widens_with_subset_variance():
    # the same image noise; in one study the subsets disagree, in the other they agree
    rng = np.random.default_rng(0)
    n_img, B = 100, 400
    vals = rng.normal(0.0, 0.1, size=n_img)
    t = boot_tables(n_img, 3, 1, B, np.random.default_rng(1))

    def cell(offsets):
        per = [[vals + o] for o in offsets]  # (S, R, images)
        points = np.array([[v.mean() for v in row] for row in per])
        unit = np.array([[[v[idx].mean() for idx in t.image] for v in row] for row in per])
        return hierarchical(points, unit, t)

    _, agree = cell([0.5, 0.5, 0.5])
    _, disagree = cell([0.3, 0.5, 0.7])
    w_agree = np.subtract(*interval(agree)[::-1])
    w_dis = np.subtract(*interval(disagree)[::-1])
    assert w_dis > 3 * w_agree


def test_paired_contrast_removes_shared_image_noise():
    # a and b share every test image's difficulty; a is better by exactly 0.02 on every image
    rng = np.random.default_rng(2)
    hard = rng.uniform(0.2, 0.9, size=80)
    t = boot_tables(80, 1, 1, 500, np.random.default_rng(3))

    def stats(v):
        p, u = unit_replicates(lambda idx: float(v.mean() if idx is None else v[idx].mean()), t)
        return hierarchical(np.array([[p]]), u[None, None, :], t)

    pa, ra = stats(hard + 0.02)
    pb, rb = stats(hard)
    c = contrast("A", pa, ra, "B", pb, rb)
    assert c.diff == pytest.approx(0.02)
    assert c.ci_low == pytest.approx(0.02) and c.ci_high == pytest.approx(0.02)
    assert c.p_a_better == 1.0
    # unpaired, the intervals of a and b overlap widely
    assert interval(ra)[0] < interval(rb)[1]


def test_contrast_interval_covers_zero_without_an_effect():
    rng = np.random.default_rng(4)
    a, b = rng.normal(0.5, 0.2, 60), rng.normal(0.5, 0.2, 60)
    t = boot_tables(60, 1, 1, 1000, np.random.default_rng(5))
    pa, ua = unit_replicates(lambda i: float(a.mean() if i is None else a[i].mean()), t)
    pb, ub = unit_replicates(lambda i: float(b.mean() if i is None else b[i].mean()), t)
    c = contrast("a", pa, ua, "b", pb, ub)
    assert c.ci_low < c.diff < c.ci_high
    assert c.ci_low < 0 < c.ci_high


def test_equivalent_size_interpolates_in_log_size():
    sizes, rd = [15, 30, 60, 120], [0.5, 0.6, 0.7, 0.8]
    assert equivalent_size(sizes, rd, 0.7) == (pytest.approx(60.0), None)
    n, cens = equivalent_size(sizes, rd, 0.65)
    assert n == pytest.approx(np.sqrt(30 * 60)) and cens is None
    assert equivalent_size(sizes, rd, 0.9) == (120.0, "above")
    assert equivalent_size(sizes, rd, 0.4) == (15.0, "below")
    # a dip is ignored (running maximum): 0.55 is reached at the first size already
    assert equivalent_size(sizes, [0.6, 0.5, 0.7, 0.8], 0.55)[0] == pytest.approx(15.0)
    with pytest.raises(ValueError):
        equivalent_size([30, 15], [0.5, 0.6], 0.55)


def test_synthetic_worth_recovers_a_constructed_shift():
    # RD+SD at n scores what RD scores at 2n: the synthetic data is worth n real images
    sizes = [15, 30, 60, 120]
    f = lambda n: 0.3 + 0.1 * np.log2(n)  # noqa: E731
    rd = np.array([f(n) for n in sizes])
    sd = np.array([f(2 * n) for n in sizes[:-1]] + [f(120) + 0.5])
    B = 200
    noise = np.random.default_rng(6).normal(0, 0.005, size=(len(sizes), B))
    w = synthetic_worth(sizes, rd, rd[:, None] + noise, sd, sd[:, None] + noise)
    for k in range(3):
        assert w[k].worth == pytest.approx(sizes[k])
        assert w[k].ci_low <= sizes[k] <= w[k].ci_high
        assert w[k].censored is None
    assert w[3].censored == "above" and w[3].worth == 0.0 and w[3].censored_share == 1.0
