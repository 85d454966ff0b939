"""Where cells go: adhesive placement by the evolving probability map of Eq. 3, or uniform.

Eq. 3 of Bailo et al. (Sec. 4.1). Cells i = 1..n are placed one by one. The first ``n_init``
centres l_1..l_n_init are uniform on the canvas. Cell i > n_init is placed by sampling the map

    P(n_init + 1) = (1 / n_init) * sum_{j <= n_init} z(l_j)
    P(i)          = (1 - a_i) P(i - 1) + a_i z(l_{i-1}),   a_i = 1 / i,

where z(l) is a 2-D Gaussian G centred at l with sigma = cell_size / sqrt(2 ln 2) (its half width at
half maximum is cell_size) whose values within cell_size of l are "reverted" ("so occupied places
are avoided"): either 1 - G there (the plain reading; continuous at the disc's edge) or a low
constant (see :func:`inside`). A place whose cell would overlap a placed cell (or that leaves no free colour, see
engine.py) is rejected and P(i) is sampled again, up to ``max_tries`` times.

Definitions fixed here (the paper leaves them open): z is the Gaussian with peak 1 evaluated on
the plane, inside the disc |x - l| <= cell_size either 1 - G (``reverted``) or the constant ``inner``
(the Gaussian is 0.5 at the disc's edge), and sampling P means drawing a pixel with probability P(x) / sum P over
the canvas. :func:`probability_map` computes exactly that map; ``benchmarks/literal_eq3.py``
recomputes it at full resolution for every cell and draws from it (the reference).

The fast form: why it samples the same distribution
===================================================
1. *Mixture weights.* Unrolling the recursion, P(i) = sum_j w_j z(l_j) with, for i > n_init,
   w_j = (n_init + 1) / (n_init * i) for each of the n_init initial cells and w_j = 1 / i for each
   later cell j = n_init+1..i-1 (by induction: a kernel entering with weight 1/k is multiplied by
   (k/(k+1)) ... ((i-1)/i) = k/i). So it is *almost* the running mean of all kernels, except that
   the initial ones share one extra slot. Drawing a kernel with these weights costs one index:
   a uniform ticket (see :class:`CandidateStream`).
2. *One kernel, exactly on the pixel lattice.* Centres are whole pixels and z depends only on
   the offset, so drawing from one kernel's own normalised map is drawing an integer offset
   (dx, dy) with probability z(dx, dy) / sum over the lattice of z: one fixed discrete law for the
   whole run. :func:`kernel_offsets` tabulates it once (the lattice points with 0 <= dy <= dx,
   each weighted by its number of images under the 8 symmetries of the square, out to the radius
   beyond which z holds less than 1e-10 of its mass) and Walker's alias method draws from the
   table in O(1); a uniform random sign flip of x, of y and a swap of x and y then picks one
   image uniformly, which restores the full law. This is the literal map's law at pixel centres,
   "set low" disc included, not a continuous approximation of it.
3. *Mixture normalisation and the canvas.* With peak-1 kernels each kernel has the same total mass
   on the plane, so P / sum P on the plane is the mixture with weights w_j. P is only defined on
   the canvas: a kernel near the border loses mass outside it. Drawing from the plane mixture and
   rejecting the draw when it falls off the canvas is rejection sampling, whose output law is P
   restricted to the canvas and renormalised: exactly what the literal map samples (border kernels
   down-weighted by their in-canvas mass), with no map. (Normalising each z to unit mass *on the
   canvas* instead would be a different reading of Eq. 3; it would redraw only the offset.)
4. *"Set low" and the mixture.* Each kernel is low only inside *its own* disc; in the sum, other
   kernels' rings overlap a placed cell's disc, so P(i) is not low at every occupied place. That is
   what Eq. 3 says, and the fast form inherits it unchanged (step 2 only touches one kernel's own
   shape). Occupied places are excluded by the overlap rejection, which both forms apply to i.i.d.
   draws from P(i), so the accepted place is distributed as P(i) restricted to the feasible places
   in both (the fast form tests draws in batches, but accepts the first feasible one in draw
   order, which is the same law as one-at-a-time rejection).
5. *What is not identical.* (a) The offset table stops where z's remaining mass is below 1e-10,
   so the two laws differ by at most that much in total variation. (b) The bound on tries: the
   fast form counts a draw off the canvas as a (failed) try, the literal map never draws there,
   so for a cell near the border the same ``max_tries`` gives up slightly sooner; where a cell is
   placed, given that it is placed, is unaffected.
   Measured (``tests/test_synth_eq3.py``, and docs/masks.md at 640x480, 46 px, 60 kernels, 4e6
   draws): the total-variation distance between the fast sampler's histogram and the literal map
   is 0.1045 against 0.1044 for 4e6 draws from the literal map itself (pure sampling noise), and
   a chi-square test on 8x8-pixel blocks does not tell them apart (p = 0.68 and 0.17 for two
   seeds). Cost per draw: four uniforms and a few array lookups, no map.

Uniform placement (the paper's baseline, Fig. 4) draws every centre uniformly on the canvas.
"""

from __future__ import annotations

import math

import numpy as np

LN2 = math.log(2.0)


def kernel_sigma(cell_size: float) -> float:
    """sigma of z: the Gaussian whose half width at half maximum is ``cell_size``."""
    return cell_size / math.sqrt(2.0 * LN2)


def kernel_map(cx: float, cy: float, width: int, height: int, cell_size: float, inner: float = 0.0, reverted: bool = False) -> np.ndarray:
    """z(l) on the pixel grid (float64, H x W): peak-1 Gaussian G, and within cell_size of l either
    the constant ``inner`` or, when ``reverted``, 1 - G (see :func:`inside`)."""
    s2 = 2.0 * kernel_sigma(cell_size) ** 2
    dx2 = (np.arange(width, dtype=np.float64) - cx) ** 2
    dy2 = (np.arange(height, dtype=np.float64) - cy) ** 2
    d2 = dy2[:, None] + dx2[None, :]
    return inside(np.exp(-d2 / s2), d2 <= cell_size * cell_size, inner, reverted)


def inside(z: np.ndarray, disc: np.ndarray, inner: float, reverted: bool) -> np.ndarray:
    """Set the kernel's values within its disc: the constant ``inner``, or ``1 - z`` ("reverted").

    The paper says the Gaussian's values within cell_size are "reverted". Two readings: a low
    constant (``inner``, 0 by default: nothing is ever proposed there), or the plain one, 1 - G:
    0 at the centre, rising to 0.5 at the disc's edge where the Gaussian outside is 0.5 too, so the
    kernel is continuous (a ring peaking at cell_size) and proposals near a cell are only damped.
    """
    z[disc] = 1.0 - z[disc] if reverted else inner
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
    centres: np.ndarray, width: int, height: int, cell_size: float, n_init: int, inner: float = 0.0, normalise: bool = True,
    reverted: bool = False,
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
        p += kernel_map(centres[j, 0], centres[j, 1], width, height, cell_size, inner, reverted)
    p /= n_init
    for i in range(n_init + 2, k + 2):  # P(i) from P(i-1) and z(l_{i-1}); l is 1-indexed
        a = 1.0 / i
        p *= 1.0 - a
        p += a * kernel_map(centres[i - 2, 0], centres[i - 2, 1], width, height, cell_size, inner, reverted)
    if normalise:
        s = p.sum()
        if s > 0:
            p /= s
    return p


def _alias(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias table (threshold, alias) of a discrete law given by ``weights``."""
    n = len(weights)
    q = (weights / weights.sum() * n).tolist()
    prob = [1.0] * n
    alias = list(range(n))
    small = [i for i in range(n) if q[i] < 1.0]
    large = [i for i in range(n) if q[i] >= 1.0]
    while small and large:
        s_, g = small.pop(), large[-1]
        prob[s_], alias[s_] = q[s_], g
        q[g] -= 1.0 - q[s_]
        if q[g] < 1.0:
            small.append(large.pop())
    return np.asarray(prob), np.asarray(alias, dtype=np.int64)


_OFFSETS: dict[tuple[float, float, bool], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}


def kernel_offsets(cell_size: float, inner: float = 0.0, reverted: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, threshold, alias): the one-kernel offset law on the lattice, first octant, as an alias table.

    Offsets (a, b) with 0 <= b <= a, weighted by z(a, b) times the number of distinct lattice
    points among (+-a, +-b), (+-b, +-a); points farther than the radius where z's remaining mass
    falls below 1e-10 are left out. Cached per (cell_size, inner, reverted).
    """
    key = (float(cell_size), float(inner), bool(reverted))
    if key not in _OFFSETS:
        sigma = kernel_sigma(cell_size)
        r_max = int(math.ceil(math.sqrt(2.0 * sigma * sigma * math.log(2e10)))) + 1
        aa, bb = np.meshgrid(np.arange(r_max + 1), np.arange(r_max + 1), indexing="ij")
        keep = (bb <= aa) & (aa * aa + bb * bb <= r_max * r_max)
        a, b = aa[keep].astype(np.int64), bb[keep].astype(np.int64)
        d2 = (a * a + b * b).astype(np.float64)
        z = inside(np.exp(-d2 / (2.0 * sigma * sigma)), d2 <= cell_size * cell_size, inner, reverted)
        mult = np.where((a == 0) & (b == 0), 1, np.where((b == 0) | (a == b), 4, 8))
        w = z * mult
        live = w > 0
        a, b, w = a[live], b[live], w[live]
        prob, alias = _alias(w)
        if len(_OFFSETS) > 16:
            _OFFSETS.clear()
        _OFFSETS[key] = (a, b, prob, alias)
    return _OFFSETS[key]


class CandidateStream:
    """Draws candidate places for the fast form, one at a time or in vectorised batches.

    Places are flat indices into a canvas padded by ``margin`` (>= the kernel's reach, so an index
    never wraps to another row); the caller rejects those off the visible canvas with a lookup.
    Random numbers come in chunks of four uniforms per candidate (kernel ticket, uniform y, alias
    column + coin, symmetry); what does not depend on the state (kernel offsets, uniform places)
    is computed for a whole chunk at once.

    Kernel choice by tickets: multiplying the weights of step 1 by n_init * i gives n_init + 1
    tickets to each initial cell and n_init to each later one (n_init * i tickets in all), so a
    uniformly drawn ticket picks a kernel with exactly the weights w_j. The ticket list grows by
    one block per placed cell (:meth:`add`), and a draw is one index into it.
    """

    def __init__(self, rng: np.random.Generator, cell_size: float, inner: float, width: int, height: int,
                 margin: int, row: int, n_init: int, capacity: int, chunk: int = 4096, reverted: bool = False) -> None:
        self.rng = rng
        self.chunk = chunk
        self.pos = chunk
        self.table = kernel_offsets(cell_size, inner, reverted)
        self.W, self.H, self.M, self.row, self.n_init = width, height, margin, row, n_init
        self.tickets = np.zeros(max(1, n_init * (capacity + 1)), np.int64)
        self.n_tickets = 0
        self.placed = 0
        #: uniform placement: no kernel offsets are needed
        self.uniform_only = False
        self.dflat: np.ndarray | None = None

    @property
    def reach(self) -> int:
        """The largest kernel offset along x or y."""
        return int(self.table[0].max())

    def add(self, flat: int) -> None:
        """Record a placed centre (flat index) as the next kernel of Eq. 3."""
        k = self.n_init + 1 if self.placed < self.n_init else self.n_init
        self.tickets[self.n_tickets : self.n_tickets + k] = flat
        self.n_tickets += k
        self.placed += 1

    def _refill(self) -> None:
        u = self.rng.random((4, self.chunk))  # ticket / uniform x, uniform y, alias column + coin, symmetry
        self.u = u
        self.u0 = u[0]
        self.pos = 0
        self.dflat = None
        # only what the next draws can use: uniform places while they are drawn, kernel offsets
        # once Eq. 3 applies (made on first use, see _offsets)
        if self.uniform_only or self.placed < self.n_init:
            ux = (u[0] * self.W).astype(np.int64)
            uy = (u[1] * self.H).astype(np.int64)
            self.uflat = (uy + self.M) * self.row + ux + self.M

    def _offsets(self) -> np.ndarray:
        """Flat kernel offsets of the current chunk."""
        if self.dflat is None:
            a, b, prob, alias = self.table
            u = self.u
            t = u[2] * len(a)
            col = t.astype(np.int64)
            k = np.where(t - col < prob[col], col, alias[col])
            sym = (u[3] * 8.0).astype(np.int64)  # 3 random bits: swap, sign of x, sign of y
            ox, oy = a[k], b[k]
            swap = (sym & 1) == 1
            ox, oy = np.where(swap, oy, ox), np.where(swap, ox, oy)
            self.dflat = np.where(sym & 4, -oy, oy) * self.row + np.where(sym & 2, -ox, ox)
        return self.dflat

    def _take(self, n: int) -> int:
        if self.pos + n > self.chunk:
            self._refill()
        i = self.pos
        self.pos = i + n
        return i

    def uniform(self) -> int:
        """One uniform pixel of the canvas (flat index)."""
        i = self._take(1)
        return self.uflat.item(i)

    def adhesive(self) -> int:
        """One draw from P(placed + 1) on the plane (flat index; may lie off the canvas)."""
        i = self._take(1)
        return self.tickets.item(int(self.u0.item(i) * self.n_tickets)) + self._offsets().item(i)

    def uniform_batch(self, n: int) -> np.ndarray:
        """Flat indices of ``n`` uniform pixels."""
        i = self._take(n)
        return self.uflat[i : i + n]

    def adhesive_batch(self, n: int) -> np.ndarray:
        """Flat indices of ``n`` independent draws from P(placed + 1) (off-canvas ones included)."""
        i = self._take(n)
        return self.tickets[(self.u0[i : i + n] * self.n_tickets).astype(np.int64)] + self._offsets()[i : i + n]
