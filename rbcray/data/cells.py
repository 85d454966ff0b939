"""Cell-centred crops of a dataset folder: the inputs of the morphology classifier and of UNIT.

A crop is a fixed window of ``window`` source pixels centred on a cell's centroid, resized to
``size`` x ``size``. The window is fixed in pixels, not scaled to each cell, so that size — what
separates macrocytes and microcytes from normal cells — survives into the crop. Each crop has four
channels: RGB and the cell's own (derived) instance mask (255 inside the centred cell, 0 elsewhere),
so that a model knows which of several touching cells is meant. Windows running off the image are
padded by reflection (image) and zeros (mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from rbcray.data.dataset import Dataset
from rbcray.data.morphology import RBC, UNLABELLED, load_dataset_morphology
from rbcray.errors import DataError


@dataclass(frozen=True)
class CellCrops:
    """Crops and their labels, equal length along the first axis."""

    #: (N, 4, size, size) uint8: R, G, B, cell mask
    crops: np.ndarray
    #: (N,) int morphology class (-1 unlabelled)
    labels: np.ndarray
    #: (N,) index into ``stems`` of the image each crop came from
    image_index: np.ndarray
    #: (N,) instance id of the cell in its image
    cell_id: np.ndarray
    stems: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> CellCrops:
        """The crops where ``mask`` is true (stems kept, so ``image_index`` stays valid)."""
        return CellCrops(self.crops[mask], self.labels[mask], self.image_index[mask], self.cell_id[mask], self.stems)


def crop_cell(img: np.ndarray, inst: np.ndarray, cid: int, cx: float, cy: float, window: int, size: int) -> np.ndarray:
    """One (4, size, size) uint8 crop of cell ``cid`` centred on (cx, cy). Pure."""
    half = window // 2
    x0, y0 = int(round(cx)) - half, int(round(cy)) - half
    pad = window
    rgb = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    m = np.pad((inst == cid).astype(np.uint8) * 255, pad)
    sl = (slice(y0 + pad, y0 + pad + window), slice(x0 + pad, x0 + pad + window))
    rgb_c = cv2.resize(rgb[sl], (size, size), interpolation=cv2.INTER_AREA)
    m_c = cv2.resize(m[sl], (size, size), interpolation=cv2.INTER_AREA)
    return np.concatenate([rgb_c.transpose(2, 0, 1), m_c[None]], axis=0)


def extract_cells(
    ds: Dataset,
    stems: Sequence[str],
    *,
    window: int = 80,
    size: int = 40,
    labelled_only: bool = True,
    classes: Sequence[int] | None = None,
    skip_border: bool = True,
) -> CellCrops:
    """Crops of the RBCs of ``stems`` that carry a morphology class (or all RBCs).

    ``classes`` keeps only those classes; ``skip_border`` drops cells cut by the image edge (their
    shape is incomplete). Raises :class:`DataError` when the dataset has no morphology labels.
    """
    if window < 8 or size < 8:
        raise DataError(f"cell crops: window {window} and size {size} must be at least 8 px")
    per = load_dataset_morphology(ds.root)
    if not per:
        raise DataError(f"{ds.root}: no morphology labels (annotate a source with point labels, e.g. chula-rbc-12)")
    keep_classes = None if classes is None else set(int(c) for c in classes)
    crops, labels, idx, ids = [], [], [], []
    for k, stem in enumerate(stems):
        morph = per.get(stem, {})
        if labelled_only and not any(v != UNLABELLED for v in morph.values()):
            continue
        inst = ds.load_instances(stem)
        cats = ds.load_categories(stem)
        img = ds.load_image(stem)
        h, w = inst.shape
        cell_ids = np.unique(inst)
        cell_ids = cell_ids[cell_ids > 0]
        ys, xs = np.nonzero(inst)
        lab = inst[ys, xs].astype(np.int64)
        area = np.bincount(lab, minlength=int(inst.max()) + 1)
        sx = np.bincount(lab, weights=xs, minlength=len(area))
        sy = np.bincount(lab, weights=ys, minlength=len(area))
        boxes = ndimage.find_objects(inst)
        for cid in cell_ids.tolist():
            if cats.get(cid, RBC) != RBC:
                continue
            c = morph.get(cid, UNLABELLED)
            if labelled_only and c == UNLABELLED:
                continue
            if keep_classes is not None and c not in keep_classes:
                continue
            sy_, sx_ = boxes[cid - 1]
            if skip_border and (sy_.start == 0 or sx_.start == 0 or sy_.stop == h or sx_.stop == w):
                continue
            crops.append(crop_cell(img, inst, cid, sx[cid] / area[cid], sy[cid] / area[cid], window, size))
            labels.append(c)
            idx.append(k)
            ids.append(cid)
    if not crops:
        return CellCrops(np.zeros((0, 4, size, size), np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), tuple(stems))
    return CellCrops(np.stack(crops), np.array(labels, np.int64), np.array(idx, np.int64), np.array(ids, np.int64), tuple(stems))
