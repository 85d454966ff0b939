"""Mask synthesis (paper Sec. 4.1): cell count, shapes, placement, palette colouring, in one pass.

:func:`synthesize` makes one synthetic instance mask from a shape bank and a
:class:`~rbcray.synth.config.SynthConfig`. It is a pure function of (bank, config, seed, index):
all randomness comes from ``np.random.default_rng([seed, index])``, so sample ``index`` is the same
bytes in any process, whatever the batch or actor count.

Per mask: n ~ Norm(cells_mean, cells_std) (rounded, >= 0); per cell a random exemplar of the bank
(uniform over the configured categories) and its augmentation (rotation, scale, flips; see
shapes.py); then the cell's place is drawn from the placement law (placement.py: Eq. 3 or
uniform) until it is *feasible*: the cell overlaps no placed cell, shows at least one pixel on
the canvas, and its touching neighbours (8-connectivity) leave at least one of the K palette
colours free. It then takes a colour uniformly among the free ones. After ``max_tries`` infeasible
draws the cell is given up; more than ``max_unplaced * n`` given-up cells is an error (the density
cannot be placed), so a mask never loops forever.

Speed (benchmarks/bench_masks.py): everything per cell is local to the cell's bounding box. Two
padded canvases are kept: ``lab`` (uint16 instance ids) and ``col`` (the cell's colour as one bit,
1 << c). A draw is rejected first by one pixel read (its centre is occupied), then by
``cv2.minMaxLoc`` of ``col`` under the cell's mask (overlap), and the colours of its neighbours
are one OR-reduction of ``col`` under the cell dilated by one pixel. Cells may stick out of the
canvas (they are cut by the border like real ones); the canvases have a margin so no window is
ever clipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from rbcray.data.formats import PALETTE
from rbcray.errors import DataError
from rbcray.synth.config import SynthConfig
from rbcray.synth.placement import CandidateStream
from rbcray.synth.shapes import ShapeBank

#: Columns of the per-cell table, in order (all arrays of length n_cells, row k = instance k + 1).
CELL_COLUMNS = (
    "id", "x0", "y0", "x1", "y1", "cx", "cy", "area", "category", "exemplar",
    "angle", "scale", "flip_h", "flip_v", "color",
)
_MAX_OFF_CANVAS = 1000  # consecutive adhesive draws off the canvas that count as one failed try


@dataclass
class MaskSample:
    """One synthetic mask and its per-cell table."""

    seed: int
    index: int
    #: uint16 (H, W): 0 background, 1..n cells in placement order
    instances: np.ndarray
    #: palette index per instance id (length n + 1; entry 0 is -1 for the background)
    colors: np.ndarray
    #: per-cell table, see :data:`CELL_COLUMNS`; boxes are (x0, y0, x1, y1), x1/y1 exclusive,
    #: of the visible part; (cx, cy) is the placed location (the kernel centre l_i of Eq. 3)
    cells: dict[str, np.ndarray]
    n_requested: int
    n_unplaced: int
    #: colour canvas (bit 1 << c per cell pixel), kept to build the colour mask cheaply
    _colbits: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def n_cells(self) -> int:
        return len(self.cells["id"])

    @property
    def categories(self) -> dict[int, int]:
        """COCO category id per instance id."""
        return dict(zip(self.cells["id"].tolist(), self.cells["category"].tolist()))

    def color_mask(self) -> np.ndarray:
        """The colour-coded mask, RGB uint8 (H, W, 3): each cell in its palette colour."""
        bits = self._colbits
        if bits.dtype == np.uint8:
            lut = np.zeros((256, 1, 3), np.uint8)
            for c in range(8):
                lut[1 << c, 0] = PALETTE[c]
            return cv2.LUT(cv2.cvtColor(bits, cv2.COLOR_GRAY2RGB), lut.reshape(1, 256, 3))
        lut16 = np.zeros((65536, 3), np.uint8)
        for c in range(16):
            lut16[1 << c] = PALETTE[c]
        return lut16[bits]


def _bank_pool(bank: ShapeBank, categories: tuple[int, ...]) -> tuple[np.ndarray, float]:
    """Exemplar indices of the wanted categories and their mean size (cached on the bank)."""
    cache = bank.__dict__.setdefault("_pools", {})
    key = tuple(sorted(categories))
    if key not in cache:
        pool = np.flatnonzero(np.isin(bank.category, np.asarray(key)))
        if len(pool) == 0:
            have = sorted({int(c) for c in bank.category})
            raise DataError(f"{bank.path}: the shape bank has no cells of categories {list(key)} (it has {have})")
        size = float(np.mean((bank.heights[pool] + bank.widths[pool]) / 2))
        cache[key] = (pool, size)
    return cache[key]


def draw_count(rng: np.random.Generator, cfg: SynthConfig) -> int:
    """n ~ Norm(cells_mean, cells_std), rounded to the nearest integer, at least 0."""
    n = cfg.cells_mean + cfg.cells_std * rng.standard_normal() if cfg.cells_std > 0 else cfg.cells_mean
    return max(0, int(round(n)))


def synthesize(bank: ShapeBank, cfg: SynthConfig, seed: int, index: int, *, _prefilter: bool = True) -> MaskSample:
    """One synthetic mask: sample ``index`` of the run with ``seed`` (see the module docstring).

    ``_prefilter=False`` (tests only) turns off the shortcut rejections; the result is the same bytes.
    """
    rng = np.random.default_rng([int(seed), int(index)])
    pool, pool_size = _bank_pool(bank, cfg.categories)
    W, H, K = cfg.width, cfg.height, cfg.colors
    n_req = draw_count(rng, cfg)
    # per-cell draws, vectorised and in a fixed order
    ex_a = pool[rng.integers(0, len(pool), n_req)]
    rot = rng.random(n_req) < cfg.rotate_prob
    angle = np.where(rot, rng.random(n_req) * 360.0, 0.0).tolist()
    base = cfg.cell_size / pool_size
    scale_a = base * rng.uniform(cfg.scale_min, cfg.scale_max, n_req)
    flip_h = (rng.random(n_req) < cfg.flip_h_prob).tolist()
    flip_v = (rng.random(n_req) < cfg.flip_v_prob).tolist()
    color_u = rng.random(n_req).tolist()
    stream = CandidateStream(rng, cfg.cell_size, cfg.kernel_inner)
    ex, scale = ex_a.tolist(), scale_a.tolist()

    M = bank.max_radius(base * cfg.scale_max) + 2
    lab, col = _workspace((H + 2 * M, W + 2 * M), np.uint8 if K <= 8 else np.uint16)
    Wp = W + 2 * M
    colflat = col.reshape(-1)  # a view: probes read the canvas by flat index
    all_colors = (1 << K) - 1
    allowed = int(math.floor(cfg.max_unplaced * n_req))
    adhesive, n_init, max_tries = cfg.placement == "adhesive", cfg.n_init, cfg.max_tries
    max_draws = max_tries * 20  # off-canvas draws are not tries, but they are bounded too
    augment, probes_of, min_max_loc, or_reduce, copyto, flatnonzero = bank.augment, bank.probes_of, cv2.minMaxLoc, np.bitwise_or.reduce, np.copyto, np.flatnonzero
    XS = np.zeros(max(n_req, 1), np.int64)
    YS = np.zeros(max(n_req, 1), np.int64)
    src: list[int] = []
    colour: list[int] = []
    wins: list[tuple[int, int]] = []
    masks: list[np.ndarray] = []
    unplaced = 0
    placed = 0
    tries_avg = 1.0  # running mean of tries per placed cell: sizes the candidate batches
    for i in range(n_req):
        cell = augment(ex[i], angle[i], scale[i], flip_h[i], flip_v[i])
        m, ax, ay = cell.mask, cell.ax, cell.ay
        mb, dilb = m.view(bool), cell.dil.view(bool)
        h, w = m.shape
        shows_sure = 0 <= ay < h and 0 <= ax < w and m[ay, ax] > 0  # its centre pixel is cell
        centre_in = _prefilter and shows_sure
        probe = None  # flat offsets of probe pixels from a candidate's centre (made when needed)
        use_kernel = adhesive and placed >= n_init
        tries = draws = 0
        # Candidates come one at a time while places are easy to find, else in vectorised batches
        # sized from the recent tries per cell. Either way they are i.i.d. draws tested in draw
        # order and the first feasible one is taken: batching changes the cost, not the law.
        batch = 1 if tries_avg < 1.5 else min(1024, max(16, int(3.0 * tries_avg)))
        done = False
        while tries < max_tries and draws < max_draws:
            nb = min(batch, max_tries - tries)
            batch = min(batch * 2, 1024)
            if nb == 1:
                x, y = stream.adhesive(XS, YS, placed, n_init) if use_kernel else stream.uniform(W, H)
                draws += 1
                if not (0 <= x < W and 0 <= y < H):
                    continue
                cx_l, cy_l = [x], [y]
                ok_idx: list[int] = [] if centre_in and col[y + M, x + M] else [0]
            else:
                if use_kernel:
                    X, Y = stream.adhesive_batch(nb, XS, YS, placed, n_init)
                    on = (X >= 0) & (X < W) & (Y >= 0) & (Y < H)
                    X, Y = X[on], Y[on]
                else:
                    X, Y = stream.uniform_batch(nb, W, H)
                draws += nb
                if len(X) == 0:
                    continue
                if _prefilter:
                    if probe is None:
                        px, py = probes_of(cell)
                        probe = py * Wp + px
                        if centre_in:
                            probe = np.append(probe, 0)
                    bad = colflat[((Y + M) * Wp + (X + M))[:, None] + probe[None, :]].any(axis=1)
                    ok_idx = flatnonzero(~bad).tolist()
                else:
                    ok_idx = list(range(len(X)))
                cx_l, cy_l = X.tolist(), Y.tolist()
            for j in ok_idx:
                x, y = cx_l[j], cy_l[j]
                x0, y0 = x + M - ax, y + M - ay
                if min_max_loc(col[y0 : y0 + h, x0 : x0 + w], m)[1] > 0:
                    continue  # overlaps a placed cell
                if not shows_sure and not _shows(m, x0 - M, y0 - M, W, H):
                    continue  # entirely off the canvas
                free = all_colors & ~int(or_reduce(col[y0 - 1 : y0 + h + 1, x0 - 1 : x0 + w + 1][dilb]))
                if not free:
                    continue  # its neighbours use every colour: re-sample the place (as in the paper)
                c = _pick_bit(free, color_u[i])
                copyto(col[y0 : y0 + h, x0 : x0 + w], 1 << c, where=mb)
                copyto(lab[y0 : y0 + h, x0 : x0 + w], placed + 1, where=mb)
                XS[placed], YS[placed] = x, y
                placed += 1
                src.append(i)
                colour.append(c)
                wins.append((x0 - M, y0 - M))
                masks.append(m)
                tries += j + 1
                done = True
                break
            if done:
                break
            tries += len(cx_l)
        tries_avg = 0.8 * tries_avg + 0.2 * tries
        if not done:
            unplaced += 1
            if unplaced > allowed:
                raise DataError(
                    f"sample {index} (seed {seed}): {unplaced} of {n_req} cells found no free place in {max_tries} tries each "
                    f"on a {W}x{H} canvas (cell size {cfg.cell_size:g} px, {K} colours); the density cannot be placed: "
                    "lower --cells-mean or --cell-size, enlarge the canvas, or raise --colors / max_tries"
                )
    cells = _cell_table(XS[:placed].tolist(), YS[:placed].tolist(), src, colour, wins, masks, ex, angle, scale, flip_h, flip_v, bank, W, H)
    inst = np.ascontiguousarray(lab[M : M + H, M : M + W])
    colors = np.concatenate([[-1], np.asarray(colour, dtype=np.int64)])
    sample = MaskSample(int(seed), int(index), inst, colors, cells, n_req, unplaced)
    sample._colbits = np.ascontiguousarray(col[M : M + H, M : M + W])
    return sample


_WORKSPACE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _workspace(shape: tuple[int, int], col_dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Zeroed label and colour canvases, reused across masks of one process.

    A fresh ``np.zeros`` canvas is mapped lazily: every cell would then page-fault on each of the
    ~50 canvas rows it first touches (dozens of microseconds per cell). Re-zeroing resident
    buffers costs one memset per mask instead. Outputs are copies, so reuse is safe.
    """
    key = (shape, np.dtype(col_dtype).str)
    if key not in _WORKSPACE:
        if len(_WORKSPACE) >= 4:
            _WORKSPACE.clear()
        _WORKSPACE[key] = (np.ones(shape, np.uint16), np.ones(shape, col_dtype))
    lab, col = _WORKSPACE[key]
    lab.fill(0)
    col.fill(0)
    return lab, col


def _shows(m: np.ndarray, x0: int, y0: int, W: int, H: int) -> bool:
    """Whether a cell whose mask's top-left is at canvas (x0, y0) has a pixel on the canvas."""
    h, w = m.shape
    sub = m[max(0, -y0) : max(0, min(h, H - y0)), max(0, -x0) : max(0, min(w, W - x0))]
    return sub.size > 0 and cv2.countNonZero(sub) > 0


def _pick_bit(free: int, u: float) -> int:
    """The floor(u * popcount)-th set bit of ``free`` (a uniform choice among free colours)."""
    r = int(u * bin(free).count("1"))
    c = 0
    while True:
        if free >> c & 1:
            if r == 0:
                return c
            r -= 1
        c += 1


def _cell_table(xs, ys, src, colour, wins, masks, ex, angle, scale, flip_h, flip_v, bank: ShapeBank, W, H) -> dict[str, np.ndarray]:
    """Per-cell table (see :data:`CELL_COLUMNS`); boxes and areas of the visible part."""
    n = len(xs)
    src_a = np.asarray(src, dtype=np.int64)
    x0 = np.array([p[0] for p in wins], dtype=np.int64).reshape(n)
    y0 = np.array([p[1] for p in wins], dtype=np.int64).reshape(n)
    hw = np.array([m.shape for m in masks], dtype=np.int64).reshape(n, 2)
    x1, y1 = x0 + hw[:, 1], y0 + hw[:, 0]
    area = np.array([cv2.countNonZero(m) for m in masks], dtype=np.int64).reshape(n)
    cut = np.flatnonzero((x0 < 0) | (y0 < 0) | (x1 > W) | (y1 > H))
    bx0, by0, bx1, by1 = x0.copy(), y0.copy(), x1.copy(), y1.copy()
    for k in cut.tolist():  # cells cut by the border: box and area of what shows
        m = masks[k]
        ox, oy = max(0, -int(x0[k])), max(0, -int(y0[k]))
        sub = np.ascontiguousarray(m[oy : max(oy, min(m.shape[0], H - int(y0[k]))), ox : max(ox, min(m.shape[1], W - int(x0[k])))])
        bx, by, bw, bh = cv2.boundingRect(sub)
        area[k] = cv2.countNonZero(sub)
        bx0[k], by0[k] = x0[k] + ox + bx, y0[k] + oy + by
        bx1[k], by1[k] = bx0[k] + bw, by0[k] + bh
    ex_a = np.asarray(ex, dtype=np.int64)[src_a] if n else np.zeros(0, np.int64)
    pick = (lambda a, dt: np.asarray(a, dtype=dt)[src_a] if n else np.zeros(0, dt))  # noqa: E731
    return {
        "id": np.arange(1, n + 1, dtype=np.int64),
        "x0": bx0, "y0": by0, "x1": bx1, "y1": by1,
        "cx": np.asarray(xs, dtype=np.float64), "cy": np.asarray(ys, dtype=np.float64),
        "area": area,
        "category": bank.category[ex_a],
        "exemplar": bank.exemplar_id[ex_a],
        "angle": pick(angle, np.float64), "scale": pick(scale, np.float64),
        "flip_h": pick(flip_h, bool), "flip_v": pick(flip_v, bool),
        "color": np.asarray(colour, dtype=np.int64),
    }


def sample_record(s: MaskSample) -> dict[str, Any]:
    """JSON-ready summary of one sample (what a dataset.json record carries)."""
    return {"sample_id": s.index, "seed": s.seed, "n_requested": s.n_requested, "n_unplaced": s.n_unplaced}
