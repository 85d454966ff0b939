"""Test helper: small dataset folders of ellipse-shaped cells (known shapes, some cut by the border)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from rbcray.data.dataset import DatasetWriter


def ellipse_instances(rng: np.random.Generator, width: int = 200, height: int = 150, n: int = 14, size: float = 18.0) -> np.ndarray:
    """A uint16 instance map of up to ``n`` non-overlapping ellipses (some touch the border)."""
    inst = np.zeros((height, width), np.uint16)
    k = 0
    for _ in range(n * 20):
        if k == n:
            break
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        a, b = rng.uniform(0.35, 0.6) * size, rng.uniform(0.35, 0.6) * size
        m = np.zeros_like(inst, np.uint8)
        cv2.ellipse(m, (cx, cy), (int(a), int(b)), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        grown = cv2.dilate(m, np.ones((3, 3), np.uint8))
        if (inst[grown > 0] > 0).any():
            continue
        k += 1
        inst[m > 0] = k
    return inst


def make_dataset(out: Path, n_images: int = 4, seed: int = 0, width: int = 200, height: int = 150, n: int = 14,
                 size: float = 18.0, category_of=None) -> Path:
    """A dataset folder (no images) of ellipse masks; ``category_of(cell_id) -> category``."""
    rng = np.random.default_rng(seed)
    with DatasetWriter(out, name="ellipses", kind="test") as w:
        for i in range(n_images):
            inst = ellipse_instances(rng, width, height, n, size)
            cats = {int(c): int(category_of(int(c))) for c in np.unique(inst) if c} if category_of else None
            w.add(f"e{i}", inst, categories=cats)
    return out
