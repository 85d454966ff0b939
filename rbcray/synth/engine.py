"""Mask synthesis (paper Sec. 4.1): cell count, shapes, placement, palette colouring, in one pass.

:func:`synthesize` makes one synthetic instance mask from a shape bank and a
:class:`~rbcray.synth.config.SynthConfig`. It is a pure function of (bank, config, seed, index):
all randomness comes from ``rbcray.rng.sample_rng(seed, index, MASK)``, so sample ``index`` is the same
bytes in any process, whatever the batch or actor count.

Per mask: n ~ Norm(cells_mean, cells_std) (rounded, >= 0); per cell a random exemplar of the bank
(uniform over the configured categories) and its augmentation (rotation, scale, flips; see
shapes.py); with ``other_cells``, white cells and platelets first, from their own streams (others.py). A mask augments at most ``shapes_per_mask`` shapes and re-uses them, each re-use
turned by a grid symmetry that leaves the augmentation law unchanged (:func:`_turns`). Then the
cell's place is drawn from the placement law (placement.py: Eq. 3 or uniform) until it is
*feasible*: the cell overlaps no placed cell, shows at least one pixel on the canvas, and its
touching neighbours (8-connectivity) leave at least one of the K palette colours free; it takes a
colour uniformly among the free ones. Overlaps and neighbours are judged on visible (on-canvas)
pixels only: placed cells are recorded where they show. With contact placement (contact.py) a
contact cell may overlap placed cells a little; the shared pixels are split along bisectors. After ``max_tries`` infeasible draws the cell is given up;
more than ``max_unplaced * n`` given-up cells is an error (the density cannot be placed), so a
mask never loops forever.

Speed (benchmarks/bench_masks.py): everything per cell is local to the cell's bounding box. One
padded uint8 canvas is kept while placing, ``col``: each cell's colour as one bit (1 << c). A
draw is rejected by one read (off the canvas, or its centre taken), then by a few outline pixels
of the cell ("probes"), then exactly: one ``cv2.minMaxLoc`` of ``col`` under the cell dilated by
one pixel (nothing there: placed, every colour free) or, when something is near, a ``minMaxLoc``
under the cell (overlap) and an OR of the neighbours' colour bits. Draws come one at a time while
places are easy to find and in vectorised batches when they are not; candidates are flat indices
into the padded canvas, so cells cut by the border need no clipping. The instance map is painted
at the end, top to bottom, which keeps the rows being written in cache.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from rbcray.data.formats import PALETTE
from rbcray.errors import DataError
from rbcray.rng import MASK, sample_rng
from rbcray.synth.cells import boxes_from_map, cell_table, paint_instances
from rbcray.synth.config import SynthConfig
from rbcray.synth.contact import neighbour_bits, visible
from rbcray.synth.contact import split as contact_split
from rbcray.synth.others import add_others
from rbcray.synth.placement import CandidateStream
from rbcray.synth.shapes import ROTATIONS_90, Cell, ShapeBank, turn

#: Columns of the per-cell table, in order (all arrays of length n_cells, row k = instance k + 1).
CELL_COLUMNS = (
    "id", "x0", "y0", "x1", "y1", "cx", "cy", "area", "category", "exemplar",
    "angle", "scale", "flip_h", "flip_v", "turn", "shape", "color",
)


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
    #: places tried in all, and places rejected only because no palette colour was free
    n_tries: int = 0
    n_color_rejections: int = 0
    #: colour canvas (bit 1 << c per cell pixel), kept to build the colour mask cheaply
    _colbits: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def n_cells(self) -> int:
        return len(self.cells["id"])

    @property
    def categories(self) -> dict[int, int]:
        """COCO category id per instance id."""
        return dict(zip(self.cells["id"].tolist(), self.cells["category"].tolist()))

    def box_records(self) -> list[dict[str, int]]:
        """Boxes as records ``x0, y0, x1, y1, instance_id, class`` (the shard schema's ``boxes``)."""
        c = self.cells
        cols = [c[k].tolist() for k in ("x0", "y0", "x1", "y1", "id", "category")]
        return [dict(zip(("x0", "y0", "x1", "y1", "instance_id", "class"), row)) for row in zip(*cols)]

    def color_mask(self) -> np.ndarray:
        """The colour-coded mask, RGB uint8 (H, W, 3): each cell in its palette colour."""
        bits = self._colbits
        if bits.dtype == np.uint8:  # a 256-entry colour table applied in one OpenCV call
            lut = np.zeros((256, 1, 3), np.uint8)
            for c in range(8):
                lut[1 << c, 0] = PALETTE[c]
            return cv2.applyColorMap(bits, lut)
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


def _turns(cfg: SynthConfig) -> tuple[int, ...]:
    """Grid symmetries that leave the augmentation law unchanged (applied to re-used shapes).

    With rotation by a uniform angle (rotate_prob 1), turning by a multiple of 90 degrees changes
    nothing in law; a mirror changes nothing either when a cell is mirrored (an odd number of
    flips) with probability 1/2. Otherwise re-used shapes are used as they are.
    """
    if cfg.rotate_prob < 1.0:
        return (0,)
    odd = cfg.flip_h_prob * (1 - cfg.flip_v_prob) + cfg.flip_v_prob * (1 - cfg.flip_h_prob)
    return tuple(range(8)) if abs(odd - 0.5) < 1e-12 else ROTATIONS_90


def synthesize(bank: ShapeBank, cfg: SynthConfig, seed: int, index: int, *, _prefilter: bool = True) -> MaskSample:
    """One synthetic mask: sample ``index`` of the run with ``seed`` (see the module docstring).

    ``_prefilter=False`` (tests only) turns off the shortcut rejections; the result is the same bytes.
    """
    rng = sample_rng(seed, index, MASK)  # rbcray.rng: the mask's own stream, independent of its style draws
    pool, pool_size = _bank_pool(bank, cfg.categories)
    W, H, K = cfg.width, cfg.height, cfg.colors
    n_req = draw_count(rng, cfg)
    # per-cell draws, vectorised and in a fixed order
    ex = pool[rng.integers(0, len(pool), n_req)].tolist()
    rot = rng.random(n_req) < cfg.rotate_prob
    angle = np.where(rot, rng.random(n_req) * 360.0, 0.0).tolist()
    base = cfg.cell_size / pool_size
    scale = (base * rng.uniform(cfg.scale_min, cfg.scale_max, n_req)).tolist()
    flip_h = (rng.random(n_req) < cfg.flip_h_prob).tolist()
    flip_v = (rng.random(n_req) < cfg.flip_v_prob).tolist()
    color_u = rng.random(n_req).tolist()
    n_shapes = n_req if cfg.shapes_per_mask == 0 else min(n_req, cfg.shapes_per_mask)
    entry = list(range(n_shapes)) + rng.integers(0, max(n_shapes, 1), n_req - n_shapes).tolist()
    turns = _turns(cfg)
    turn_of = [0] * n_shapes + [turns[t] for t in rng.integers(0, len(turns), n_req - n_shapes).tolist()]

    ms = bank.max_radius(base * cfg.scale_max) + 2  # how far a cell reaches from its centre
    contact = cfg.contact_prob > 0 and cfg.contact_overlap > 0  # (drawn only then: paper outputs unchanged)
    sticky = (rng.random(n_req) < cfg.contact_prob).tolist() if contact else None
    order: Any = range(n_req)
    if cfg.other_cells:  # white cells and platelets: their own streams, placed first (others.py)
        lists = {"ex": ex, "angle": angle, "scale": scale, "flip_h": flip_h, "flip_v": flip_v, "color_u": color_u,
                 "entry": entry, "turn_of": turn_of, "sticky": sticky}
        n_req, order = add_others(bank, cfg, seed, index, base, n_req, lists, _bank_pool)
    stream = CandidateStream(rng, cfg.cell_size * cfg.kernel_scale, cfg.kernel_inner, W, H, 0, 0, cfg.n_init, n_req,
                             reverted=cfg.kernel_inside == "reverted")
    M = ms + stream.reach + 1  # canvas margin: no cell, draw or probe of a draw ever leaves it
    Wp = W + 2 * M
    stream.M, stream.row = M, Wp
    stream.uniform_only = cfg.placement == "uniform"
    col, inv = _workspace(H, W, M, ms, np.uint8 if K <= 8 else np.uint16)
    # contact mode: who owns each pixel (visible only), the placed centres and current areas
    ids = np.zeros(col.shape, np.int32) if contact else None
    centres = np.zeros((n_req, 2)) if contact else None
    areas = np.zeros(n_req, np.int64) if contact else None
    x_lo, y_lo, x_hi, y_hi = M, M, M + W, M + H  # the visible canvas in the padded frame
    colflat, invflat = col.reshape(-1), inv.reshape(-1)  # views: candidates read them by flat index
    all_colors = (1 << K) - 1
    allowed = int(math.floor(cfg.max_unplaced * n_req))
    adhesive, n_init, max_tries = cfg.placement == "adhesive", cfg.n_init, cfg.max_tries
    augment, probes_of, min_max_loc, or_reduce, copyto = bank.augment, bank.probes_of, cv2.minMaxLoc, np.bitwise_or.reduce, np.copyto
    draw_one, draw_uniform, draw_batch, draw_uniform_batch = stream.adhesive, stream.uniform, stream.adhesive_batch, stream.uniform_batch
    add_centre = stream.add
    xs: list[int] = []
    ys: list[int] = []
    src: list[int] = []
    colour: list[int] = []
    wins: list[tuple[int, int]] = []
    cells_used: list[Cell] = []
    shapes: dict[int, Cell] = {}  # augmented shapes by cell index (re-used ones refer to them)
    unplaced = placed = color_rejections = total_tries = 0
    tries_avg = 1.0  # running mean of tries per cell: how candidates are drawn (cost, not law)
    probe_of: dict[int, list[list[int]]] = {}  # probe offsets (x, y) per shape, when needed
    probe_flat: dict[tuple[int, int], np.ndarray] = {}  # ... as flat offsets, per (shape, turn)
    turned: dict[tuple[int, int], Cell] = {}  # turned shapes, per (shape, turn)
    for i in order:
        e = entry[i]
        if e == i:  # its own augmentation (re-used shapes point to an earlier cell)
            cell = shapes[i] = augment(ex[i], angle[i], scale[i], flip_h[i], flip_v[i])
        else:  # a re-used shape of this mask, turned by a law-preserving grid symmetry
            key = (e, turn_of[i])
            cell = turned.get(key)
            if cell is None:
                cell = turned[key] = turn(shapes[e], key[1])
        m, dil, ax, ay = cell[0], cell[1], cell[2], cell[3]
        dilb = dil.view(bool)
        h, w = m.shape
        shows_sure = cell.centre_in  # its centre pixel is cell, and the centre is on the canvas
        centre_in = _prefilter and shows_sure
        probe = None  # flat offsets of probe pixels from a candidate's centre (made when needed)
        touchy = contact and sticky[i]  # may press against placed cells (no probe prefilter then)
        use_kernel = adhesive and placed >= n_init
        # Candidates: a few one at a time while places are easy to find, then vectorised batches
        # sized from the recent tries per cell. Either way they are i.i.d. draws tested in draw
        # order, the first feasible one taken: this changes the cost, not the law. Draws off the
        # canvas count as tries (they are infeasible places).
        n_scalar = 4 if tries_avg < 6.0 else 0
        batch = min(1024, max(8, int(1.5 * tries_avg)))
        tries = 0
        done = False
        while tries < max_tries:
            if n_scalar:
                n_scalar -= 1
                f = draw_one() if use_kernel else draw_uniform()
                tries += 1
                if invflat[f] or (centre_in and colflat[f]):
                    continue
                cand = ((0, f),)
                base_tries = tries - 1
            else:
                nb = min(batch, max_tries - tries)
                batch = min(batch * 2, 1024)
                F = draw_batch(nb) if use_kernel else draw_uniform_batch(nb)
                if _prefilter:
                    # shortcut rejections, cheapest first: off the canvas or centre taken (one
                    # read each), then a few outline pixels of the cell (probes) for the rest
                    if use_kernel:
                        bad = invflat[F] | colflat[F] if centre_in else invflat[F]
                        keep = (bad == 0).nonzero()[0]
                    else:  # uniform places are all on the canvas
                        keep = (colflat[F] == 0).nonzero()[0] if centre_in else np.arange(nb)
                    if len(keep):
                        if probe is None:
                            key = (e, turn_of[i])
                            probe = probe_flat.get(key)
                            if probe is None:
                                pxy = probe_of.get(e)
                                if pxy is None:
                                    pxy = probe_of[e] = [p.tolist() for p in probes_of(shapes[e])]
                                d = key[1]
                                px, py = (pxy[1], pxy[0]) if d & 1 else pxy
                                sx, sy = (-1 if d & 2 else 1), (-Wp if d & 4 else Wp)
                                probe = probe_flat[key] = np.array([sy * v + sx * u for u, v in zip(px, py)], np.int64)
                        if len(probe) and not touchy:
                            keep = keep[~colflat[F[keep][:, None] + probe].any(axis=1)]
                else:
                    keep = (invflat[F] == 0).nonzero()[0] if use_kernel else np.arange(nb)
                cand = zip(keep.tolist(), F[keep].tolist())
                base_tries = tries
                tries += nb
            for j, f in cand:
                y0, x0 = divmod(f, Wp)
                y0 -= ay
                x0 -= ax
                around = col[y0 - 1 : y0 + h + 1, x0 - 1 : x0 + w + 1]
                cut = x0 < x_lo or y0 < y_lo or x0 + w > x_hi or y0 + h > y_hi
                split = None
                if min_max_loc(around, dil)[1] == 0:
                    free = all_colors  # nothing under the cell or next to it (the usual case)
                else:
                    # placed cells are painted on visible pixels only: overlaps and touching
                    # neighbours are judged where the cell shows
                    if min_max_loc(col[y0 : y0 + h, x0 : x0 + w], m)[1] > 0:
                        if not touchy:
                            continue  # overlaps a placed cell
                        split = contact_split(col, ids, visible(m, x0, y0, M, W, H), x0, y0, f % Wp, f // Wp,
                                              centres, areas, cfg.contact_overlap, M, W, H)
                        if split is None:
                            continue  # overlaps too deep
                        free = all_colors & ~split.neighbour_bits
                    elif cut:
                        free = all_colors & ~neighbour_bits(col, visible(m, x0, y0, M, W, H), x0, y0)
                    else:
                        free = all_colors & ~int(or_reduce(around[dilb]))
                    if not free:
                        color_rejections += 1
                        continue  # its neighbours use every colour: re-sample the place (as in the paper)
                if not shows_sure and not _shows(m, x0 - M, y0 - M, W, H):
                    continue  # entirely off the canvas
                c = int(color_u[i] * K) if free == all_colors else _pick_bit(free, color_u[i])
                if split is not None:
                    pm = split.mask
                    for j, k in split.losers.items():
                        areas[j - 1] -= k
                elif cut:
                    pm = visible(m, x0, y0, M, W, H)
                else:
                    pm = m
                copyto(col[y0 : y0 + h, x0 : x0 + w], 1 << c, where=pm.view(bool))
                if contact:
                    copyto(ids[y0 : y0 + h, x0 : x0 + w], placed + 1, where=pm.view(bool))
                    centres[placed] = (f % Wp, f // Wp)
                    areas[placed] = cv2.countNonZero(pm)
                xs.append(x0 + ax - M)
                ys.append(y0 + ay - M)
                add_centre(f)
                placed += 1
                src.append(i)
                colour.append(c)
                wins.append((x0 - M, y0 - M))
                cells_used.append(cell)
                tries = base_tries + j + 1
                done = True
                break
            if done:
                break
        tries_avg = 0.8 * tries_avg + 0.2 * tries
        total_tries += tries
        if not done:
            unplaced += 1
            if unplaced > allowed:
                raise DataError(
                    f"sample {index} (seed {seed}): {unplaced} of {n_req} cells found no free place in {max_tries} tries each "
                    f"on a {W}x{H} canvas (cell size {cfg.cell_size:g} px, {K} colours); the density cannot be placed: "
                    "lower --cells-mean or --cell-size, enlarge the canvas, or raise --colors / max_tries"
                )
    cells = cell_table(xs, ys, src, colour, wins, cells_used, ex, angle, scale, flip_h, flip_v, entry, turn_of, bank, W, H)
    if contact:  # cells changed by splits: the instance map is the id canvas; boxes and areas from it
        inst = ids[M : M + H, M : M + W].astype(np.uint16)
        boxes_from_map(cells, inst)
    else:
        inst = paint_instances([c[0] for c in cells_used], wins, W, H)
    colors = np.concatenate([[-1], np.asarray(colour, dtype=np.int64)])
    sample = MaskSample(int(seed), int(index), inst, colors, cells, n_req, unplaced, total_tries, color_rejections)
    sample._colbits = np.ascontiguousarray(col[M : M + H, M : M + W])
    return sample


_LOCAL = threading.local()  # per-thread workspaces: synthesize may run in several threads at once


def _workspace(H: int, W: int, M: int, ms: int, col_dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """The zeroed colour canvas and the off-canvas lookup, reused across masks of a thread.

    A fresh ``np.zeros`` canvas is mapped lazily: every cell would then page-fault on each of the
    ~50 canvas rows it first touches (dozens of microseconds per cell). Re-zeroing a resident
    buffer costs one memset per mask instead, and only where cells can reach (``ms`` around the
    canvas). Outputs are copies, so reuse is safe.
    """
    cache = _LOCAL.__dict__.setdefault("workspaces", {})
    key = (H, W, M, np.dtype(col_dtype).str)
    if key not in cache:
        if len(cache) >= 4:
            cache.clear()
        shape = (H + 2 * M, W + 2 * M)
        inv = np.ones(shape, np.uint8)
        inv[M : M + H, M : M + W] = 0
        col = np.ones(shape, col_dtype)
        col.fill(0)
        cache[key] = (col, inv)
    col, inv = cache[key]
    col[M - ms : M + H + ms, M - ms : M + W + ms].fill(0)
    return col, inv


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


def sample_record(s: MaskSample) -> dict[str, Any]:
    """JSON-ready summary of one sample (what a dataset.json record carries)."""
    return {"sample_id": s.index, "seed": s.seed, "n_requested": s.n_requested, "n_unplaced": s.n_unplaced}
