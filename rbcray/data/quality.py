"""Annotation quality: how well derived instance masks agree with the sources' partial labels.

Neither public source has instance masks (paper Sec. 3 had them), so ``rbcray annotate`` derives
them and these metrics measure the result against what the sources do have: Chula-RBC-12 point
labels (one point inside each labelled cell) and BCCD-TXL bounding boxes. The functions are pure
(arrays in, numbers out) and shared by ``benchmarks/bench_annotate.py`` and the tests. Labels are
only ever used here, never by the segmentation itself.
"""

from __future__ import annotations

import numpy as np

from rbcray.data.formats import instance_boxes


def point_quality(inst: np.ndarray, points: np.ndarray, cut_radius: float | None = None) -> dict[str, float | int]:
    """Compare an instance map with point labels (one point per labelled cell).

    ``points`` is an (N, >=2) array whose first two columns are pixel x, y (extra columns, e.g. a
    class, are ignored); points outside the image are clamped to its edge. Cells never overlap in
    an instance map, so a point lies in zero or one cell. Returns:

    - ``n_points``: N;
    - ``in_cell``: fraction of points inside some derived cell;
    - ``one_to_one``: fraction of points inside a derived cell that holds no other labelled point
      (a point in a cell shared with another point means two labelled cells were merged);
    - ``background``: fraction of points on background (``in_cell + background == 1``);
    - ``shared``: fraction of points in a cell holding two or more points (``in_cell - one_to_one``);
    - ``n_cells``: number of derived cells (labels are partial, so this is not a precision);
    - ``near_cut`` (only with ``cut_radius``): fraction of points inside a cell with a pixel of
      another cell within ``cut_radius`` px. Points mark cell centres, so this flags cells cut in
      two (over-splitting), which the other figures do not see; a radius of ~0.2 cell diameters
      stays clear of the boundary between genuinely touching cells.

    All fractions are 1.0 (background 0.0) for N = 0.
    """
    pts = np.asarray(points)
    n_cells = int(len(np.unique(inst[inst > 0])))
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise ValueError(f"points must be an (N, >=2) array of x, y; got shape {pts.shape}")
    n = len(pts)
    if n == 0:
        empty = {"n_points": 0, "in_cell": 1.0, "one_to_one": 1.0, "background": 0.0, "shared": 0.0, "n_cells": n_cells}
        return {**empty, "near_cut": 0.0} if cut_radius is not None else empty
    h, w = inst.shape
    x = np.clip(np.round(pts[:, 0]).astype(np.int64), 0, w - 1)
    y = np.clip(np.round(pts[:, 1]).astype(np.int64), 0, h - 1)
    ids = inst[y, x].astype(np.int64)
    inside = ids > 0
    uniq, counts = np.unique(ids[inside], return_counts=True)
    per_cell = dict(zip(uniq.tolist(), counts.tolist()))
    alone = np.array([inside[k] and per_cell[int(ids[k])] == 1 for k in range(n)])
    extra: dict[str, float] = {}
    if cut_radius is not None:
        r = max(1, int(np.ceil(cut_radius)))
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        disc = (yy * yy + xx * xx) <= cut_radius * cut_radius
        near = np.zeros(n, bool)
        for k in np.nonzero(inside)[0]:
            y0, y1, x0, x1 = y[k] - r, y[k] + r + 1, x[k] - r, x[k] + r + 1
            win = inst[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)]
            m = disc[max(y0, 0) - y0 : disc.shape[0] - (y1 - min(y1, h)), max(x0, 0) - x0 : disc.shape[1] - (x1 - min(x1, w))]
            v = win[m]
            near[k] = bool(((v > 0) & (v != ids[k])).any())
        extra["near_cut"] = float(near.mean())
    return {
        "n_points": n,
        "in_cell": float(inside.mean()),
        "one_to_one": float(alone.mean()),
        "background": float((~inside).mean()),
        "shared": float(inside.mean() - alone.mean()),
        "n_cells": n_cells,
        **extra,
    }


def median_cell_diameter(inst: np.ndarray) -> float:
    """Median equivalent-circle diameter (px) of the cells of an instance map (0 when empty)."""
    counts = np.bincount(inst.ravel())[1:]
    counts = counts[counts > 0]
    return float(2.0 * np.sqrt(np.median(counts) / np.pi)) if len(counts) else 0.0


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of boxes given as (x0, y0, x1, y1) floats."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def greedy_match(iou: np.ndarray, thr: float) -> list[tuple[int, int]]:
    """One-to-one matching: repeatedly take the highest remaining IoU pair with IoU >= ``thr``.

    Returns (row, col) pairs. Greedy-by-IoU is how COCO/VOC evaluation assigns detections; it
    can miss a match the Hungarian method would find only in rare chains of near-equal IoUs.
    """
    pairs: list[tuple[int, int]] = []
    if iou.size == 0:
        return pairs
    rows, cols = np.nonzero(iou >= thr)
    order = np.argsort(-iou[rows, cols], kind="stable")
    used_r: set[int] = set()
    used_c: set[int] = set()
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r in used_r or c in used_c:
            continue
        used_r.add(r)
        used_c.add(c)
        pairs.append((r, c))
    return pairs


def box_recall(
    inst: np.ndarray,
    boxes_xyxy: np.ndarray,
    iou: float = 0.5,
    cell_ids: np.ndarray | None = None,
) -> tuple[int, int]:
    """How many labelled boxes a derived cell's bounding box matches with IoU >= ``iou``.

    ``boxes_xyxy`` is (N, 4) pixel boxes (x0, y0, x1, y1, exclusive ends like
    :func:`rbcray.data.formats.instance_boxes`). Matching is one-to-one, greedy by IoU
    (:func:`greedy_match`). ``cell_ids`` restricts the derived cells that may match (e.g. only
    those categorised RBC); default all. Returns (matched, total).
    """
    gt = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    if len(gt) == 0:
        return 0, 0
    ids, boxes = instance_boxes(inst)
    if cell_ids is not None:
        keep = np.isin(ids, np.asarray(cell_ids))
        boxes = boxes[keep]
    if len(boxes) == 0:
        return 0, len(gt)
    return len(greedy_match(box_iou(gt, boxes), iou)), len(gt)
