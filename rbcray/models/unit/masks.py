"""Which instance mask a translated cell gets: the host cell's shape, or a threshold of the patch.

UNIT changes a cell's look, and for some classes (teardrops, schistocytes, elliptocytes) its
outline too, so the host cell's mask may no longer fit. :func:`threshold_mask` derives a mask from
the translated patch itself (Otsu on the green-channel darkness, the component under the centre,
holes filled); :func:`shape_features` and :func:`shape_distance` measure which option's shapes are
closer to real cells of the class. The reference masks of real cells are *derived* masks
(:mod:`rbcray.data.segment`), not ground truth.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage
from scipy.stats import ks_2samp


def threshold_mask(rgb: np.ndarray) -> np.ndarray:
    """Boolean mask of the cell at the centre of an RGB uint8 (3, S, S) or (S, S, 3) patch."""
    img = rgb.transpose(1, 2, 0) if rgb.shape[0] == 3 and rgb.shape[-1] != 3 else rgb
    dark = 255 - img[..., 1]
    _, m = cv2.threshold(np.ascontiguousarray(dark), 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    m = ndimage.binary_fill_holes(m.astype(bool))
    lab, n = ndimage.label(m)
    if n == 0:
        return np.zeros(m.shape, bool)
    h, w = m.shape
    c = lab[h // 2, w // 2]
    if c == 0:  # the centre pixel fell in a gap: take the component nearest to it
        d = ndimage.distance_transform_edt(lab == 0, return_indices=True)[1]
        c = lab[d[0][h // 2, w // 2], d[1][h // 2, w // 2]]
    return lab == c


def shape_features(masks: np.ndarray) -> dict[str, np.ndarray]:
    """Area (px) and elongation (minor / major axis of the second moments, 1 = round) per mask."""
    areas, elong = [], []
    for m in masks:
        ys, xs = np.nonzero(m)
        areas.append(float(len(ys)))
        if len(ys) < 3:
            elong.append(np.nan)
            continue
        ev = np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(float)))
        elong.append(float(np.sqrt(max(ev[0], 0.0) / ev[1])) if ev[1] > 0 else np.nan)
    return {"area": np.array(areas), "elongation": np.array(elong)}


def shape_distance(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """Two-sample Kolmogorov-Smirnov statistic per feature (0 = same distribution)."""
    out = {}
    for k in a:
        x, y = a[k][np.isfinite(a[k])], b[k][np.isfinite(b[k])]
        out[k] = float(ks_2samp(x, y).statistic) if len(x) and len(y) else float("nan")
    return out


def compare_mask_options(normal: np.ndarray, translated: np.ndarray, rare: np.ndarray, seed: int = 1) -> dict[str, dict[str, float]]:
    """KS distances of mask shapes to real class-c cells, per option and for two baselines.

    ``normal`` are the (N, 4, S, S) host crops, ``translated`` their translations (mask channel
    = host mask), ``rare`` real class-c crops. Options: ``host_shape_kept`` (the host's derived
    mask) and ``threshold_of_translated``; baselines: ``baseline_threshold_of_real`` (the
    threshold applied to real class-c patches: the method's own bias) and
    ``baseline_real_vs_real_halves`` (two random halves of the real cells: sampling noise).
    """
    ref_masks = rare[:, 3] > 127
    perm = np.random.default_rng(seed).permutation(len(ref_masks))
    half = len(ref_masks) // 2
    ref = shape_features(ref_masks)
    return {
        "host_shape_kept": shape_distance(shape_features(normal[:, 3] > 127), ref),
        "threshold_of_translated": shape_distance(shape_features(np.stack([threshold_mask(t[:3]) for t in translated])), ref),
        "baseline_threshold_of_real": shape_distance(shape_features(np.stack([threshold_mask(t[:3]) for t in rare])), ref),
        "baseline_real_vs_real_halves": shape_distance(shape_features(ref_masks[perm[:half]]), shape_features(ref_masks[perm[half:]])),
    }
