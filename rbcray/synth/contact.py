"""Contact placement (beyond the paper): cells that press against each other, split along bisectors.

The paper's rule rejects every proposal that overlaps a placed cell, so synthetic cells touch only
when a proposal happens to land exactly side by side (about 0.2 of cells touch another on Chula-size
masks, against about 0.44 in derived real masks, docs/masks.md). In a real smear cells press
together and deform; derived real masks split a touching pair along a shared boundary.

With ``contact_prob`` p > 0, each cell is a *contact* cell with probability p (drawn once per cell).
A contact cell's proposal that overlaps placed cells is still accepted when

* its centre pixel is not inside a placed cell (as for every cell: the prefilter's one read),
* the overlapped pixels are at most ``contact_overlap`` of its own area, and
* every neighbour it overlaps keeps at least ``1 - contact_overlap`` of its own area,

and then the shared pixels are split along the perpendicular bisector of the two centres (the
placed locations l_i): each overlapped pixel goes to the nearer centre (ties stay with the placed
cell). Two convex cells cut by a half-plane stay convex, so instances stay disjoint, connected
and share a boundary, as derived real masks do. The colour is then chosen as for every cell, among
those none of its 8-connected neighbours (after the split) has. Non-contact cells keep the paper's
rule. Everything is local to the cell's box and judged on visible (on-canvas) pixels only.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

_K3 = np.ones((3, 3), np.uint8)


class Split(NamedTuple):
    """An accepted contact proposal: the new cell's pixels after the split, and its neighbours' colours."""

    #: uint8 0/1 (h, w): the new cell's visible pixels after the bisector split
    mask: np.ndarray
    #: OR of the colour bits of every cell 8-connected to the new cell after the split
    neighbour_bits: int
    #: instance ids that lose pixels to the new cell, and how many each
    losers: dict[int, int]


def visible(m: np.ndarray, x0: int, y0: int, M: int, W: int, H: int) -> np.ndarray:
    """``m`` (top-left at padded (x0, y0)) with its off-canvas pixels cleared (a copy when cut)."""
    h, w = m.shape
    if x0 >= M and y0 >= M and x0 + w <= M + W and y0 + h <= M + H:
        return m
    v = np.zeros_like(m)
    ya, yb = max(0, M - y0), max(0, min(h, M + H - y0))
    xa, xb = max(0, M - x0), max(0, min(w, M + W - x0))
    if ya < yb and xa < xb:
        v[ya:yb, xa:xb] = m[ya:yb, xa:xb]
    return v


def neighbour_bits(col: np.ndarray, m: np.ndarray, x0: int, y0: int) -> int:
    """OR of the colour bits of ``col`` on pixels 8-connected to ``m`` but not in it (padded frame)."""
    h, w = m.shape
    pad = np.zeros((h + 2, w + 2), np.uint8)
    pad[1:-1, 1:-1] = m
    ring = cv2.dilate(pad, _K3).view(bool) & ~pad.view(bool)
    around = col[y0 - 1 : y0 + h + 1, x0 - 1 : x0 + w + 1]
    return int(np.bitwise_or.reduce(around[ring])) if ring.any() else 0


def split(col: np.ndarray, ids: np.ndarray, m: np.ndarray, x0: int, y0: int, cx: float, cy: float,
          centres: np.ndarray, areas: np.ndarray, max_overlap: float, M: int, W: int, H: int) -> Split | None:
    """Try a contact proposal: the cell ``m`` (visible pixels) with top-left at padded (x0, y0), centre
    (cx, cy) in padded coordinates; ``ids`` is the padded instance canvas (0 = free), ``centres``
    the placed centres (row id - 1, padded x, y) and ``areas`` their current visible areas.

    Returns the split (see the module docstring), or ``None`` when the proposal is rejected.
    """
    h, w = m.shape
    win = ids[y0 : y0 + h, x0 : x0 + w]
    mb = m.view(bool)
    ov = mb & (win > 0)
    ys, xs = np.nonzero(ov)
    n_ov = len(ys)
    area = int(np.count_nonzero(mb))
    if n_ov == 0 or area == 0:
        return None
    if n_ov > max_overlap * area:
        return None
    owner = win[ys, xs].astype(np.int64)
    px, py = xs + x0, ys + y0
    ox, oy = centres[owner - 1, 0], centres[owner - 1, 1]
    to_new = (px - cx) ** 2 + (py - cy) ** 2 < (px - ox) ** 2 + (py - oy) ** 2
    lost = np.bincount(owner[to_new], minlength=len(centres) + 1)
    hit = np.unique(owner)
    depth = np.bincount(owner, minlength=len(centres) + 1)
    for j in hit.tolist():
        if depth[j] > max_overlap * areas[j - 1] or lost[j] >= areas[j - 1]:
            return None  # the neighbour would be pressed too deep (or vanish)
    m2 = m.copy()
    m2[ys[~to_new], xs[~to_new]] = 0  # pixels that stay with the placed cell
    if not m2.any():
        return None
    # neighbours after the split: the ring around the new cell, where taken pixels count as its own
    bits = neighbour_bits(col, m2, x0, y0)
    return Split(m2, bits, {int(j): int(lost[j]) for j in hit.tolist() if lost[j]})
