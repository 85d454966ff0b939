"""Training pairs for pix2pixHD from an rbcray dataset folder (images + instances + categories).

Each item is one (instance map, class map, image) crop. The augmentation follows pix2pixHD
(Wang et al. 2018): optional resize to ``load_size``, a random crop of ``crop_size`` (large images
are never fed whole unless asked), random horizontal and vertical flips (smears have no
orientation). For stage 1 the crop is resized to half resolution (or ``stage1_size``): area
interpolation for images, nearest for instance maps.

Randomness is a pure function of (seed, epoch, item index), never of the worker or loader, so
the same data is seen whatever the number of workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from rbcray.data.dataset import Dataset
from rbcray.errors import DataError
from rbcray.models.pix2pixhd.inputs import category_lut


@dataclass(frozen=True)
class CropSpec:
    """Geometry of one training stage: resize, crop (W, H), output size (W, H), flips."""

    load_size: tuple[int, int] | None
    crop_size: tuple[int, int] | None
    out_size: tuple[int, int] | None  # None: the crop size itself
    flip: bool


class PairDataset(torch.utils.data.Dataset):
    """Random crops of an rbcray dataset folder as tensors.

    ``__getitem__(i)`` returns ``(inst int64 (H, W), classes int64 (H, W), image float (3, H, W) in
    [-1, 1])``. Item ``i`` reads sample ``i % n_images``; ``length`` sets the epoch size. Pass a
    dict as ``cache`` to keep decoded samples in memory (small datasets).
    """

    def __init__(
        self, ds: Dataset, spec: CropSpec, num_classes: int, seed: int = 0, length: int | None = None,
        cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        if not ds.has_images:
            raise DataError(f"{ds.root}: dataset has samples without images; pix2pixHD training needs image + mask pairs")
        if len(ds) == 0:
            raise DataError(f"{ds.root}: dataset is empty")
        self.ds, self.spec, self.num_classes, self.seed = ds, spec, num_classes, seed
        self.stems = ds.stems
        self.length = int(length) if length else len(self.stems)
        self.epoch = 0
        # decoded samples by stem (shared across epochs by the caller); None: read from disk every time
        self._cache = cache
        if spec.crop_size is not None:
            cw, ch = spec.crop_size
            for rec in ds.samples:
                w, h = spec.load_size or (rec["width"], rec["height"])
                if w < cw or h < ch:
                    raise DataError(f"{ds.root}: sample {rec['stem']!r} is {w}x{h}, smaller than crop_size {cw}x{ch}")

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def load(self, stem: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image RGB uint8, instance map uint16, class per instance id) of a whole sample, resized to load_size."""
        if self._cache is not None and stem in self._cache:
            return self._cache[stem]
        img = self.ds.load_image(stem)
        inst = self.ds.load_instances(stem)
        if img.shape[:2] != inst.shape:
            raise DataError(
                f"{self.ds.image_path(stem)}: image size {img.shape[1]}x{img.shape[0]} does not match its instance map "
                f"{inst.shape[1]}x{inst.shape[0]}"
            )
        lut = category_lut(inst, self.ds.load_categories(stem), self.num_classes, f"{self.ds.root}/{stem}")
        if self.spec.load_size is not None and (img.shape[1], img.shape[0]) != tuple(self.spec.load_size):
            img, inst = resize_pair(img, inst, self.spec.load_size)
        item = (img, inst, lut)
        if self._cache is not None:
            self._cache[stem] = item
        return item

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        stem = self.stems[i % len(self.stems)]
        img, inst, lut = self.load(stem)
        rng = np.random.default_rng([self.seed, self.epoch, i])
        img, inst = augment(img, inst, self.spec, rng)
        classes = lut[inst]
        image = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(127.5).sub_(1.0)
        return torch.from_numpy(inst.astype(np.int64)), torch.from_numpy(classes), image


def check_pairs(ds: Dataset) -> None:
    """Every sample has an image whose size equals its mask's (image headers only; fast)."""
    from PIL import Image

    for rec in ds.samples:
        stem = rec["stem"]
        ipath = ds.image_path(stem)
        mpath = ds.root / (rec.get("instances") or rec["mask"])
        sizes = []
        for p in (ipath, mpath):
            try:
                with Image.open(p) as im:
                    sizes.append(im.size)
            except FileNotFoundError:
                raise DataError(f"{p}: file not found") from None
            except Exception:  # noqa: BLE001 - PIL raises several types for unreadable files
                raise DataError(f"{p}: not a readable image") from None
        if sizes[0] != sizes[1]:
            raise DataError(
                f"{ipath}: image size {sizes[0][0]}x{sizes[0][1]} does not match its instance map {mpath.name} "
                f"({sizes[1][0]}x{sizes[1][1]})"
            )


def resize_pair(img: np.ndarray, inst: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize an image (area when shrinking, cubic when enlarging) and its instance map (nearest) to (W, H)."""
    w, h = int(size[0]), int(size[1])
    interp = cv2.INTER_AREA if w * h < img.shape[0] * img.shape[1] else cv2.INTER_CUBIC
    img = cv2.resize(img, (w, h), interpolation=interp)
    inst = cv2.resize(inst, (w, h), interpolation=cv2.INTER_NEAREST)
    return img, inst


def augment(img: np.ndarray, inst: np.ndarray, spec: CropSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random crop, flips and stage resize of one pair (all choices drawn from ``rng``)."""
    h, w = inst.shape
    if spec.crop_size is not None:
        cw, ch = spec.crop_size
        x0 = int(rng.integers(0, w - cw + 1))
        y0 = int(rng.integers(0, h - ch + 1))
        img, inst = img[y0 : y0 + ch, x0 : x0 + cw], inst[y0 : y0 + ch, x0 : x0 + cw]
    flips = rng.random(2) < 0.5
    if spec.flip and flips[0]:
        img, inst = img[:, ::-1], inst[:, ::-1]
    if spec.flip and flips[1]:
        img, inst = img[::-1], inst[::-1]
    if spec.out_size is not None and (inst.shape[1], inst.shape[0]) != tuple(spec.out_size):
        img, inst = resize_pair(np.ascontiguousarray(img), np.ascontiguousarray(inst), spec.out_size)
    return np.ascontiguousarray(img), np.ascontiguousarray(inst)


def collate(batch: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack items of equal size (crops make them equal; whole images of one size also work)."""
    shapes = {tuple(b[0].shape) for b in batch}
    if len(shapes) > 1:
        raise DataError(f"training images in one batch differ in size {sorted(shapes)}; set crop_size or load_size, or batch_size 1")
    return torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch]), torch.stack([b[2] for b in batch])
