"""Per-image classical segmentation of a blood smear into cell instances (the kernel of annotate).

The paper's real masks (Bailo et al., Sec. 3) came with their data; rbcray derives them:

1. background illumination per channel = grey closing with a disc wider than any cell, so uneven
   lighting (Chula's vignetting) cancels; ``darkness = 1 - G / G_bg`` (haemoglobin absorbs green)
   and ``stain = B / B_bg - G / G_bg`` (nuclei and platelets are blue-purple, RBCs are not);
2. Otsu threshold of the smoothed darkness (WBCs left out of the histogram), grown by hysteresis
   into pale cell interiors, opened (drops thin pointer lines, scale-bar text, ragged edges), holes
   smaller than a cell filled (the bright central pallor);
3. the cell diameter, unless configured, is the median equivalent diameter of isolated convex
   components; specks smaller than a fraction of a cell are dropped;
4. WBCs: a large stained nucleus (lobes grouped, convex hull) plus its stained cytoplasm;
5. touching and overlapping cells are split (:mod:`rbcray.data.splitting`): distance-transform
   h-maxima and, when enabled, central-pallor blobs as markers, a marker watershed, and k-means for
   clumps without any saddle; a WBC is one marker so it stays one cell;
6. small stained blobs are Platelets, other specks debris; cells cut by the image border are kept
   (the dataset writer flags them).

Everything is a pure, deterministic function of the image and an
:class:`~rbcray.data.annotate.AnnotateConfig` (OpenCV/SciPy only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
from scipy import ndimage as ndi

from rbcray.data.formats import relabel_sequential
from rbcray.data.splitting import disc as _disc
from rbcray.data.splitting import split_cells

if TYPE_CHECKING:
    from rbcray.data.annotate import AnnotateConfig

RBC, WBC, PLATELET = 1, 2, 3


def background(img: np.ndarray, width: float) -> np.ndarray:
    """Illumination estimate of a float32 image (H, W) or (H, W, C): a grey closing with a disc
    ``width`` px wide (cells are darker and narrower, so they vanish), smoothed; computed at low
    resolution because illumination varies slowly."""
    h, w = img.shape[:2]
    f = max(1.0, width / 24.0)
    sw, sh = max(1, int(round(w / f))), max(1, int(round(h / f)))
    small = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
    # Pad by reflection so the closing does not darken the image's edges.
    k = _disc(width / f / 2)
    p = k.shape[0]
    small = cv2.copyMakeBorder(small, p, p, p, p, cv2.BORDER_REFLECT)
    bg = cv2.morphologyEx(small, cv2.MORPH_CLOSE, k)[p:-p, p:-p]
    bg = cv2.GaussianBlur(bg, (0, 0), max(0.5, width / f / 4))
    return cv2.resize(bg, (w, h), interpolation=cv2.INTER_LINEAR)


def fill_small_holes(mask: np.ndarray, max_area: float) -> np.ndarray:
    """Fill background regions enclosed by ``mask`` (not touching the image border) smaller than
    ``max_area`` px; bigger enclosed regions are gaps between a ring of cells and stay."""
    inv = (~mask).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    h, w = mask.shape
    x, y, bw, bh, area = stats[:, 0], stats[:, 1], stats[:, 2], stats[:, 3], stats[:, 4]
    inner = (x > 0) & (y > 0) & (x + bw < w) & (y + bh < h) & (area < max_area)
    inner[0] = False
    return mask | inner[lab]


def estimate_cell_size(mask: np.ndarray, lo: float, hi: float) -> float | None:
    """Median equivalent diameter of isolated, convex (single-cell-like) components within
    [lo, hi] px that do not touch the border; None when fewer than 3 qualify."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    h, w = mask.shape
    diams = []
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        if x == 0 or y == 0 or x + bw >= w or y + bh >= h:
            continue
        d = 2.0 * np.sqrt(area / np.pi)
        if not lo <= d <= hi:
            continue
        contours, _ = cv2.findContours((lab[y : y + bh, x : x + bw] == i).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        hull = cv2.contourArea(cv2.convexHull(max(contours, key=cv2.contourArea)))
        if hull > 0 and area / hull >= 0.92 and max(bw, bh) <= 1.6 * min(bw, bh):
            diams.append(d)
    if len(diams) < 3:
        return None
    return float(np.median(diams))


def _wbc_zone(stain: np.ndarray, d: float, cfg: AnnotateConfig) -> np.ndarray:
    """Rough WBC area before any mask exists: big stained blobs grown by a third of a cell."""
    area = np.pi * d * d / 4
    nuc = cv2.morphologyEx((stain > cfg.wbc_stain).astype(np.uint8), cv2.MORPH_OPEN, _disc(0.05 * d))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(nuc, connectivity=8)
    big = stats[:, 4] >= cfg.wbc_min_area * area
    big[0] = False
    if not big.any():
        return np.zeros(stain.shape, bool)
    return cv2.dilate(big[lab].astype(np.uint8), _disc(d / 3)).astype(bool)


def find_wbcs(stain: np.ndarray, fg: np.ndarray, d: float, cfg: AnnotateConfig) -> np.ndarray:
    """White blood cells (int32 labels, 0 = none): each is a nucleus (a stained blob of at least
    ``cfg.wbc_min_area`` cells, its convex hull) plus the moderately stained cytoplasm around it.

    The cytoplasm threshold sits above the stain of this image's RBCs (some smears stain RBCs
    lavender) so neighbouring RBCs do not join the WBC.
    """
    area = np.pi * d * d / 4
    out = np.zeros(fg.shape, np.int32)
    nuc = cv2.morphologyEx(((stain > cfg.wbc_stain) & fg).astype(np.uint8), cv2.MORPH_OPEN, _disc(0.05 * d))
    # Lobes of one nucleus (neutrophils) are grouped: components closer than ~0.15 diameters.
    _, glab = cv2.connectedComponents(cv2.dilate(nuc, _disc(0.075 * d)), connectivity=8)
    nlab = np.where(nuc > 0, glab, 0)
    nn = int(nlab.max()) + 1
    sizes = np.bincount(nlab.ravel(), minlength=nn)
    big = [i for i in range(1, nn) if sizes[i] >= cfg.wbc_min_area * area]
    if not big:
        return out
    cyto_t = max(cfg.wbc_cytoplasm, float(np.median(stain[fg])) + 0.06) if fg.any() else cfg.wbc_cytoplasm
    cyto = cv2.morphologyEx((stain > cyto_t).astype(np.uint8), cv2.MORPH_OPEN, _disc(0.1 * d))
    cyto = fill_small_holes(cyto.astype(bool), area)
    nc, clab = cv2.connectedComponents(cyto.astype(np.uint8), connectivity=8)
    for k, i in enumerate(big, start=1):
        contours, _ = cv2.findContours((nlab == i).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        hull = np.zeros(fg.shape, np.uint8)
        cv2.fillPoly(hull, [cv2.convexHull(np.concatenate(contours))], 1)
        region = hull.astype(bool)
        touching = np.unique(clab[region])
        region |= np.isin(clab, touching[touching > 0])
        out[region & (out == 0)] = k
    return out


def find_platelets(stain: np.ndarray, raw: np.ndarray, fg: np.ndarray, d: float, cfg: AnnotateConfig) -> np.ndarray:
    """Platelets (int32 labels): small (``platelet_min_area``..``min_area`` cells), compact blobs of
    the raw foreground stained ``cfg.platelet_stain`` above the median stain of the cells (``fg``;
    some smears stain every RBC lavender). Found in the raw mask, before the opening that cleans
    the cell mask erases them."""
    area = np.pi * d * d / 4
    base = float(np.median(stain[fg])) if fg.any() else 0.0
    cand = ((stain > base + cfg.platelet_stain) & raw).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
    a = stats[:, 4]
    bw, bh = stats[:, 2], stats[:, 3]
    ok = (a >= cfg.platelet_min_area * area) & (a < cfg.min_area * area) & (a >= 0.3 * bw * bh)
    ok[0] = False
    lut = np.zeros(n, np.int32)
    lut[ok] = np.arange(1, int(ok.sum()) + 1, dtype=np.int32)
    return lut[lab]


def find_pallor(dark: np.ndarray, fg: np.ndarray, d: float, cfg: AnnotateConfig) -> np.ndarray:
    """Central pallor blobs (bool mask): places inside a cell clearly lighter than the rim around
    them, i.e. where a grey closing of the darkness map (disc of ``cfg.pallor_radius`` diameters)
    exceeds it by ``cfg.pallor``; kept when enclosed by foreground and between 1% and 40% of a
    typical cell in area. Each overlapping RBC with a pallor thus gets its own marker even when the
    clump's distance transform has a single peak."""
    area = np.pi * d * d / 4
    lift = cv2.morphologyEx(dark, cv2.MORPH_CLOSE, _disc(cfg.pallor_radius * d)) - dark
    cand = ((lift > cfg.pallor) & fg).astype(np.uint8)
    cand = cv2.morphologyEx(cand, cv2.MORPH_OPEN, _disc(0.03 * d))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
    ok = (stats[:, 4] >= 0.01 * area) & (stats[:, 4] <= 0.4 * area)
    ok[0] = False
    # Enclosed: a ring a few px wide around the blob lies entirely in the foreground.
    ring_lab = cv2.dilate(lab.astype(np.float32), _disc(0.04 * d)).astype(np.int64)
    outside = ring_lab[~fg]
    ok[np.unique(outside[outside > 0])] = False
    return ok[lab]


def foreground(rgb: np.ndarray, cfg: AnnotateConfig) -> dict[str, np.ndarray | float]:
    """Steps 1-3 of the module doc: ``dark`` and ``stain`` maps, the ``raw`` thresholded mask, the
    cleaned foreground ``fg`` (specks removed) and the cell diameter ``d`` in px."""
    img = rgb.astype(np.float32)
    lo, hi = cfg.cell_size_range
    d0 = float(cfg.cell_size) if cfg.cell_size is not None else float(np.sqrt(lo * hi))
    bg = np.maximum(background(img, cfg.background_scale * d0), 1.0)
    norm = img / bg
    dark = np.clip(1.0 - norm[..., 1], 0.0, 1.0)
    stain = norm[..., 2] - norm[..., 1]
    if cfg.smooth > 0:
        dark = cv2.GaussianBlur(dark, (0, 0), max(0.5, cfg.smooth * d0))
        stain = cv2.GaussianBlur(stain, (0, 0), max(0.5, cfg.smooth * d0))
    dark8 = np.clip(dark * 255.0 + 0.5, 0, 255).astype(np.uint8)
    # Otsu without the WBCs: a large dark nucleus with its cytoplasm would pull the threshold
    # above the pale RBCs of the same frame.
    excl = _wbc_zone(stain, d0, cfg) if cfg.detect_wbc else np.zeros(dark8.shape, bool)
    sample = dark8[~excl] if (~excl).sum() > dark8.size // 4 else dark8.ravel()
    otsu, _ = cv2.threshold(sample.reshape(1, -1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    hi_t = max(otsu * cfg.threshold_scale, 1.0)
    strong = (dark8 > hi_t) | (stain > cfg.wbc_stain)
    # Pale cells (hypochromic, thin smears) have rims above Otsu but interiors barely darker than
    # the background (the histogram's mode): grow the strong pixels into the weak ones they touch.
    mode = int(np.bincount(dark8.ravel(), minlength=256).argmax())
    low = min(hi_t, mode + cfg.hysteresis * (hi_t - mode))
    weak = (dark8 > low) | strong
    nw, wlab = cv2.connectedComponents(weak.astype(np.uint8), connectivity=8)
    seeded = np.zeros(nw, bool)
    seeded[wlab[strong]] = True
    seeded[0] = False
    raw = seeded[wlab]

    def clean(d: float) -> np.ndarray:
        m = raw
        if cfg.open_radius > 0:
            m = cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_OPEN, _disc(cfg.open_radius * d)).astype(bool)
        return fill_small_holes(m, cfg.fill_holes * np.pi * d * d / 4)

    fg = clean(d0)
    d = d0
    if cfg.cell_size is None:
        est = estimate_cell_size(fg, lo, hi)
        if est is not None:
            d = float(np.clip(est, lo, hi))
            fg = clean(d)
    # Specks: too small to be a cell (debris; platelets are found separately). Cells cut by the
    # border show only part of themselves, so a lower floor applies to them.
    area = np.pi * d * d / 4
    n, lab, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    x, y, bw, bh = stats[:, 0], stats[:, 1], stats[:, 2], stats[:, 3]
    on_border = (x == 0) | (y == 0) | (x + bw == fg.shape[1]) | (y + bh == fg.shape[0])
    small = stats[:, 4] < np.where(on_border, cfg.min_area_border, cfg.min_area) * area
    small[0] = False
    return {"dark": dark, "stain": stain, "raw": raw, "fg": fg & ~small[lab], "d": d}


def segment_image(rgb: np.ndarray, cfg: AnnotateConfig) -> tuple[np.ndarray, dict[int, int]]:
    """Segment one RGB uint8 smear -> (uint16 instance map, category per cell id); see module doc."""
    f = foreground(rgb, cfg)
    dark, stain, raw, fg, d = f["dark"], f["stain"], f["raw"], f["fg"], float(f["d"])
    area = np.pi * d * d / 4
    h_img, w_img = fg.shape
    platelets = find_platelets(stain, raw, fg, d, cfg) if cfg.platelet_stain <= 2.0 else np.zeros(fg.shape, np.int32)
    wbc_lab = find_wbcs(stain, fg, d, cfg) if cfg.detect_wbc else np.zeros(fg.shape, np.int32)
    fg = fg | (wbc_lab > 0)
    dist = cv2.distanceTransform(fg.astype(np.uint8), cv2.DIST_L2, 5)
    pallor = find_pallor(dark, fg, d, cfg) if cfg.pallor > 0 else np.zeros(fg.shape, bool)
    ws, wbc_ids = split_cells(dist, fg, wbc_lab, pallor, d, cfg)

    # Drop fragments and oversized artefacts; WBC regions keep whatever size they have.
    ids = np.unique(ws)
    ids = ids[ids > 0]
    keep_lut = np.zeros(int(ws.max()) + 1, dtype=np.int64)
    cats_raw: dict[int, int] = {}
    if len(ids):
        counts = np.bincount(ws.ravel(), minlength=int(ws.max()) + 1)
        mean_stain = np.bincount(ws.ravel(), stain.ravel().astype(np.float64), len(counts)) / np.maximum(counts, 1)
        boxes = ndi.find_objects(ws)
        # Some smears stain every RBC lavender: "stained" is relative to this image's typical cell.
        typical = float(np.median(mean_stain[ids]))
        for i in ids.tolist():
            sy, sx = boxes[i - 1]
            border = sy.start == 0 or sx.start == 0 or sy.stop == h_img or sx.stop == w_img
            floor = (cfg.min_area_border if border else cfg.min_area) * area
            if i in wbc_ids:
                keep_lut[i], cats_raw[i] = i, WBC
            elif floor <= counts[i] <= cfg.max_area * area:
                # Stained throughout and smaller than half a cell: a platelet clump, not an RBC.
                stained = mean_stain[i] > typical + cfg.platelet_stain and counts[i] < 0.5 * area
                keep_lut[i], cats_raw[i] = i, PLATELET if stained else RBC
    out = keep_lut[ws]
    nxt = int(out.max()) + 1
    for k in range(1, int(platelets.max()) + 1):
        pm = platelets == k
        # A platelet lying on a cell is part of that cell's picture, not a cell of its own.
        if (out[pm] == 0).mean() > 0.5:
            out[pm & (out == 0)] = nxt
            cats_raw[nxt] = PLATELET
            nxt += 1
    inst = relabel_sequential(out)
    # Carry the categories through the relabelling (new id <- old id at the cell's first pixel).
    cats: dict[int, int] = {}
    flat_old, flat_new = out.ravel(), inst.ravel()
    new_ids, first = np.unique(flat_new, return_index=True)
    for nid, pos in zip(new_ids.tolist(), first.tolist()):
        if nid:
            cats[nid] = cats_raw[int(flat_old[pos])]
    return inst, cats
