"""Eq. 3: the fast sampler draws from the literal probability map's law."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from rbcray.synth.placement import (
    CandidateStream,
    kernel_map,
    kernel_offsets,
    mixture_weights,
    probability_map,
)

W, H, CELL, N_INIT = 120, 88, 12.0, 20


def _stream(seed: int, centres: np.ndarray, inner: float = 0.0, width: int = W, height: int = H, reverted: bool = False) -> CandidateStream:
    """A stream with the kernels of ``centres`` (x, y), placed in that order."""
    s = CandidateStream(np.random.default_rng(seed), CELL, inner, width, height, 0, 0, N_INIT, len(centres), reverted=reverted)
    s.M = s.reach + 1
    s.row = width + 2 * s.M
    for x, y in centres:
        s.add((int(y) + s.M) * s.row + int(x) + s.M)
    return s


def _xy(s: CandidateStream, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return F % s.row - s.M, F // s.row - s.M


def _centres(k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, W, k), rng.integers(0, H, k)], axis=1)


def test_unrolled_weights_equal_the_recursion() -> None:
    c = _centres(33)
    p = probability_map(c, W, H, CELL, N_INIT, normalise=False)
    w = mixture_weights(len(c), N_INIT)
    assert w.sum() == pytest.approx(1.0)
    assert w[0] == pytest.approx((N_INIT + 1) / (N_INIT * 34)) and w[-1] == pytest.approx(1 / 34)
    direct = sum(wj * kernel_map(x, y, W, H, CELL) for wj, (x, y) in zip(w, c))
    np.testing.assert_allclose(p, direct, rtol=1e-12, atol=1e-15)
    # P(n_init + 1) is the plain mean of the first n_init kernels
    p0 = probability_map(c[:N_INIT], W, H, CELL, N_INIT, normalise=False)
    np.testing.assert_allclose(p0, np.mean([kernel_map(x, y, W, H, CELL) for x, y in c[:N_INIT]], axis=0), rtol=1e-12)


def test_kernel_table_is_the_lattice_kernel() -> None:
    a, b, prob, alias = kernel_offsets(CELL, 0.05)
    # rebuild the full-lattice law from the octant table and compare with z on a grid
    r = int(a.max())
    full = kernel_map(r, r, 2 * r + 1, 2 * r + 1, CELL, 0.05)
    full /= full.sum()
    table = np.zeros_like(full)
    # the alias table's law: column i kept with prob[i], else given to alias[i]
    law = prob.copy()
    np.add.at(law, alias, 1.0 - prob)
    law /= len(a)
    for (x, y), q in zip(zip(a, b), law):
        pts = {(sx * x, sy * y) for sx in (1, -1) for sy in (1, -1)} | {(sy * y, sx * x) for sx in (1, -1) for sy in (1, -1)}
        for px, py in pts:
            table[r + py, r + px] += q / len(pts)
    assert np.abs(table - full).sum() < 1e-9


@pytest.mark.parametrize("inner,mode,reverted", [(0.0, "batch", False), (0.1, "batch", False), (0.0, "one at a time", False),
                                                 (0.0, "batch", True), (0.0, "one at a time", True)])
def test_fast_sampler_follows_the_literal_map(inner: float, mode: str, reverted: bool) -> None:
    c = _centres(40, seed=1)
    p = probability_map(c, W, H, CELL, N_INIT, inner, reverted=reverted)
    stream = _stream(2, c, inner, reverted=reverted)
    n = 400_000 if mode == "batch" else 150_000
    hist = np.zeros((H, W))
    got = 0
    while got < n:
        if mode == "batch":
            x, y = _xy(stream, stream.adhesive_batch(4096))
        else:
            x, y = _xy(stream, np.array([stream.adhesive() for _ in range(4096)]))
        on = (x >= 0) & (x < W) & (y >= 0) & (y < H)  # off-canvas draws are redrawn (rejection)
        x, y = x[on][: n - got], y[on][: n - got]
        np.add.at(hist, (y, x), 1)
        got += len(x)
    # Pearson chi-square on 4x4 blocks, and total variation against a same-size draw of P itself
    blocks = lambda a: a.reshape(H // 4, 4, W // 4, 4).sum(axis=(1, 3)).ravel()  # noqa: E731
    obs, exp = blocks(hist), blocks(p) * n
    keep = exp > 20
    assert chisquare(obs[keep], exp[keep] * obs[keep].sum() / exp[keep].sum()).pvalue > 1e-3
    ref = np.random.default_rng(3).multinomial(n, p.ravel()).reshape(H, W)
    tv_fast = 0.5 * np.abs(hist / n - p).sum()
    tv_ref = 0.5 * np.abs(ref / n - p).sum()
    assert tv_fast < tv_ref * 1.05, (tv_fast, tv_ref)


def test_reverted_kernel_is_one_minus_g_inside_and_continuous() -> None:
    r = int(2 * CELL)
    g = kernel_map(r, r, 2 * r + 1, 2 * r + 1, CELL, 0.3)  # constant reading
    z = kernel_map(r, r, 2 * r + 1, 2 * r + 1, CELL, 0.3, reverted=True)  # 1 - G inside
    yy, xx = np.mgrid[: 2 * r + 1, : 2 * r + 1]
    d = np.hypot(xx - r, yy - r)
    G = np.exp(-(d**2) / (2 * (CELL / np.sqrt(2 * np.log(2))) ** 2))
    inside = d <= CELL
    assert z[r, r] == 0.0 and np.allclose(z[inside], 1 - G[inside]) and np.allclose(z[~inside], G[~inside])
    assert np.allclose(g[inside], 0.3)
    # no jump at the disc's edge: both sides tend to 0.5
    ring_in, ring_out = z[(d > CELL - 1) & inside], z[(d < CELL + 1) & ~inside]
    assert abs(ring_in.max() - 0.5) < 0.06 and abs(ring_out.max() - 0.5) < 0.06


def test_kernel_choice_follows_the_mixture_weights() -> None:
    # centres 1000 px apart: which kernel a draw came from is its x rounded to 1000
    stream = _stream(4, np.stack([np.arange(30) * 1000, np.full(30, 100)], axis=1), width=30_000)
    n = 300_000
    counts = np.zeros(30)
    done = 0
    while done < n:
        x, _ = _xy(stream, stream.adhesive_batch(4096))
        x = x / 1000.0
        k = np.rint(x).astype(np.int64)
        np.add.at(counts, k, 1)
        done += len(x)
    w = mixture_weights(30, N_INIT)
    np.testing.assert_allclose(counts / done, w, atol=0.003)
    # the initial cells' extra slot: (n_init + 1) / i of the mass, not n_init / (i - 1)
    assert abs(counts[:N_INIT].sum() / done - (N_INIT + 1) / 31) < 0.004
    assert abs((N_INIT + 1) / 31 - N_INIT / 30) > 0.008
