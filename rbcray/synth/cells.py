"""The outputs of a synthesized mask besides placement: the instance map and the per-cell table.

Split from engine.py (which places cells); pure functions of what placement recorded.
"""

from __future__ import annotations

import cv2
import numpy as np

from rbcray.synth.shapes import Cell, ShapeBank


def paint_instances(masks: list[np.ndarray], wins: list[tuple[int, int]], W: int, H: int) -> np.ndarray:
    """The uint16 instance map: cell k + 1 painted with ``masks[k]`` at canvas ``wins[k]`` (clipped).

    Cells never overlap, so the painting order is free: top to bottom keeps the rows being written
    in cache (painting while placing would touch a random band of a large canvas per cell).
    """
    inst = np.zeros((H, W), np.uint16)
    copyto = np.copyto
    for k in sorted(range(len(masks)), key=lambda j: wins[j][1]):
        m = masks[k]
        x0, y0 = wins[k]
        h, w = m.shape
        if x0 >= 0 and y0 >= 0 and x0 + w <= W and y0 + h <= H:
            copyto(inst[y0 : y0 + h, x0 : x0 + w], k + 1, where=m.view(bool))
        else:
            ox, oy = max(0, -x0), max(0, -y0)
            ex, ey = min(w, W - x0), min(h, H - y0)
            copyto(inst[y0 + oy : y0 + ey, x0 + ox : x0 + ex], k + 1, where=m[oy:ey, ox:ex].view(bool))
    return inst


def boxes_from_map(cells: dict[str, np.ndarray], inst: np.ndarray) -> None:
    """Set the visible boxes and areas of ``cells`` from the instance map (ids 1..n, every one present)."""
    from scipy import ndimage

    n = len(cells["id"])
    if n == 0:
        return
    sl = ndimage.find_objects(inst.astype(np.int32), max_label=n)
    cells["y0"] = np.array([s[0].start for s in sl], np.int64)
    cells["y1"] = np.array([s[0].stop for s in sl], np.int64)
    cells["x0"] = np.array([s[1].start for s in sl], np.int64)
    cells["x1"] = np.array([s[1].stop for s in sl], np.int64)
    cells["area"] = np.bincount(inst.ravel(), minlength=n + 1)[1:].astype(np.int64)


def cell_table(xs, ys, src, colour, wins, cells: list[Cell], ex, angle, scale, flip_h, flip_v, entry, turn_of,
                bank: ShapeBank, W, H) -> dict[str, np.ndarray]:
    """Per-cell table (see :data:`CELL_COLUMNS`); boxes and areas of the visible part."""
    n = len(xs)
    masks = [c[0] for c in cells]
    x0 = np.array([p[0] for p in wins], dtype=np.int64).reshape(n)
    y0 = np.array([p[1] for p in wins], dtype=np.int64).reshape(n)
    hw = np.array([m.shape for m in masks], dtype=np.int64).reshape(n, 2)
    x1, y1 = x0 + hw[:, 1], y0 + hw[:, 0]
    area = np.array([c.area for c in cells], dtype=np.int64).reshape(n)
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
    # the shape a cell uses: its own augmentation, or a re-used one of this mask (`shape` = that
    # cell's index, `turn` = the grid symmetry applied; see shapes.turn)
    shape = np.asarray(entry, dtype=np.int64)[src] if n else np.zeros(0, np.int64)
    pick = (lambda a, dt: np.asarray(a, dtype=dt)[shape] if n else np.zeros(0, dt))  # noqa: E731
    ex_a = pick(ex, np.int64)
    return {
        "id": np.arange(1, n + 1, dtype=np.int64),
        "x0": bx0, "y0": by0, "x1": bx1, "y1": by1,
        "cx": np.asarray(xs, dtype=np.float64), "cy": np.asarray(ys, dtype=np.float64),
        "area": area,
        "category": bank.category[ex_a],
        "exemplar": bank.exemplar_id[ex_a],
        "angle": pick(angle, np.float64), "scale": pick(scale, np.float64),
        "flip_h": pick(flip_h, bool), "flip_v": pick(flip_v, bool),
        "turn": np.asarray(turn_of, dtype=np.int64)[src] if n else np.zeros(0, np.int64),
        "shape": shape,
        "color": np.asarray(colour, dtype=np.int64),
    }
