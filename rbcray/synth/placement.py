"""Where cells go: adhesive placement by the evolving probability map of Eq. 3, or uniform.

Eq. 3 of Bailo et al. (Sec. 4.1). Cells i = 1..n are placed one by one. The first ``n_init``
centres l_1..l_n_init are uniform on the canvas. Cell i > n_init is placed by sampling the map

    P(n_init + 1) = (1 / n_init) * sum_{j <= n_init} z(l_j)
    P(i)          = (1 - a_i) P(i - 1) + a_i z(l_{i-1}),   a_i = 1 / i,

where z(l) is a 2-D Gaussian centred at l with sigma = cell_size / sqrt(2 ln 2) (its half width at
half maximum is cell_size) whose values within cell_size of l are set low ("so occupied places are
avoided"). A place whose cell would overlap a placed cell (or that leaves no free colour, see
engine.py) is rejected and P(i) is sampled again, up to ``max_tries`` times.

Definitions fixed here (the paper leaves them open): z is the Gaussian with peak 1 evaluated on
the plane, ``inner`` = the value inside the disc |x - l| <= cell_size (0 by default; the Gaussian
is 0.5 at the disc's edge), and sampling P means drawing a pixel with probability P(x) / sum P over
the canvas. :func:`probability_map` computes exactly that map; ``benchmarks/literal_eq3.py``
recomputes it at full resolution for every cell and draws from it (the reference).

The fast form: why it samples the same distribution
===================================================
1. *Mixture weights.* Unrolling the recursion, P(i) = sum_j w_j z(l_j) with, for i > n_init,
   w_j = (n_init + 1) / (n_init * i) for each of the n_init initial cells and w_j = 1 / i for each
   later cell j = n_init+1..i-1 (by induction: a kernel entering with weight 1/k is multiplied by
   (k/(k+1)) ... ((i-1)/i) = k/i). So it is *almost* the running mean of all kernels, except that
   the initial ones share one extra slot. Drawing a kernel with these weights costs one integer:
   u uniform in {0..i-1}; u <= n_init -> a uniformly chosen initial cell, else cell u - 1.
2. *One kernel.* Every z has the same shape, so sampling a kernel's own (normalised) density is
   sampling one fixed offset distribution. In polar coordinates about l the density of the ring
   part is proportional to r exp(-r^2 / 2 sigma^2) for r > cell_size: a Rayleigh law truncated at
   cell_size, whose inverse CDF is closed-form, r = sqrt(cell_size^2 + 2 sigma^2 E) with
   E ~ Exp(1), i.e. r = cell_size * sqrt(1 + E / ln 2), angle uniform. The disc part (mass
   inner * pi * cell_size^2 against the ring's pi * sigma^2) is uniform in the disc.
3. *Mixture normalisation and the canvas.* With peak-1 kernels each kernel has the same total mass
   on the plane, so P / sum P on the plane is the mixture with weights w_j. P is only defined on
   the canvas: a kernel near the border loses mass outside it. Drawing from the plane mixture and
   redrawing (kernel and offset) whenever the point falls outside the canvas is rejection
   sampling, whose output density is P(x) restricted to the canvas and renormalised: exactly what
   the literal map samples, border kernels down-weighted by their in-canvas mass, with no map.
4. *"Set low" and the mixture.* Each kernel is low only inside *its own* disc; in the sum, other
   kernels' rings overlap a placed cell's disc, so P(i) is not low at every occupied place. That is
   what Eq. 3 says, and the fast form inherits it unchanged (step 2 only touches one kernel's own
   shape). Occupied places are excluded by the overlap rejection, which both forms apply to i.i.d.
   draws from P(i), so the accepted place is distributed as P(i) restricted to the feasible places
   in both (the fast form tests draws in small batches, but accepts the first feasible one in draw
   order, which is the same law as one-at-a-time rejection).
5. *Pixels.* The literal map evaluates z at pixel centres; the fast form draws a continuous point
   and rounds it to the nearest pixel, i.e. integrates z over the pixel. The two laws differ only
   through the curvature of z over one pixel and the disc edge cutting pixels: the total-variation
   distance between the two exact pixel distributions is measured by ``tests/test_synth_eq3.py``
   and reported in docs/masks.md (about 0.4 % for 46 px cells; it shrinks with cell size as
   1 / cell_size).

Uniform placement (the paper's baseline, Fig. 4) draws every centre uniformly on the canvas.
"""

from __future__ import annotations

import math

import numpy as np

LN2 = math.log(2.0)


def kernel_sigma(cell_size: float) -> float:
    """sigma of z: the Gaussian whose half width at half maximum is ``cell_size``."""
    return cell_size / math.sqrt(2.0 * LN2)


def kernel_map(cx: float, cy: float, width: int, height: int, cell_size: float, inner: float = 0.0) -> np.ndarray:
    """z(l) on the pixel grid (float64, H x W): peak-1 Gaussian, ``inner`` within cell_size of l."""
    s2 = 2.0 * kernel_sigma(cell_size) ** 2
    dx2 = (np.arange(width, dtype=np.float64) - cx) ** 2
    dy2 = (np.arange(height, dtype=np.float64) - cy) ** 2
    d2 = dy2[:, None] + dx2[None, :]
    z = np.exp(-d2 / s2)
    z[d2 <= cell_size * cell_size] = inner
    return z


def mixture_weights(n_placed: int, n_init: int) -> np.ndarray:
    """Weights w_j of the kernels of cells 0..n_placed-1 in P(n_placed + 1) (Eq. 3 unrolled)."""
    i = n_placed + 1
    if n_placed < n_init:
        raise ValueError("P is only defined once n_init cells are placed")
    w = np.full(n_placed, 1.0 / i)
    w[:n_init] = (n_init + 1) / (n_init * i)
    return w


def probability_map(
    centres: np.ndarray, width: int, height: int, cell_size: float, n_init: int, inner: float = 0.0, normalise: bool = True
) -> np.ndarray:
    """The literal map P(k + 1) of Eq. 3 after the k placed ``centres`` (k >= n_init), by the recursion.

    Returns H x W float64, summing to 1 over the canvas when ``normalise``. Used by the literal
    reference, the equivalence test and the figure of ``rbcray compare``.
    """
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    k = len(centres)
    if k < n_init:
        raise ValueError(f"P needs at least n_init = {n_init} placed centres, got {k}")
    p = np.zeros((height, width))
    for j in range(n_init):
        p += kernel_map(centres[j, 0], centres[j, 1], width, height, cell_size, inner)
    p /= n_init
    for i in range(n_init + 2, k + 2):  # P(i) from P(i-1) and z(l_{i-1}); l is 1-indexed
        a = 1.0 / i
        p *= 1.0 - a
        p += a * kernel_map(centres[i - 2, 0], centres[i - 2, 1], width, height, cell_size, inner)
    if normalise:
        s = p.sum()
        if s > 0:
            p /= s
    return p


class CandidateStream:
    """Draws candidate places for the fast form, one at a time or in vectorised batches.

    Random numbers come in chunks (kernel slot, initial cell, offset); offsets from a kernel
    centre do not depend on the state, so they are drawn for a whole chunk at once and rounded to
    whole pixels (centres are whole pixels, so rounding the offset rounds the place). The kernel
    choice depends on how many cells are placed and is made when a candidate is taken.
    """

    def __init__(self, rng: np.random.Generator, cell_size: float, inner: float = 0.0, chunk: int = 4096) -> None:
        self.rng = rng
        self.cell_size = float(cell_size)
        self.inner = float(inner)
        self.chunk = chunk
        self.pos = chunk
        sigma2 = kernel_sigma(cell_size) ** 2
        # probability that an offset falls in the disc (mass inner*pi*R^2 vs the ring's pi*sigma^2)
        self.p_disc = self.inner * self.cell_size**2 / (self.inner * self.cell_size**2 + sigma2) if inner > 0 else 0.0

    def _refill(self) -> None:
        u = self.rng.random((4, self.chunk))  # kernel slot, initial cell, radius, angle
        r2 = self.cell_size**2 * (1.0 - np.log1p(-u[2]) / LN2)  # truncated Rayleigh, inverse CDF
        if self.p_disc > 0:
            v = self.rng.random(self.chunk)
            disc = v < self.p_disc  # then v / p_disc is uniform on [0, 1): uniform in the disc
            r2 = np.where(disc, self.cell_size**2 * (v / self.p_disc), r2)
        theta = u[3] * (2.0 * math.pi)
        r = np.sqrt(r2)
        self.dx = np.rint(r * np.cos(theta)).astype(np.int64)
        self.dy = np.rint(r * np.sin(theta)).astype(np.int64)
        self.u0, self.u1 = u[0], u[1]
        self.pos = 0

    def _take(self, n: int) -> int:
        if self.pos + n > self.chunk:
            self._refill()
        i = self.pos
        self.pos = i + n
        return i

    def uniform(self, width: int, height: int) -> tuple[int, int]:
        """One uniform pixel of the canvas."""
        i = self._take(1)
        return int(self.u0.item(i) * width), int(self.u1.item(i) * height)

    def uniform_batch(self, n: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` uniform pixels of the canvas."""
        i = self._take(n)
        return (self.u0[i : i + n] * width).astype(np.int64), (self.u1[i : i + n] * height).astype(np.int64)

    def adhesive(self, xs: np.ndarray, ys: np.ndarray, placed: int, n_init: int) -> tuple[int, int]:
        """One draw from P(placed + 1) on the plane (the caller rejects points off the canvas).

        ``xs[:placed]``, ``ys[:placed]`` are the placed centres in placement order.
        """
        i = self._take(1)
        u = int(self.u0.item(i) * (placed + 1))
        k = int(self.u1.item(i) * n_init) if u <= n_init else u - 1
        return int(xs[k]) + int(self.dx[i]), int(ys[k]) + int(self.dy[i])

    def adhesive_batch(self, n: int, xs: np.ndarray, ys: np.ndarray, placed: int, n_init: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` independent draws from P(placed + 1) on the plane."""
        i = self._take(n)
        u = (self.u0[i : i + n] * (placed + 1)).astype(np.int64)
        k = np.where(u <= n_init, (self.u1[i : i + n] * n_init).astype(np.int64), u - 1)
        return xs[k] + self.dx[i : i + n], ys[k] + self.dy[i : i + n]
