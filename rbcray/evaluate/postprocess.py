"""DCAN post-processing: cells from objectness and contour maps (Chen et al. 2016, as used in
Bailo et al. Table 2 "DCAN").

A pixel is inside a cell when its objectness probability is at least ``obj_threshold`` and its
contour probability below ``contour_threshold``; cells are the 8-connected components of those
pixels that cover at least ``min_area`` pixels. Removing the contour shrinks every cell by about
the contour's width, so each component is dilated back by ``grow`` pixels (within the objectness
mask) before its box is taken. A cell's score is its mean objectness probability. The boxes and
scores then go through the same COCO AP as the Faster R-CNN detections.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from rbcray.config import check


@dataclass(frozen=True)
class DCANPostConfig:
    """Thresholds of the DCAN post-processing."""

    obj_threshold: float = 0.5
    contour_threshold: float = 0.5
    min_area: int = 10
    grow: int = 1

    def __post_init__(self) -> None:
        check(0 < self.obj_threshold < 1 and 0 < self.contour_threshold < 1, "DCAN thresholds must be in (0, 1)")
        check(self.min_area >= 1 and self.grow >= 0, "DCAN min_area must be >= 1 and grow >= 0")


def contour_targets(instances: np.ndarray, width: int = 1) -> np.ndarray:
    """Boundary pixels of every cell (uint8 0/1): cell pixels with a neighbour of another id,
    thickened to ``width`` pixels inward and outward (the contour head's training target)."""
    inst = instances.astype(np.int32)
    edge = np.zeros(inst.shape, bool)
    pad = np.pad(inst, 1, mode="edge")
    h, w = inst.shape
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                edge |= pad[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] != inst
    edge &= inst > 0
    if width > 1:
        edge = cv2.dilate(edge.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=width - 1) > 0
    return edge.astype(np.uint8)


def dcan_cells(
    objectness: np.ndarray, contour: np.ndarray, cfg: DCANPostConfig | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(instance map uint16, boxes (N, 4) float32 x0 y0 x1 y1 exclusive, scores (N,)) from the two
    probability maps (H, W) in [0, 1]."""
    cfg = cfg or DCANPostConfig()
    fg = objectness >= cfg.obj_threshold
    core = fg & (contour < cfg.contour_threshold)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(core.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    keep = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= cfg.min_area]
    inst = np.zeros(objectness.shape, np.uint16)
    for k, i in enumerate(keep, start=1):
        inst[lab == i] = k
    if cfg.grow and keep:
        # grow each cell back over the removed contour, never into another cell or background
        kernel = np.ones((3, 3), np.uint8)
        for _ in range(cfg.grow):
            grown = cv2.dilate(inst, kernel)
            take = (inst == 0) & fg & (grown > 0)
            inst[take] = grown[take]
    boxes = np.zeros((len(keep), 4), np.float32)
    scores = np.zeros(len(keep), np.float32)
    for k in range(1, len(keep) + 1):
        ys, xs = np.nonzero(inst == k)
        boxes[k - 1] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        scores[k - 1] = float(objectness[ys, xs].mean())
    return inst, boxes, scores
