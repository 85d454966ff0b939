"""Alpha blending of a translated patch into its host smear (Gupta et al.'s cosine window).

A translated cell patch is pasted back with weight

    alpha(i, j) = cos(|i|^n * pi / 2) * cos(|j|^n * pi / 2),   i, j in [-1, 1] across the patch,

which is 1 at the patch centre and falls to 0 at its border, so no seam shows where the patch
ends. Larger n keeps alpha near 1 over more of the patch (n = 2 is Gupta et al.'s choice; n is
configurable). Everything here is a pure function of arrays: the host is never modified in place.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rbcray.errors import DataError


def cosine_window(height: int, width: int, n: float = 2.0) -> np.ndarray:
    """(height, width) float64 alpha window: 1 at the centre (odd sizes), exactly 0 on the border."""
    if height < 2 or width < 2:
        raise DataError(f"cosine window {width}x{height}: needs at least 2x2 pixels")
    if not n > 0:
        raise DataError(f"cosine window exponent n = {n}: must be > 0")
    i = np.linspace(-1.0, 1.0, height)
    j = np.linspace(-1.0, 1.0, width)

    def prof(t: np.ndarray) -> np.ndarray:
        v = np.cos(np.abs(t) ** n * np.pi / 2)
        v[np.abs(t) >= 1.0] = 0.0  # cos(pi/2) is 6e-17 in floating point; the border is exactly 0
        return v

    return prof(i)[:, None] * prof(j)[None, :]


def blend_patch(host: np.ndarray, patch: np.ndarray, top: int, left: int, alpha: np.ndarray) -> np.ndarray:
    """A copy of ``host`` with ``patch`` blended in at (top, left) by ``alpha`` (clipped to the host).

    ``host`` (H, W, C) and ``patch`` (h, w, C) share a dtype; ``alpha`` is (h, w) in [0, 1]. The
    result keeps the host's dtype (rounded for integer images).
    """
    if patch.shape[:2] != alpha.shape:
        raise DataError(f"blend: patch {patch.shape[:2]} and alpha {alpha.shape} differ in size")
    if host.ndim != patch.ndim or host.shape[2:] != patch.shape[2:]:
        raise DataError(f"blend: host {host.shape} and patch {patch.shape} differ in channels")
    out = host.copy()
    h, w = patch.shape[:2]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, host.shape[0]), min(left + w, host.shape[1])
    if y1 <= y0 or x1 <= x0:
        return out
    ps = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
    a = alpha[ps][..., None] if host.ndim == 3 else alpha[ps]
    mixed = a * patch[ps].astype(np.float64) + (1.0 - a) * host[y0:y1, x0:x1].astype(np.float64)
    if np.issubdtype(host.dtype, np.integer):
        info = np.iinfo(host.dtype)
        mixed = np.clip(np.rint(mixed), info.min, info.max)
    out[y0:y1, x0:x1] = mixed.astype(host.dtype)
    return out


def blend_cells(
    host: np.ndarray,
    patches: Sequence[np.ndarray],
    centres: Sequence[tuple[float, float]],
    accept: Sequence[bool],
    n: float = 2.0,
) -> np.ndarray:
    """Blend every accepted translated patch into ``host`` around its cell centre (cx, cy).

    Rejected patches (``accept`` false — the pseudo-label filter said no) leave the host exactly
    as it was under them. Patches are blended in order; overlapping windows compose.
    """
    if not (len(patches) == len(centres) == len(accept)):
        raise DataError(f"blend_cells: {len(patches)} patches, {len(centres)} centres, {len(accept)} decisions")
    out = host
    for patch, (cx, cy), ok in zip(patches, centres, accept):
        if not ok:
            continue
        h, w = patch.shape[:2]
        alpha = cosine_window(h, w, n)
        out = blend_patch(out, patch, int(round(cy)) - h // 2, int(round(cx)) - w // 2, alpha)
    return out if out is not host else host.copy()
