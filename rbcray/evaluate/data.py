"""Evaluation data: real test/train images and synthetic samples as in-memory :class:`Sample`s.

Bailo et al. (Sec. 5) train on real and synthetic (image, instance mask) pairs and test on real
images only. rbcray's sources:

- **real, with instance masks**: an rbcray dataset folder (``rbcray annotate`` output on
  Chula-RBC-12). Its masks are *derived* by classical segmentation, not drawn by people, and every
  report says so (:attr:`RealSource.provenance`).
- **real, boxes only**: ``bccd-txl-pbc``, the RBC boxes (class 1) of the BCCD frames of TXL-PBC;
  usable for detection only. Its own ``test`` split is the test pool.
- **synthetic**: the generation engine's Parquet shards (issue 5 schema: ``sample_id``, ``image``
  PNG bytes, ``instance_mask`` uint16 PNG bytes, ...) under a local or ``s3://`` URI, read with
  pyarrow here (Ray Data in :mod:`rbcray.distributed.sweep`); or a synthetic dataset folder.

Every sample is resized by the dataset's ``scale`` when loaded, so the cells' size in pixels is
set by the config, not by the detector or the crop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rbcray.data.dataset import Dataset
from rbcray.data.formats import check_instances, instance_boxes
from rbcray.data.registry import is_dataset_name
from rbcray.data.sources import open_source
from rbcray.errors import DataError, RbcrayError
from rbcray.io import decode_png, read_image

#: The manifest the generation engine writes last into its output; its absence means the run
#: is incomplete (issue 5). Parquet shards are the ``*.parquet`` files beside it.
SHARD_MANIFEST = "manifest.json"
SYNTHETIC_COLUMNS = ("sample_id", "image", "instance_mask")
BCCD = "bccd-txl-pbc"
BCCD_RBC_CLASS = 1


@dataclass(frozen=True)
class Sample:
    """One image with its annotation: an instance map, or (box-only sets) boxes."""

    name: str
    origin: str  # "real" or "synthetic"
    image: np.ndarray  # (H, W, 3) uint8 RGB
    instances: np.ndarray | None = None  # (H, W) uint16, 0 = background
    boxes: np.ndarray | None = None  # (N, 4) float32 x0, y0, x1, y1 (box-only sets)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])

    def cell_boxes(self) -> np.ndarray:
        """(N, 4) float32 boxes of all cells (from the instance map when there is one)."""
        if self.instances is not None:
            return instance_boxes(self.instances)[1].astype(np.float32)
        return np.zeros((0, 4), np.float32) if self.boxes is None else self.boxes.astype(np.float32)


def scale_sample(s: Sample, scale: float) -> Sample:
    """Resize a sample by ``scale`` (area filter for images, nearest for instance maps)."""
    if scale == 1.0:
        return s
    h, w = s.shape
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    img = cv2.resize(s.image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    inst = None if s.instances is None else cv2.resize(s.instances, (nw, nh), interpolation=cv2.INTER_NEAREST)
    boxes = None if s.boxes is None else (s.boxes * np.float32([nw / w, nh / h, nw / w, nh / h])).astype(np.float32)
    return replace(s, image=img, instances=inst, boxes=boxes)


# ----------------------------------------------------------------------------- real data
@dataclass(frozen=True)
class RealSource:
    """A real dataset opened for evaluation: names, sizes, and a loader per index."""

    spec: str
    names: tuple[str, ...]
    sizes: tuple[tuple[int, int], ...]  # (height, width) per sample, before scaling
    has_masks: bool
    provenance: str
    #: indices that must form the test pool (a dataset's own test split), or None
    test_pool: tuple[int, ...] | None
    _dataset: Any = None
    _source: Any = None
    #: the dataset's name as split files and provenance records give it
    dataset_name: str = ""

    def __len__(self) -> int:
        return len(self.names)

    def load(self, i: int, scale: float = 1.0) -> Sample:
        """Sample ``i``, resized by ``scale``."""
        if self._dataset is not None:
            ds: Dataset = self._dataset
            stem = self.names[i]
            s = Sample(stem, "real", ds.load_image(stem), ds.load_instances(stem))
        else:
            src = self._source.images[i]
            img = read_image(src.path)
            px = src.boxes_px(img.shape[1], img.shape[0])
            rbc = px[px[:, 0] == BCCD_RBC_CLASS, 1:] if len(px) else np.zeros((0, 4))
            h, w = img.shape[:2]
            rbc = np.clip(rbc, 0, [w, h, w, h]).astype(np.float32)
            s = Sample(src.stem, "real", img, None, rbc)
        return scale_sample(s, scale)


def open_real(spec: str, data_dir: str | Path | None = None) -> RealSource:
    """Open ``bccd-txl-pbc`` (RBC boxes) or an rbcray dataset folder (instance masks)."""
    if spec == BCCD:
        src = open_source(BCCD, data_dir)
        imgs = [s for s in src.images if s.boxes_yolo is not None]
        if not imgs:
            raise DataError(f"{src.root}: no labelled images found")
        src = type(src)(name=src.name, root=src.root, images=tuple(imgs))
        sizes = tuple(_jpeg_size(s.path) for s in imgs)
        test = tuple(i for i, s in enumerate(imgs) if s.split == "test")
        return RealSource(
            spec, tuple(s.stem for s in imgs), sizes, False,
            "BCCD frames of TXL-PBC: RBC boxes re-annotated by people (YOLO labels)", test or None, None, src,
            src.name,
        )
    if is_dataset_name(spec):
        raise DataError(
            f"{spec}: has no instance masks; run 'rbcray annotate {spec} --out DIR' and give DIR as the real dataset"
        )
    ds = Dataset.open(localise_dataset(spec))
    if not ds.has_images:
        raise DataError(f"{spec}: dataset has samples without images (a mask-only dataset cannot be evaluated on)")
    manual = ds.meta.get("kind") == "manual"
    prov = (
        f"{ds.name}: instance masks drawn by people" if manual else
        f"{ds.name}: instance masks DERIVED by classical segmentation ('rbcray annotate'), not manual ground truth"
    )
    sizes = tuple((int(r["height"]), int(r["width"])) for r in ds.samples)
    return RealSource(spec, tuple(ds.stems), sizes, True, prov, None, ds, None, ds.name)


@contextlib.contextmanager
def storage_errors(uri: str, what: str = "read") -> Iterator[None]:
    """Turn object-store failures (no credentials, no network, no bucket) into one-line errors."""
    try:
        yield
    except RbcrayError:
        raise
    except Exception as e:  # noqa: BLE001 - botocore, aiohttp, pyarrow... raise many types
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise DataError(f"{uri}: cannot {what} ({type(e).__name__}: {msg})") from None


def localise_dataset(uri: str) -> Path:
    """A dataset folder in object storage (``s3://…``) copied once into the local cache; local
    paths are returned as they are. Only complete folders (with ``dataset.json``) are copied."""
    from rbcray import storage

    if not storage.is_remote(uri):
        return Path(uri).expanduser()
    import hashlib
    import shutil
    import tempfile

    from rbcray.data.registry import cache_dir

    dest = cache_dir() / "eval-datasets" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    if (dest / "dataset.json").is_file():
        return dest
    with storage_errors(uri):
        if not storage.exists(storage.join(uri, "dataset.json")):
            raise DataError(f"{uri}: no dataset.json (not a complete rbcray dataset folder)")
        fs, path = storage.filesystem(uri)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=dest.parent))
        try:
            fs.get(path.rstrip("/") + "/", str(tmp) + "/", recursive=True)
            shutil.rmtree(dest, ignore_errors=True)
            tmp.rename(dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def _jpeg_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file (decoded once at validation; 220 small JPEGs)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f"{path}: not a readable image")
    return int(img.shape[0]), int(img.shape[1])


# ----------------------------------------------------------------------------- synthetic data
@dataclass(frozen=True)
class SyntheticSource:
    """Synthetic samples: Parquet shards (``kind='parquet'``) or a dataset folder."""

    uri: str
    kind: str
    count: int
    #: sample ids in increasing order (parquet) or stems in order (folder)
    ids: tuple[Any, ...]
    provenance: str
    #: (height, width) per sample, in the order of ``ids``
    sizes: tuple[tuple[int, int], ...] = ()

    def first_ids(self, n: int) -> list[Any]:
        """The ``n`` samples every regime draws from: the lowest sample ids (deterministic)."""
        if n > self.count:
            raise DataError(f"{self.uri}: {n} synthetic samples needed but only {self.count} exist")
        return list(self.ids[:n])


def _parquet_fs(uri: str) -> tuple[Any, str]:
    from rbcray.storage import pyarrow_filesystem

    try:
        return pyarrow_filesystem(uri)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for bad URIs
        raise DataError(f"{uri}: cannot open ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def shard_files(uri: str) -> tuple[Any, list[str]]:
    """(pyarrow filesystem, sorted shard paths) of a complete generation output."""
    with storage_errors(uri):
        return _shard_files(uri)


def _shard_files(uri: str) -> tuple[Any, list[str]]:
    import pyarrow.fs as pafs

    fs, root = _parquet_fs(uri)
    info = fs.get_file_info(root)
    if info.type != pafs.FileType.Directory:
        raise DataError(f"{uri}: synthetic shard folder not found")
    if fs.get_file_info(f"{root.rstrip('/')}/{SHARD_MANIFEST}").type != pafs.FileType.File:
        raise DataError(f"{uri}: no {SHARD_MANIFEST} (the generation run is missing or incomplete)")
    sel = pafs.FileSelector(root, recursive=False)
    files = sorted(f.path for f in fs.get_file_info(sel) if f.path.endswith(".parquet") and not f.base_name.startswith("."))
    if not files:
        raise DataError(f"{uri}: no .parquet shards found")
    return fs, files


def open_synthetic(uri: str) -> SyntheticSource:
    """Open synthetic shards (a folder or ``s3://`` URI holding ``manifest.json`` + ``*.parquet``)
    or a synthetic dataset folder; reads only ids and counts."""
    local = Path(uri).expanduser()
    if "://" not in uri and local.is_dir() and not (local / SHARD_MANIFEST).exists() and not list(local.glob("*.parquet")):
        ds = Dataset.open(local)
        if not ds.has_images:
            raise DataError(f"{uri}: synthetic dataset has samples without images")
        sizes = tuple((int(r["height"]), int(r["width"])) for r in ds.samples)
        return SyntheticSource(uri, "folder", len(ds), tuple(ds.stems), f"{ds.name}: synthetic dataset folder", sizes)
    import pyarrow.parquet as pq

    fs, files = shard_files(uri)
    rows: list[tuple[int, int, int]] = []
    for f in files:
        try:
            t = pq.read_table(f, columns=["sample_id", "height", "width"], filesystem=fs)
        except Exception as e:  # noqa: BLE001
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(f"{f}: not a readable synthetic shard ({msg})") from None
        cols = [t.column(c).to_pylist() for c in ("sample_id", "height", "width")]
        rows.extend((int(a), int(b), int(c)) for a, b, c in zip(*cols))
    rows.sort()
    ids = [r[0] for r in rows]
    if len(set(ids)) != len(ids):
        raise DataError(f"{uri}: sample ids repeat across shards (run 'rbcray verify {uri}')")
    sizes = tuple((r[1], r[2]) for r in rows)
    return SyntheticSource(uri, "parquet", len(ids), tuple(ids), f"{uri}: generated Parquet shards", sizes)


def decode_synthetic_row(row: dict[str, Any], scale: float = 1.0) -> Sample:
    """A :class:`Sample` from one Parquet row (issue 5 schema); errors name the sample id."""
    sid = row["sample_id"]
    name = f"synthetic-{sid}"
    img = decode_png(row["image"], name=f"{name} image")
    if img.ndim != 3:
        raise DataError(f"{name}: image is not RGB")
    inst = decode_png(row["instance_mask"], name=f"{name} instance_mask")
    inst = check_instances(inst, f"{name} instance_mask", img.shape)
    return scale_sample(Sample(name, "synthetic", img, inst), scale)


def load_synthetic(src: SyntheticSource, n: int, scale: float = 1.0) -> list[Sample]:
    """The first ``n`` synthetic samples (lowest ids), without Ray (pyarrow / dataset folder)."""
    want = src.first_ids(n)
    if n == 0:
        return []
    if src.kind == "folder":
        ds = Dataset.open(src.uri)
        return [
            scale_sample(Sample(f"synthetic-{s}", "synthetic", ds.load_image(s), ds.load_instances(s)), scale)
            for s in want
        ]
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    fs, files = shard_files(src.uri)
    with storage_errors(src.uri):
        table = pads.dataset(files, filesystem=fs, format="parquet").to_table(
            columns=list(SYNTHETIC_COLUMNS), filter=pc.field("sample_id") <= want[-1]
        )
    rows = sorted(table.to_pylist(), key=lambda r: r["sample_id"])
    return [decode_synthetic_row(r, scale) for r in rows[:n]]
