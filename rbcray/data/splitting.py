"""Splitting touching and overlapping cells: markers, watershed flooding, k-means fallback.

Part of ``rbcray annotate`` (deriving the instance masks Bailo et al. take as given, Sec. 3): the
foreground of a smear is a set of blobs, each holding one or more cells. Per blob, markers are
the h-maxima of the distance transform (plus central-pallor blobs when enabled), thinned by
non-maximum suppression; a non-convex blob with fewer markers than its area implies is re-marked
with smaller h, and, when its distance transform has no saddle at all, split by k-means on pixel
positions. Blobs with several markers are split by a level-wise flooding of the distance
transform (a marker watershed). Pure NumPy/OpenCV/SciPy, deterministic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
from scipy import ndimage as ndi

if TYPE_CHECKING:
    from rbcray.data.annotate import AnnotateConfig

_EIGHT = np.ones((3, 3), dtype=bool)


def disc(radius: float) -> np.ndarray:
    """Elliptic structuring element of the given radius in px (at least 1)."""
    r = max(1, int(round(radius)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def reconstruct(marker: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Greyscale reconstruction by dilation of ``marker`` under ``mask`` (8-connected)."""
    rec = np.minimum(marker, mask)
    k = np.ones((3, 3), np.uint8)
    while True:
        for _ in range(8):
            rec = np.minimum(cv2.dilate(rec, k), mask)
        nxt = np.minimum(cv2.dilate(rec, k), mask)
        if np.array_equal(nxt, rec):
            return rec
        rec = nxt


def h_maxima(f: np.ndarray, h: float) -> np.ndarray:
    """Mask of the regional maxima of ``f`` whose dynamic (height above the saddle to a higher
    peak) is at least ``h``: the tops of the h-dome transform ``f - R(f - h)``."""
    dome = f - reconstruct(f - h, f)
    return (dome >= h - 1e-3) & (f > 0)


def select_markers(
    peaks: np.ndarray, dist: np.ndarray, min_dist: float, seeds: np.ndarray | None = None, seed_dist: float = 0.0
) -> tuple[np.ndarray, int]:
    """Label candidate markers and keep a subset at least ``min_dist`` px apart (greedy NMS).

    ``seeds`` (a mask of pallor blobs) go first, largest first; then the ``peaks`` regions, deepest
    first; a peak also needs ``seed_dist`` px from every kept seed (a pallor marks the cell's centre
    better than its distance peak). Suppression, not transitive merging: a chain of close peaks
    along the ridge of overlapping cells must not fuse a whole clump into one marker. Positions
    are region centroids, depths region means (bincounts: ndimage's per-label max is slow).
    Returns (labels 1..n, n).
    """
    plab, npk = ndi.label(peaks, structure=_EIGHT)
    if seeds is not None and seeds.any():
        slab, ns = ndi.label(seeds, structure=_EIGHT)
    else:
        slab, ns = np.zeros_like(plab), 0
    if ns + npk == 0:
        return plab, 0
    lab = np.where(slab > 0, slab, np.where(plab > 0, plab + ns, 0))
    cands: list[tuple[float, int, np.ndarray]] = []  # (priority, label, position)
    rows, cols = np.indices(lab.shape)
    flat = lab.ravel()
    cnt = np.maximum(np.bincount(flat, minlength=ns + npk + 1), 1)
    centre = np.stack([np.bincount(flat, rows.ravel(), ns + npk + 1), np.bincount(flat, cols.ravel(), ns + npk + 1)], 1) / cnt[:, None]
    depth = np.bincount(flat, dist.ravel().astype(np.float64), ns + npk + 1) / cnt
    cands += [(-1e9 - float(cnt[k]), k, centre[k]) for k in range(1, ns + 1)]
    cands += [(-float(depth[k]), k, centre[k]) for k in range(ns + 1, ns + npk + 1)]
    cands.sort(key=lambda c: (c[0], c[1]))
    kept: list[tuple[int, np.ndarray]] = []
    for _, lid, p in cands:
        ok = True
        for qid, q in kept:
            # Labels 1..ns are seeds: a peak keeps a wider berth from a seed than from a peak.
            r = max(min_dist, seed_dist) if qid <= ns < lid else min_dist
            if (p - q) @ (p - q) < r * r:
                ok = False
                break
        if ok:
            kept.append((lid, p))
    lut = np.zeros(ns + npk + 1, dtype=np.int64)
    for k, (lid, _) in enumerate(sorted(kept, key=lambda t: t[0]), start=1):
        lut[lid] = k
    return lut[lab], len(kept)


def solidity(comp: np.ndarray, smooth: float) -> float:
    """Area over convex-hull area of a blob's outline after an opening of radius ``smooth`` px
    (which removes the spikes of crenated cells, so only large-scale concavities such as the
    waist between two overlapping cells count); 0 when the opening cuts the blob apart. Uses
    polygon areas, not pixel counts, which overstate the solidity of small shapes."""
    m = comp.astype(np.uint8)
    if smooth >= 1:
        p = int(round(smooth)) + 1
        m = cv2.copyMakeBorder(m, p, p, p, p, cv2.BORDER_CONSTANT, value=0)
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, disc(smooth))
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return 1.0
    areas = sorted((cv2.contourArea(c) for c in contours), reverse=True)
    if len(areas) > 1 and areas[1] > 0.1 * areas[0]:
        return 0.0  # the opening cut the blob at a narrow waist: several cells
    c = max(contours, key=cv2.contourArea)
    hull = cv2.contourArea(cv2.convexHull(c))
    return float(cv2.contourArea(c) / hull) if hull > 0 else 1.0


def expected_cells(comp: np.ndarray, area: float, cell_area: float, convex: float, smooth: float) -> int:
    """How many cells a connected foreground blob probably holds: one when it is convex (a lone
    round or oval cell, however big; see :func:`solidity`), else its area over that of a typical
    cell, rounded."""
    if solidity(comp, smooth) >= convex:
        return 1
    return max(1, int(round(area / cell_area)))


def flood(dist: np.ndarray, mask: np.ndarray, markers: np.ndarray, step: float = 0.5) -> np.ndarray:
    """Marker watershed of ``-dist`` inside ``mask`` by level-wise flooding.

    From the deepest level (largest distance) outwards in steps of ``step`` px, every labelled
    region grows (8-connected geodesic dilation) into the unlabelled mask pixels at or above the
    current level until nothing changes; where two regions reach a pixel in the same step the
    higher label takes it (deterministic). Every mask pixel connected to a marker ends labelled.
    (SciPy's ``watershed_ift`` floods by arc differences, not by level, and splits the
    shallow-saddle blobs of overlapping cells wrongly, hence this routine.)
    """
    lab = np.where(mask, markers, 0).astype(np.float32)  # labels < 2**24 are exact in float32
    k = np.ones((3, 3), np.uint8)
    top = float(dist[mask].max()) if mask.any() else 0.0
    for t in [*np.arange(top, 0.0, -step).tolist(), -1.0]:
        allowed = mask & (dist >= t)
        while True:
            grown = cv2.dilate(lab, k)
            new = allowed & (lab == 0) & (grown > 0)
            if not new.any():
                break
            lab[new] = grown[new]
    return lab.astype(np.int32)


def _centroids(lab: np.ndarray, n: int) -> np.ndarray:
    """(n, 2) row, col centroids of labels 1..n."""
    if n == 0:
        return np.zeros((0, 2))
    rows, cols = np.indices(lab.shape)
    flat = lab.ravel()
    cnt = np.maximum(np.bincount(flat, minlength=n + 1), 1)[1:]
    r = np.bincount(flat, rows.ravel(), n + 1)[1:] / cnt
    c = np.bincount(flat, cols.ravel(), n + 1)[1:] / cnt
    return np.stack([r, c], 1)


def kmeans_split(comp: np.ndarray, k: int, init: np.ndarray, iters: int = 15) -> np.ndarray:
    """Partition a blob's pixels into ``k`` compact parts by k-means on their coordinates
    (labels 1..k, 0 outside). ``init`` holds up to k starting centres (row, col); the rest are
    added farthest-point first, so the result is deterministic. The centres are fitted on every
    second pixel of every second row (speed); all pixels are then assigned to the nearest."""
    everyone = np.argwhere(comp).astype(np.float64)
    sub = np.zeros_like(comp)
    sub[::2, ::2] = comp[::2, ::2]
    pts = np.argwhere(sub).astype(np.float64)
    if len(pts) < 4 * k:
        pts = everyone
    centres = [c for c in np.asarray(init, dtype=np.float64).reshape(-1, 2)][:k]
    if not centres:
        centres.append(pts.mean(0))
    while len(centres) < k:
        dmin = np.min([((pts - c) ** 2).sum(1) for c in centres], axis=0)
        centres.append(pts[int(np.argmax(dmin))])
    c = np.array(centres)

    def nearest(p: np.ndarray) -> np.ndarray:
        return np.argmin((c * c).sum(1)[None, :] - 2.0 * p @ c.T, axis=1)

    assign = nearest(pts)
    for _ in range(iters):
        sums = np.stack([np.bincount(assign, pts[:, 0], k), np.bincount(assign, pts[:, 1], k)], 1)
        cnt = np.bincount(assign, minlength=k)
        c = np.where(cnt[:, None] > 0, sums / np.maximum(cnt, 1)[:, None], c)
        new = nearest(pts)
        if np.array_equal(new, assign):
            break
        assign = new
    out = np.zeros(comp.shape, np.int32)
    out[comp] = nearest(everyone) + 1  # argwhere and boolean indexing share raster order
    return out


def split_cells(
    dist: np.ndarray, fg: np.ndarray, nuclei: np.ndarray, pallor: np.ndarray, d: float, cfg: AnnotateConfig
) -> tuple[np.ndarray, set[int]]:
    """Split the foreground into cells: (int32 label map, ids of the WBC cells).

    Per blob of ``fg``: markers are the h-maxima of the distance transform (h = ``cfg.h_maxima``
    cell radii) and the ``pallor`` blobs (:func:`rbcray.data.segment.find_pallor`), thinned by
    :func:`select_markers`; each WBC (``nuclei`` labels, 0 = none) is one marker and hides the
    peaks inside it. Heavily overlapping cells make one blob whose distance transform has only a
    shallow saddle, so a non-convex blob with fewer markers than its area implies
    (:func:`expected_cells`) is re-marked with ever smaller h until it has them, or, failing that,
    split by :func:`kmeans_split`. A blob with several markers is split by :func:`flood`.
    """
    h0 = cfg.h_maxima * d / 2
    min_dist = cfg.min_distance * d
    cell_area = np.pi * d * d / 4
    out = np.zeros(fg.shape, np.int32)
    wbc: set[int] = set()
    clab, _ = ndi.label(fg, structure=_EIGHT)
    peaks0 = h_maxima(dist, h0) & fg & (nuclei == 0)
    nxt = 1
    for i, sl in enumerate(ndi.find_objects(clab), start=1):
        if sl is None:
            continue
        comp = clab[sl] == i
        cd = np.where(comp, dist[sl], 0).astype(np.float32)
        nuc = np.where(comp, nuclei[sl], 0)
        free = comp & (nuc == 0)
        seeds = pallor[sl] & free
        lab, n = select_markers(peaks0[sl] & free, cd, min_dist, seeds, 0.5 * d)
        nuc_ids = np.unique(nuc[nuc > 0])
        rest = int(free.sum())
        if cfg.split_overlaps and rest > 1.4 * cell_area:
            want = expected_cells(free, rest, cfg.split_area * cell_area, cfg.convex, 0.1 * d)
            h = h0
            while n < want and h > 0.6:
                h *= 0.7
                lab, n = select_markers(h_maxima(cd, h) & free, cd, min_dist, seeds, 0.5 * d)
            if n < want and cfg.kmeans_fallback:
                # No saddle at all (cells overlapping along a monotonic ridge): split the blob
                # geometrically into as many compact parts as it holds cells; WBCs stay whole.
                init = _centroids(lab, n)
                seg = kmeans_split(free, want, init)
                for k, nid in enumerate(nuc_ids.tolist()):
                    seg[nuc == nid] = want + 1 + k
                view = out[sl]
                view[comp] = seg[comp] + (nxt - 1)
                wbc.update(range(nxt + want, nxt + want + len(nuc_ids)))
                nxt += want + len(nuc_ids)
                continue
        # Compact ids: peaks first, then nuclei.
        ids = np.unique(lab[lab > 0])
        remap = np.zeros(int(lab.max()) + 1, np.int32)
        remap[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
        mk = remap[lab]
        for k, nid in enumerate(nuc_ids.tolist()):
            mk[nuc == nid] = len(ids) + 1 + k
        total = len(ids) + len(nuc_ids)
        if total <= 1:
            seg = comp.astype(np.int32)
        else:
            seg = flood(cd, comp, mk, step=max(0.5, d / 100))
        view = out[sl]
        view[comp] = seg[comp] + (nxt - 1)
        wbc.update(range(nxt + len(ids), nxt + total))
        nxt += max(total, 1)
    return out, wbc
