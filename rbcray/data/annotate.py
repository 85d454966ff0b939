"""``rbcray annotate``: derive instance masks for smears that have none (paper Sec. 3 input).

Bailo et al. start from real smears with per-cell instance masks (Sec. 3: the cell-shape bank and
the pix2pixHD training pairs both need them). Chula-RBC-12 and BCCD-TXL only carry points or boxes,
so rbcray derives the masks by classical segmentation (:mod:`rbcray.data.segment`: background-
corrected green-channel threshold, hole filling, stain-based WBC and platelet recognition;
:mod:`rbcray.data.splitting`: distance-transform watershed for touching cells) and writes an ``annotated`` dataset folder (:mod:`rbcray.data.dataset`) that
every later stage reads. The source labels never shape the masks; :mod:`rbcray.data.quality` and
``benchmarks/bench_annotate.py`` measure the masks against them. Chula's point labels are only
carried onto the finished instances as red-cell morphology classes (:mod:`rbcray.data.morphology`).
"""

from __future__ import annotations

import concurrent.futures as cf
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rbcray.config import check, from_dict, to_dict
from rbcray.data.dataset import DatasetWriter
from rbcray.data.morphology import assign_morphology
from rbcray.data.segment import segment_image
from rbcray.data.sources import Source, SourceImage
from rbcray.errors import ConfigError, DataError
from rbcray.io import read_image


@dataclass(frozen=True)
class AnnotateConfig:
    """Parameters of the segmentation; lengths are relative to the cell diameter unless in px.

    Every field is saved in the output's ``dataset.json`` so a derived dataset says how it was made.
    """

    #: Expected cell (RBC) diameter in px; None = estimate it per image from isolated cells.
    cell_size: float | None = None
    #: Bounds (px) the per-image estimate is clamped to (and the value used when no cell is isolated
    #: enough to measure is their geometric mean).
    cell_size_range: tuple[float, float] = (20.0, 200.0)
    #: Background illumination is a grey closing of each channel with a disc this many cell
    #: diameters wide (larger than any cell, so cells vanish from it), then smoothed.
    background_scale: float = 2.5
    #: Gaussian smoothing of the darkness map before thresholding, sigma in cell diameters.
    smooth: float = 0.03
    #: Multiplier on the Otsu threshold of the darkness map (<1 grows cells, >1 shrinks them).
    threshold_scale: float = 1.0
    #: Hysteresis: pixels above ``mode + hysteresis * (threshold - mode)`` of the darkness map
    #: (mode = background) join the cell they touch (pale interiors); 1 = no hysteresis.
    hysteresis: float = 0.6
    #: Opening radius in cell diameters: removes thin lines (pointer, scale bar) and ragged edges.
    open_radius: float = 0.08
    #: Holes (e.g. the bright central pallor) smaller than this fraction of a typical cell area are
    #: filled; larger enclosed background (gaps between a ring of touching cells) is kept.
    fill_holes: float = 0.5
    #: Watershed markers: distance-transform maxima whose dynamic is at least this fraction of the
    #: typical cell radius (h-maxima) ...
    h_maxima: float = 0.12
    #: ... of which, closer than this many cell diameters, only the deeper one is kept.
    min_distance: float = 0.4
    #: Split heavily overlapping cells: a non-convex blob (solidity of its smoothed outline below
    #: ``convex``) gets as many markers as its area holds cells, lowering h for it as needed.
    split_overlaps: bool = True
    convex: float = 0.97
    #: Area of one cell within an overlapping clump, in typical cell areas (<1: overlap hides part).
    split_area: float = 1.0
    #: When even the lowest h finds too few markers, split the blob by k-means on pixel positions.
    kmeans_fallback: bool = True
    #: Pallor markers: a blob lighter than the surrounding rim by this much darkness (0..1 scale;
    #: 0 = off) inside a cell marks one cell; closing disc radius in cell diameters.
    pallor: float = 0.0
    pallor_radius: float = 0.25
    #: Regions smaller than this fraction of a typical cell area are specks and are dropped
    #: (platelets are recognised separately, see ``platelet_stain``).
    min_area: float = 0.2
    #: The same floor for cells cut by the image border (only part of them shows).
    min_area_border: float = 0.05
    #: Regions larger than this many typical cell areas are artefacts (clumps, stain deposits) and
    #: are dropped.
    max_area: float = 6.0
    #: Recognise white blood cells: a nucleus is stain (blue minus green, background-normalised)
    #: above ``wbc_stain`` covering at least ``wbc_min_area`` of a typical cell area.
    detect_wbc: bool = True
    wbc_stain: float = 0.3
    wbc_min_area: float = 0.25
    #: Stain of WBC cytoplasm (raised automatically above the image's RBC stain).
    wbc_cytoplasm: float = 0.15
    #: Small blobs stained this much above the image's typical cell are Platelets (category 3);
    #: other specks are dropped as debris. Set above 2 to drop all specks.
    platelet_stain: float = 0.12
    #: Platelets smaller than this fraction of a typical cell area are dust and are dropped.
    platelet_min_area: float = 0.02

    def __post_init__(self) -> None:
        if self.cell_size is not None:
            check(4.0 <= self.cell_size <= 2000.0, f"cell_size = {self.cell_size}: must be within 4..2000 px (or None to estimate)")
        lo, hi = self.cell_size_range
        check(4.0 <= lo < hi <= 2000.0, f"cell_size_range = {self.cell_size_range}: need 4 <= min < max <= 2000 px")
        check(self.background_scale >= 1.0, f"background_scale = {self.background_scale}: must be >= 1 (wider than a cell)")
        check(0.0 <= self.smooth <= 0.5, f"smooth = {self.smooth}: must be within 0..0.5 cell diameters")
        check(0.2 <= self.threshold_scale <= 5.0, f"threshold_scale = {self.threshold_scale}: must be within 0.2..5")
        check(0.0 <= self.hysteresis <= 1.0, f"hysteresis = {self.hysteresis}: must be within 0..1")
        check(0.0 <= self.open_radius <= 0.4, f"open_radius = {self.open_radius}: must be within 0..0.4 cell diameters")
        check(0.0 <= self.fill_holes <= 2.0, f"fill_holes = {self.fill_holes}: must be within 0..2 cell areas")
        check(0.0 < self.h_maxima <= 1.0, f"h_maxima = {self.h_maxima}: must be within (0, 1] cell radii")
        check(0.0 <= self.min_distance <= 2.0, f"min_distance = {self.min_distance}: must be within 0..2 cell diameters")
        check(0.3 <= self.split_area <= 2.0, f"split_area = {self.split_area}: must be within 0.3..2")
        check(0.0 <= self.pallor <= 1.0, f"pallor = {self.pallor}: must be within 0..1 (0 = off)")
        check(0.05 <= self.pallor_radius <= 0.5, f"pallor_radius = {self.pallor_radius}: must be within 0.05..0.5")
        check(0.5 <= self.convex <= 1.0, f"convex = {self.convex}: must be within 0.5..1")
        check(0.0 <= self.min_area < 1.0, f"min_area = {self.min_area}: must be within [0, 1) cell areas")
        check(0.0 <= self.min_area_border <= self.min_area, f"min_area_border = {self.min_area_border}: must be within 0..min_area")
        check(self.max_area > 1.0, f"max_area = {self.max_area}: must be > 1 cell area")
        check(0.0 < self.wbc_stain <= 2.0, f"wbc_stain = {self.wbc_stain}: must be within (0, 2]")
        check(0.0 < self.wbc_cytoplasm <= self.wbc_stain, f"wbc_cytoplasm = {self.wbc_cytoplasm}: must be within (0, wbc_stain]")
        check(0.0 < self.wbc_min_area <= 10.0, f"wbc_min_area = {self.wbc_min_area}: must be within (0, 10] cell areas")
        check(0.0 < self.platelet_stain <= 3.0, f"platelet_stain = {self.platelet_stain}: must be within (0, 3]")
        check(0.0 <= self.platelet_min_area <= 1.0, f"platelet_min_area = {self.platelet_min_area}: must be within 0..1 cell areas")


#: Presets per public dataset (the generic default serves any other folder). The searched values
#: were chosen by ``benchmarks/select_annotate_presets.py`` on each source's train split (ranking)
#: and val split (deciding), never on its test split; the rest are facts of the source.
PRESETS: dict[str, AnnotateConfig] = {
    # 640x480 at 1000x: cells ~35-70 px across, varying between smears, so estimated per image.
    "chula-rbc-12": AnnotateConfig(
        cell_size=None,
        cell_size_range=(28.0, 90.0),
        # Chosen on train/val: a slightly lower threshold keeps pale cells whole; lower h-maxima.
        threshold_scale=0.9,
        h_maxima=0.08,
    ),
    # 640x480 BCCD frames: RBCs ~100 px, heavy overlap, a large WBC in most frames.
    "bccd-txl-pbc": AnnotateConfig(
        cell_size=None,
        cell_size_range=(70.0, 140.0),
        # The pale centres reach almost background level: a low hysteresis floor keeps them.
        hysteresis=0.3,
        # Chosen on train/val. Clumps of strongly overlapping RBCs: one marker per central
        # pallor, and a clump's cell count from its area with part of each cell hidden under its
        # neighbours (split_area < 1); slivers cut by the frame edge below min_area_border dropped.
        pallor=0.05,
        split_area=0.85,
        min_area_border=0.2,
    ),
}


def config_for_source(name: str, **overrides: Any) -> AnnotateConfig:
    """The preset for dataset ``name`` (generic default otherwise) with ``overrides`` applied.

    ``None`` overrides are ignored (CLI options left unset); unknown keys raise ConfigError.
    """
    base = PRESETS.get(name, AnnotateConfig())
    changes = {k: v for k, v in overrides.items() if v is not None}
    if not changes:
        return base
    data = to_dict(base)
    data.update(changes)
    return from_dict(AnnotateConfig, data, where=f"annotate config for {name!r}")


def annotate_image(rgb: np.ndarray, cfg: AnnotateConfig) -> tuple[np.ndarray, dict[int, int]]:
    """Derive the instance map of one smear: RGB uint8 (H, W, 3) -> (uint16 map, category per id).

    0 is background, cells are 1..N in raster order of their first pixel; categories are the ids
    of :data:`rbcray.data.formats.CATEGORIES` (1 RBC, 2 WBC, 3 Platelet). Cells cut by the image
    border are kept. Pure and deterministic (see :mod:`rbcray.data.segment` for the algorithm).
    """
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        desc = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise DataError(f"annotate_image: expected an RGB uint8 (H, W, 3) image, got {desc}")
    if min(rgb.shape[:2]) < 16:
        raise DataError(f"annotate_image: image {rgb.shape[1]}x{rgb.shape[0]} is too small to segment")
    return segment_image(rgb, cfg)


def _stem_for(stem: str, taken: set[str]) -> str:
    """A DatasetWriter-safe, unique sample name derived from a source file's stem."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", stem)
    if not safe or not safe[0].isalnum():
        safe = "x" + safe
    out, k = safe, 2
    while out in taken:
        out, k = f"{safe}-{k}", k + 1
    taken.add(out)
    return out


def _annotate_file(path: Path, cfg: AnnotateConfig) -> tuple[bytes, np.ndarray, dict[int, int]]:
    """Worker: the original file's bytes and its derived masks (module level so it pickles)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    rgb = read_image(path)
    inst, cats = annotate_image(rgb, cfg)
    return data, inst, cats


def _results(images: list[SourceImage], cfg: AnnotateConfig, workers: int) -> Iterator[tuple[bytes, np.ndarray, dict[int, int]]]:
    """Annotate ``images`` in order; with ``workers > 1`` in a process pool, at most a few images
    ahead of the consumer (memory stays bounded; order, hence output bytes, never changes)."""
    if workers <= 1 or len(images) <= 1:
        for s in images:
            yield _annotate_file(s.path, cfg)
        return
    import multiprocessing as mp

    # spawn: the caller may hold threads (Ray, OpenCV) that a forked child must not inherit.
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        pending: list[cf.Future] = []
        it = iter(images)
        for s in it:
            pending.append(pool.submit(_annotate_file, s.path, cfg))
            if len(pending) >= 2 * workers:
                break
        while pending:
            fut = pending.pop(0)
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(_annotate_file, nxt.path, cfg))
            try:
                yield fut.result()
            except BaseException:
                for f in pending:
                    f.cancel()
                raise


def annotate_source(
    source: Source,
    out: str | Path,
    cfg: AnnotateConfig,
    limit: int | None = None,
    overwrite: bool = False,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Annotate a source's smears into the dataset folder ``out`` (kind ``annotated``).

    ``limit`` takes the first N images in the source's natural order (Chula: 1.jpg, 2.jpg, ...;
    BCCD: train, val, test), labelled or not: the labels play no part in annotation. The original
    image files are copied byte for byte; each sample records its ``source_file`` (relative to the
    source root) and ``split``. ``workers > 1`` uses that many processes; the folder's content is
    identical for any number. ``progress(done, total)`` is called after each image. The folder
    appears only when complete (:class:`~rbcray.data.dataset.DatasetWriter`); an existing
    non-empty ``out`` is an error unless ``overwrite``.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        raise ConfigError(f"limit = {limit!r}: must be a positive number of images")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers = {workers!r}: must be at least 1")
    images = list(source.images)
    if not images:
        raise DataError(f"{source.root}: source {source.name!r} has no images")
    chosen = images[:limit] if limit is not None else images
    meta = {"dataset": source.name, "root": str(source.root), "n_available": len(images)}
    taken: set[str] = set()
    with DatasetWriter(out, name=source.name, kind="annotated", config=to_dict(cfg), source=meta, overwrite=overwrite) as w:
        for k, (s, (data, inst, cats)) in enumerate(zip(chosen, _results(chosen, cfg, workers)), start=1):
            try:
                rel = str(s.path.relative_to(source.root))
            except ValueError:
                rel = str(s.path)
            # Point labels (Chula) become red-cell morphology classes of the derived instances.
            extra: dict[str, Any] = {"source_file": rel, "split": s.split}
            morph = None
            if s.points is not None:
                morph, extra["morphology_points"] = assign_morphology(inst, cats, s.points)
            w.add(
                _stem_for(s.stem, taken),
                inst,
                image_bytes=data,
                image_ext=s.path.suffix.lower() or ".png",
                categories=cats,
                extra=extra,
                morphology=morph,
            )
            if progress is not None:
                progress(k, len(chosen))
    return Path(out)
