"""Source images and their partial labels: Chula-RBC-12 points, BCCD-TXL boxes, plain folders.

These are the inputs of ``rbcray annotate`` and of the annotation-quality benchmark. Neither public
set has instance masks (the paper's own data did, Sec. 3); their labels are used to *measure*
derived masks, never to make them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rbcray.data.registry import is_dataset_name, resolve_dataset
from rbcray.errors import DataError
from rbcray.io import IMAGE_EXTENSIONS, list_images, natural_key

CHULA_CLASSES = (
    "normal", "macrocyte", "microcyte", "spherocyte", "target", "stomatocyte", "ovalocyte",
    "teardrop", "burr", "schistocyte", "uncategorised", "hypochromia", "elliptocyte",
)
BCCD_CLASSES = ("WBC", "RBC", "Platelet")


@dataclass(frozen=True)
class SourceImage:
    """One source smear and whatever labels came with it."""

    stem: str
    path: Path
    split: str | None = None
    #: (N, 3) int array of x, y, class (Chula point labels), or None
    points: np.ndarray | None = None
    #: (N, 5) float array of class, cx, cy, w, h normalised to [0, 1] (YOLO boxes), or None
    boxes_yolo: np.ndarray | None = None

    def boxes_px(self, width: int, height: int) -> np.ndarray:
        """YOLO boxes as (N, 5) class, x0, y0, x1, y1 in pixels."""
        if self.boxes_yolo is None or len(self.boxes_yolo) == 0:
            return np.zeros((0, 5))
        b = self.boxes_yolo
        cx, cy, w, h = b[:, 1] * width, b[:, 2] * height, b[:, 3] * width, b[:, 4] * height
        return np.stack([b[:, 0], cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


@dataclass(frozen=True)
class Source:
    """A resolved source: a dataset name or folder, its local root, and its images."""

    name: str
    root: Path
    images: tuple[SourceImage, ...]


def _read_rows(path: Path, ncols: int) -> np.ndarray:
    try:
        text = path.read_text()
    except OSError as e:
        raise DataError(f"{path}: cannot read label file ({e.strerror or e})") from None
    rows = [ln.split() for ln in text.splitlines() if ln.strip()]
    try:
        arr = np.array([[float(v) for v in r] for r in rows], dtype=np.float64)
    except ValueError:
        raise DataError(f"{path}: label lines must hold {ncols} numbers") from None
    if len(rows) == 0:
        return np.zeros((0, ncols))
    if arr.ndim != 2 or arr.shape[1] != ncols:
        raise DataError(f"{path}: expected {ncols} numbers per line")
    return arr


def load_chula(root: Path) -> tuple[SourceImage, ...]:
    """Chula-RBC-12: ``Dataset/N.jpg`` with optional ``Label/N.txt`` (x y class per line)."""
    out = []
    for p in list_images(root / "Dataset"):
        lab = root / "Label" / f"{p.stem}.txt"
        pts = _read_rows(lab, 3).astype(np.int64) if lab.exists() else None
        out.append(SourceImage(stem=p.stem, path=p, points=pts))
    return tuple(out)


def load_bccd(root: Path) -> tuple[SourceImage, ...]:
    """BCCD-TXL: ``images/{split}/X.jpg`` with YOLO ``labels/{split}/X.txt``."""
    out = []
    for split in ("train", "val", "test"):
        d = root / "images" / split
        if not d.is_dir():
            continue
        for p in list_images(d):
            lab = root / "labels" / split / f"{p.stem}.txt"
            boxes = _read_rows(lab, 5) if lab.exists() else None
            out.append(SourceImage(stem=p.stem, path=p, split=split, boxes_yolo=boxes))
    return tuple(out)


def load_folder(folder: Path) -> tuple[SourceImage, ...]:
    """Any folder of images (searched one level deep, natural order)."""
    files = list_images(folder)
    if not files:
        sub = sorted((p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS), key=natural_key)
        files = sub
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
    stems = [p.stem for p in files]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise DataError(f"{folder}: two images share the name {dup!r}")
    return tuple(SourceImage(stem=p.stem, path=p) for p in files)


LOADERS = {"chula-rbc-12": load_chula, "bccd-txl-pbc": load_bccd}


def open_source(source: str | Path, data_dir: str | Path | None = None) -> Source:
    """Resolve a dataset name (``chula-rbc-12``, ``bccd-txl-pbc``) or a folder of images."""
    s = str(source)
    if is_dataset_name(s):
        root = resolve_dataset(s, data_dir)
        return Source(name=s, root=root, images=LOADERS[s](root))
    folder = Path(s).expanduser()
    if not folder.exists():
        raise DataError(f"{s}: neither a known dataset name (chula-rbc-12, bccd-txl-pbc) nor an existing folder")
    if not folder.is_dir():
        raise DataError(f"{s}: not a folder of images")
    return Source(name=folder.name, root=folder, images=load_folder(folder))
