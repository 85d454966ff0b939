"""Literal reference of Eq. 3 (Bailo et al., Sec. 4.1): the reference the fast form is timed against.

For every cell the full-resolution probability map is updated, P(i) = (1 - 1/i) P(i-1) +
(1/i) z(l_{i-1}) (P(n_init + 1) the mean of the first n_init kernels), normalised and sampled
(cumulative sum, then a binary search per try), exactly as the equation reads; the first n_init
centres are uniform. Shapes, overlap rejection and palette colouring follow the same rules as
``rbcray.synth.engine`` (one plain boolean occupancy canvas, no shortcuts), so the two differ only
in how places are drawn. Used by ``bench_masks.py`` at a reduced cell count (equal work per cell).
"""

from __future__ import annotations

import time

import numpy as np

from rbcray.synth.config import SynthConfig
from rbcray.synth.engine import _bank_pool, _pick_bit, draw_count
from rbcray.synth.placement import kernel_map
from rbcray.synth.shapes import ShapeBank


def literal_synthesize(bank: ShapeBank, cfg: SynthConfig, seed: int, index: int, n_cells: int | None = None) -> dict:
    """Place ``n_cells`` (default: the drawn count) cells by the literal Eq. 3; returns timings and the map."""
    rng = np.random.default_rng([seed, index])
    pool, pool_size = _bank_pool(bank, cfg.categories)
    W, H = cfg.width, cfg.height
    n = draw_count(rng, cfg) if n_cells is None else n_cells
    base = cfg.cell_size / pool_size
    M = bank.max_radius(base * cfg.scale_max) + 2
    occ = np.zeros((H + 2 * M, W + 2 * M), np.int32)  # palette bit of the cell covering each pixel
    inst = np.zeros((H + 2 * M, W + 2 * M), np.uint16)
    P = np.zeros((H, W))
    cdf = None
    centres: list[tuple[int, int]] = []
    t_map = 0.0
    cell_seconds = []
    t0 = time.perf_counter()
    for _ in range(n):
        tc = time.perf_counter()
        k = int(pool[rng.integers(len(pool))])
        angle = float(rng.random() * 360.0) if rng.random() < cfg.rotate_prob else 0.0
        cell = bank.augment(k, angle, base * float(rng.uniform(cfg.scale_min, cfg.scale_max)),
                            bool(rng.random() < cfg.flip_h_prob), bool(rng.random() < cfg.flip_v_prob))
        m, dil = cell.mask.astype(bool), cell.dil.astype(bool)
        h, w = m.shape
        placed = len(centres)
        if cfg.placement == "adhesive" and placed >= cfg.n_init:
            tm = time.perf_counter()
            if placed == cfg.n_init:  # P(n_init + 1): mean of the first n_init kernels
                P = np.mean([kernel_map(x, y, W, H, cfg.cell_size * cfg.kernel_scale, cfg.kernel_inner, cfg.kernel_inside == "reverted") for x, y in centres], axis=0)
            else:  # P(i) = (1 - a_i) P(i - 1) + a_i z(l_{i-1}), a_i = 1 / i
                a = 1.0 / (placed + 1)
                P = (1.0 - a) * P + a * kernel_map(*centres[-1], W, H, cfg.cell_size * cfg.kernel_scale, cfg.kernel_inner, cfg.kernel_inside == "reverted")
            cdf = np.cumsum(P.ravel())
            t_map += time.perf_counter() - tm
        for _ in range(cfg.max_tries):
            if cdf is not None and cfg.placement == "adhesive" and placed >= cfg.n_init:
                f = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
                y, x = divmod(min(f, W * H - 1), W)
            else:
                x, y = int(rng.integers(W)), int(rng.integers(H))
            x0, y0 = x + M - cell.ax, y + M - cell.ay
            if (occ[y0 : y0 + h, x0 : x0 + w][m] != 0).any():
                continue
            used = int(np.bitwise_or.reduce(occ[y0 - 1 : y0 + h + 1, x0 - 1 : x0 + w + 1][dil]))
            free = ((1 << cfg.colors) - 1) & ~used
            if not free:
                continue
            c = _pick_bit(free, float(rng.random()))
            occ[y0 : y0 + h, x0 : x0 + w][m] = 1 << c
            inst[y0 : y0 + h, x0 : x0 + w][m] = placed + 1
            centres.append((x, y))
            break
        cell_seconds.append(time.perf_counter() - tc)
    total = time.perf_counter() - t0
    return {"n_cells": n, "placed": len(centres), "seconds": total, "map_seconds": t_map, "cell_seconds": cell_seconds,
            "instances": inst[M : M + H, M : M + W].copy(), "P": P}


if __name__ == "__main__":  # pragma: no cover - a quick manual run
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", required=True)
    ap.add_argument("--cells", type=int, default=60)
    a = ap.parse_args()
    cfg = SynthConfig(width=1920, height=1200, cells_mean=669, cells_std=0, cell_size=46)
    r = literal_synthesize(ShapeBank.load(a.shapes), cfg, 0, 0, n_cells=a.cells)
    print(f"{r['placed']} cells in {r['seconds']:.2f} s ({r['map_seconds']:.2f} s in the map)")
