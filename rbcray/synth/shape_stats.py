"""Shape descriptors of single cells, and the shape-realism comparison of a bank against real cells.

Four descriptors per cell (binary crop): ``area`` (pixels), ``roundness`` = perimeter² / area
(4π ≈ 12.6 for a disc, larger for elongated or ragged outlines; the perimeter is OpenCV's contour
length through boundary pixel centres), ``eccentricity`` of the cell's second-moment ellipse
(0 = circle) and ``solidity`` (area / convex-hull area, see :func:`rbcray.synth.shapes.solidity`).

:func:`isolated_whole_cells` cuts the real reference set: cells of real instance maps that are
whole (not cut by the border) and isolated (no other cell 8-connected to them) — the population a
clean bank is drawn from, so the held-out images' such cells are what bank-sampled synthetic cells
are measured against (:func:`shape_ks`).
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

FEATURES = ("area", "roundness", "eccentricity", "solidity")


def features(crop: np.ndarray) -> tuple[float, float, float, float]:
    """(area, perimeter² / area, eccentricity, solidity) of one binary crop."""
    from rbcray.synth.shapes import solidity

    m = (crop > 0).astype(np.uint8)
    area = float(cv2.countNonZero(m))
    if area == 0:
        return 0.0, float("nan"), float("nan"), 0.0
    contours, _ = cv2.findContours(np.pad(m, 1), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    per = float(sum(cv2.arcLength(c, True) for c in contours))
    mo = cv2.moments(m, binaryImage=True)
    mu20, mu02, mu11 = mo["mu20"] / area, mo["mu02"] / area, mo["mu11"] / area
    common = np.sqrt(max(0.0, (mu20 - mu02) ** 2 + 4 * mu11 * mu11))
    l1, l2 = (mu20 + mu02 + common) / 2, (mu20 + mu02 - common) / 2
    ecc = float(np.sqrt(max(0.0, 1.0 - l2 / l1))) if l1 > 0 else 0.0
    return area, per * per / area, ecc, solidity(m)


def feature_table(crops: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
    """The descriptors of many crops, one array per name in :data:`FEATURES`."""
    rows = [features(c) for c in crops]
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    return {k: arr[:, i] for i, k in enumerate(FEATURES)}


def cell_crops(inst: np.ndarray, *, whole: bool = True, isolated: bool = True) -> list[tuple[int, np.ndarray, bool, bool]]:
    """``(id, crop, is_whole, is_isolated)`` of each cell of an instance map, filtered as asked."""
    from scipy import ndimage

    lab = inst.astype(np.int32)
    h, w = lab.shape
    out = []
    for k, sl in enumerate(ndimage.find_objects(lab)):
        if sl is None:
            continue
        cid = k + 1
        sy, sx = sl
        is_whole = not (sy.start == 0 or sx.start == 0 or sy.stop == h or sx.stop == w)
        # isolated: nothing but this cell or background in its 3x3 dilation
        y0, y1, x0, x1 = max(0, sy.start - 1), min(h, sy.stop + 1), max(0, sx.start - 1), min(w, sx.stop + 1)
        win = lab[y0:y1, x0:x1]
        me = (win == cid).astype(np.uint8)
        ring = cv2.dilate(me, np.ones((3, 3), np.uint8)).view(bool)
        vals = win[ring]
        is_isolated = bool(((vals == 0) | (vals == cid)).all())
        if (whole and not is_whole) or (isolated and not is_isolated):
            continue
        out.append((cid, (lab[sl] == cid), is_whole, is_isolated))
    return out


def isolated_whole_cells(ds, stems: Iterable[str] | None = None, category: int = 1) -> list[np.ndarray]:
    """Crops of the whole, isolated cells of ``category`` in the given samples of a dataset folder."""
    want = set(stems) if stems is not None else None
    crops = []
    for rec in ds.samples:
        if want is not None and rec["stem"] not in want:
            continue
        inst = ds.load_instances(rec["stem"])
        cats = ds.load_categories(rec["stem"])
        crops += [c for cid, c, _, _ in cell_crops(inst) if int(cats.get(cid, 1)) == category]
    return crops


def shape_ks(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """Two-sample KS distance per descriptor between two feature tables."""
    from scipy.stats import ks_2samp

    out = {}
    for k in FEATURES:
        x, y = a[k][np.isfinite(a[k])], b[k][np.isfinite(b[k])]
        out[k] = float(ks_2samp(x, y).statistic) if len(x) and len(y) else float("nan")
    return out


def exemplar_page(bank, path, n: int = 64, seed: int = 0, tile: int = 64) -> int:
    """Write a PNG grid of ``n`` random bank exemplars (each centred in a ``tile`` px square, scaled
    down only when larger), to see what the synthetic cells are made of; returns how many it drew."""
    from rbcray.io import atomic_write_bytes, encode_png

    k = min(n, len(bank))
    idx = np.sort(np.random.default_rng(seed).choice(len(bank), k, replace=False))
    cols = int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / cols))
    page = np.full((rows * tile, cols * tile), 255, np.uint8)
    for j, i in enumerate(idx.tolist()):
        c = bank.crops[i]
        f = min(1.0, (tile - 4) / max(c.shape))
        if f < 1.0:
            c = cv2.resize(c, (max(1, int(c.shape[1] * f)), max(1, int(c.shape[0] * f))), interpolation=cv2.INTER_AREA)
        h, w = c.shape
        y0 = (j // cols) * tile + (tile - h) // 2
        x0 = (j % cols) * tile + (tile - w) // 2
        page[y0 : y0 + h, x0 : x0 + w] = np.where(c > 127, 40, 255)
    atomic_write_bytes(path, encode_png(page))
    return k
