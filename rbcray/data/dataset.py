"""Dataset folders: the on-disk form every rbcray stage reads and writes.

Layout (Sec. 3 of Bailo et al. describes the same triplet: image, instance mask, colour mask)::

    DIR/images/<stem>.<ext>      the smear (absent for mask-only datasets)
    DIR/instances/<stem>.png     uint16 label map, 0 = background, 1..N = cells
    DIR/masks/<stem>.png         colour-coded mask (touching cells never share a colour)
    DIR/coco.json                COCO instances, RLE segmentation, one annotation per cell
    DIR/dataset.json             manifest: provenance, config, categories, one record per sample

``dataset.json`` is written last, and the folder is built under a staging name and renamed into
place, so a folder that has ``dataset.json`` is complete. A folder made by hand with ``images/``
plus ``instances/`` (or colour ``masks/``) and no manifest can be opened too.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rbcray import __version__
from rbcray.data.formats import (
    CATEGORIES,
    coco_document,
    color_instances,
    encode_color_mask,
    instances_to_coco,
    read_color_mask,
    read_instances,
)
from rbcray.errors import DataError
from rbcray.io import (
    IMAGE_EXTENSIONS,
    atomic_write_bytes,
    encode_image,
    encode_png,
    natural_key,
    read_image,
    read_json,
    read_png_unchanged,
    staged_dir,
    write_json,
)

FORMAT = "rbcray-dataset"
FORMAT_VERSION = 1
_STEM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def utc_now() -> str:
    """ISO-8601 UTC timestamp for provenance records."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


class DatasetWriter:
    """Write a dataset folder atomically: ``with DatasetWriter(out, ...) as w: w.add(...)``.

    Nothing appears at ``out`` until the ``with`` block ends without error; then ``coco.json`` and
    finally ``dataset.json`` are written and the staged folder is renamed to ``out``.
    """

    def __init__(
        self,
        out: str | Path,
        *,
        name: str,
        kind: str,
        config: dict[str, Any] | None = None,
        source: dict[str, Any] | None = None,
        overwrite: bool = False,
        categories: list[dict[str, Any]] | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        self.out = Path(out)
        #: what real images the inputs of a derived dataset learned from (rbcray.data.provenance)
        self.provenance = provenance
        self.name, self.kind = name, kind
        self.config = config or {}
        self.source = source or {}
        self.overwrite = overwrite
        self.categories = categories or CATEGORIES
        self.samples: list[dict[str, Any]] = []
        self._coco_images: list[dict[str, Any]] = []
        self._coco_anns: list[dict[str, Any]] = []
        self._stems: set[str] = set()
        self._ctx = None
        self.root: Path | None = None

    def __enter__(self) -> DatasetWriter:
        self._ctx = staged_dir(self.out, overwrite=self.overwrite)
        self.root = self._ctx.__enter__()
        for sub in ("images", "instances", "masks"):
            (self.root / sub).mkdir()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        assert self._ctx is not None and self.root is not None
        if exc_type is None:
            try:
                self._finish()
            except BaseException as e:
                self._ctx.__exit__(type(e), e, e.__traceback__)
                raise
        return bool(self._ctx.__exit__(exc_type, exc, tb))

    def add(
        self,
        stem: str,
        instances: np.ndarray,
        *,
        image: np.ndarray | None = None,
        image_bytes: bytes | None = None,
        image_ext: str = ".png",
        categories: dict[int, int] | None = None,
        colors: np.ndarray | None = None,
        extra: dict[str, Any] | None = None,
        morphology: dict[int, int] | None = None,
    ) -> dict[str, Any]:
        """Add one sample. ``image`` (RGB array) or ``image_bytes`` (already encoded, e.g. the
        original JPEG) are optional; ``colors`` (palette index per cell id) is computed if absent.
        ``morphology`` (red-cell class per RBC id, :mod:`rbcray.data.morphology`) goes into the
        COCO annotations and the record's ``morphology_counts``."""
        if self.root is None:
            raise RuntimeError("DatasetWriter.add() outside its 'with' block")
        if not _STEM_RE.match(stem):
            raise DataError(f"sample name {stem!r}: use letters, digits, '.', '_' and '-' only")
        if stem in self._stems:
            raise DataError(f"sample name {stem!r} appears twice")
        self._stems.add(stem)
        h, w = instances.shape[:2]
        rec: dict[str, Any] = {"stem": stem, "width": int(w), "height": int(h)}
        if image is not None or image_bytes is not None:
            if image is not None and tuple(image.shape[:2]) != (h, w):
                raise DataError(f"{stem}: mask size {w}x{h} does not match image size {image.shape[1]}x{image.shape[0]}")
            ext = image_ext.lower() if image_ext.startswith(".") else "." + image_ext.lower()
            data = image_bytes if image_bytes is not None else encode_image(image, ext)
            rel = f"images/{stem}{ext}"
            atomic_write_bytes(self.root / rel, data)
            rec["image"] = rel
        else:
            rec["image"] = None
        if colors is None:
            colors = color_instances(instances, name=stem)
        atomic_write_bytes(self.root / f"instances/{stem}.png", encode_png(instances.astype(np.uint16)))
        atomic_write_bytes(self.root / f"masks/{stem}.png", encode_png(encode_color_mask(instances, colors, name=stem)))
        rec["instances"] = f"instances/{stem}.png"
        rec["mask"] = f"masks/{stem}.png"
        image_id = len(self._coco_images) + 1
        anns = instances_to_coco(instances, image_id, len(self._coco_anns) + 1, categories, morphology)
        rec["n_cells"] = len(anns)
        rec["n_border"] = sum(a["border"] for a in anns)
        if morphology is not None:
            from rbcray.data.morphology import counts_by_name

            rec["morphology_counts"] = counts_by_name(morphology)
        if extra:
            rec.update(extra)
        self._coco_images.append(
            {"id": image_id, "file_name": rec["image"] or rec["mask"], "width": int(w), "height": int(h), "rbcray_stem": stem}
        )
        self._coco_anns.extend(anns)
        self.samples.append(rec)
        return rec

    def _finish(self) -> None:
        assert self.root is not None
        write_json(self.root / "coco.json", coco_document(self._coco_images, self._coco_anns, {"description": self.name}))
        write_json(
            self.root / "dataset.json",
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "name": self.name,
                "kind": self.kind,
                "created": utc_now(),
                "rbcray_version": __version__,
                "source": self.source,
                "config": self.config,
                "categories": self.categories,
                "n_samples": len(self.samples),
                "n_cells": int(sum(s["n_cells"] for s in self.samples)),
                "samples": self.samples,
                **({"provenance": self.provenance} if self.provenance is not None else {}),
            },
        )


class Dataset:
    """A dataset folder opened for reading (see the module docstring for the layout)."""

    def __init__(self, root: Path, meta: dict[str, Any]) -> None:
        self.root = root
        self.meta = meta
        self.samples: list[dict[str, Any]] = meta["samples"]
        self._by_stem = {s["stem"]: s for s in self.samples}
        self._coco_cats: dict[str, dict[int, int]] | None = None

    @classmethod
    def open(cls, path: str | Path) -> Dataset:
        """Open a dataset folder; raises :class:`DataError` naming what is missing or wrong."""
        root = Path(path)
        if not root.is_dir():
            raise DataError(f"{root}: dataset folder not found")
        manifest = root / "dataset.json"
        if manifest.exists():
            meta = read_json(manifest)
            if not isinstance(meta, dict) or meta.get("format") != FORMAT or "samples" not in meta:
                raise DataError(f"{manifest}: not an rbcray dataset manifest")
            if meta.get("format_version", 0) > FORMAT_VERSION:
                raise DataError(f"{manifest}: format version {meta['format_version']} is newer than this rbcray reads")
            return cls(root, meta)
        return cls(root, _scan_unmanaged(root))

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.samples)

    @property
    def stems(self) -> list[str]:
        return [s["stem"] for s in self.samples]

    def subset(self, stems: list[str] | tuple[str, ...]) -> Dataset:
        """The same folder restricted to ``stems`` (in the folder's order), e.g. one split role."""
        for s in stems:
            self.record(s)  # DataError naming a stem that is not in the folder
        keep = set(stems)
        meta = {**self.meta, "samples": [r for r in self.samples if r["stem"] in keep]}
        sub = Dataset(self.root, meta)
        sub._coco_cats = self._coco_cats
        return sub

    @property
    def name(self) -> str:
        return str(self.meta.get("name", self.root.name))

    @property
    def has_images(self) -> bool:
        return all(s.get("image") for s in self.samples)

    def record(self, stem: str) -> dict[str, Any]:
        try:
            return self._by_stem[stem]
        except KeyError:
            raise DataError(f"{self.root}: no sample named {stem!r}") from None

    def image_path(self, stem: str) -> Path:
        rel = self.record(stem).get("image")
        if not rel:
            raise DataError(f"{self.root}: sample {stem!r} has no image (a mask-only dataset)")
        return self.root / rel

    def load_image(self, stem: str) -> np.ndarray:
        """RGB uint8 image of a sample, checked against its mask size."""
        img = read_image(self.image_path(stem))
        rec = self.record(stem)
        if img.shape[:2] != (rec["height"], rec["width"]):
            raise DataError(
                f"{self.image_path(stem)}: image size {img.shape[1]}x{img.shape[0]} does not match its mask "
                f"{rec['width']}x{rec['height']}"
            )
        return img

    def load_instances(self, stem: str) -> np.ndarray:
        """uint16 instance map of a sample."""
        rec = self.record(stem)
        shape = (rec["height"], rec["width"])
        if rec.get("instances"):
            return read_instances(self.root / rec["instances"], shape)
        return read_color_mask(self.root / rec["mask"], shape)

    def load_categories(self, stem: str) -> dict[int, int]:
        """Category id per cell id (from coco.json; every cell is RBC when there is none)."""
        if self._coco_cats is None:
            self._coco_cats = {}
            coco_path = self.root / "coco.json"
            if coco_path.exists():
                coco = read_json(coco_path)
                stem_of = {im["id"]: im.get("rbcray_stem", Path(im["file_name"]).stem) for im in coco.get("images", [])}
                for a in coco.get("annotations", []):
                    s = stem_of.get(a["image_id"])
                    if s is not None:
                        self._coco_cats.setdefault(s, {})[int(a.get("instance_id", a["id"]))] = int(a["category_id"])
        inst_cats = self._coco_cats.get(stem)
        if inst_cats is None:
            ids = np.unique(self.load_instances(stem))
            return {int(i): 1 for i in ids if i > 0}
        return inst_cats


def _scan_unmanaged(root: Path) -> dict[str, Any]:
    """Build a manifest for a hand-made folder (images/ + instances/ or masks/)."""
    inst_dir, mask_dir, img_dir = root / "instances", root / "masks", root / "images"
    src = inst_dir if inst_dir.is_dir() else mask_dir if mask_dir.is_dir() else None
    if src is None:
        raise DataError(f"{root}: not a dataset folder (no dataset.json, instances/ or masks/); run 'rbcray annotate' first")
    images = {}
    if img_dir.is_dir():
        images = {p.stem: p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
    samples = []
    for p in sorted(src.glob("*.png"), key=natural_key):
        arr = read_png_unchanged(p)
        rec = {
            "stem": p.stem,
            "width": int(arr.shape[1]),
            "height": int(arr.shape[0]),
            "image": f"images/{images[p.stem].name}" if p.stem in images else None,
            "instances": f"instances/{p.name}" if src == inst_dir else None,
            "mask": f"masks/{p.name}" if (mask_dir / p.name).exists() else None,
        }
        samples.append(rec)
    if not samples:
        raise DataError(f"{src}: no .png masks found")
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "name": root.name, "kind": "unmanaged", "samples": samples}
