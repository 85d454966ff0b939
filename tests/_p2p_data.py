"""Test helper: a small real dataset folder from Chula images with quickly derived instance maps.

The project's own annotator (``rbcray annotate``) is the real path; tests of the pix2pixHD stage
only need plausible instance maps of real smears, so a classical threshold + distance-transform
watershed is enough here.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from rbcray.data.dataset import DatasetWriter
from rbcray.data.formats import relabel_sequential
from rbcray.io import read_image


def quick_instances(img: np.ndarray) -> np.ndarray:
    """Cells of a smear: Otsu on green (cells are darker), hole filling, watershed split."""
    from scipy import ndimage

    g = cv2.GaussianBlur(img[:, :, 1], (5, 5), 0)
    _, fg = cv2.threshold(g, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    fg = ndimage.binary_fill_holes(fg > 0).astype(np.uint8) * 255
    dist = cv2.distanceTransform(fg, cv2.DIST_L2, 5)
    peaks = ((dist == ndimage.maximum_filter(dist, size=17)) & (dist > 8)).astype(np.uint8)
    peaks = cv2.dilate(peaks, np.ones((5, 5), np.uint8))
    _, markers = cv2.connectedComponents(peaks)
    markers = markers + 1
    markers[(fg > 0) & (peaks == 0)] = 0
    cv2.watershed(cv2.cvtColor(img, cv2.COLOR_RGB2BGR), markers)
    inst = np.where(markers > 1, markers - 1, 0)
    inst[fg == 0] = 0
    return relabel_sequential(inst)


def make_dataset(chula_root: Path, out: Path, stems: tuple[str, ...] = ("1", "2", "3", "4")) -> Path:
    """A dataset folder with the given Chula images and derived masks."""
    with DatasetWriter(out, name="chula-test", kind="test") as w:
        for s in stems:
            img = read_image(chula_root / "Dataset" / f"{s}.jpg")
            w.add(f"c{s}", quick_instances(img), image=img)
    return out


def make_crops_dataset(chula_root: Path, out: Path, size: int = 64) -> Path:
    """Two real size x size crops (Chula images 1 and 2, centre region) with their instance maps."""
    with DatasetWriter(out, name="chula-crops", kind="test") as w:
        for s in ("1", "2"):
            img = read_image(chula_root / "Dataset" / f"{s}.jpg")
            inst = quick_instances(img)
            y0, x0 = 200, 280
            w.add(f"crop{s}", relabel_sequential(inst[y0 : y0 + size, x0 : x0 + size]), image=img[y0 : y0 + size, x0 : x0 + size])
    return out
