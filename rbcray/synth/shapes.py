"""Shape bank (paper Sec. 4.1): real cell shapes cut from instance masks, stored in Parquet.

``rbcray shapes DATASET_DIR --out shapes.parquet`` keeps the *clean* cells of a dataset folder, as
tight binary crops. The paper's bank came from hand-drawn masks; derived masks (``rbcray
annotate``) also hold pieces of clumps cut by the watershed (wedges, polygons) and of pointer lines
(hooks), which would otherwise be stamped into every synthetic mask. A cell is kept when it is,
in this order (each rule's drop count is the bank's filter report, ``meta["filter"]``):

1. ``border``: whole — not cut by the image border;
2. ``small``: at least ``min_area`` pixels;
3. ``touching``: isolated red cells — no other cell 8-connected to it (a cell of a split clump has a
   cut side; white cells and platelets are typed by stain, so kept); ``isolated=False`` keeps all;
4. ``irregular``: solidity (area / convex-hull area) at least ``min_solidity`` (0.9);
5. ``elongated``: perimeter² / area at most ``max_roundness`` (18: a 2.8:1 ellipse; a disc is
   4π ≈ 12.6), which drops hooks and ragged outlines while keeping elliptocytes;
6. ``size``: area within ``size_range`` (0.4, 2.5) times the median area of the cells of its
   category kept so far (fragments and merged pairs; a platelet is a tenth of a red cell).

``min_solidity=0, isolated=False, max_roundness=inf, size_range=None`` keeps every whole cell.
The file is plain Parquet, readable without rbcray (pyarrow, pandas, DuckDB); one row per cell:

=============  ==========  ===========================================================
column         type        meaning
=============  ==========  ===========================================================
exemplar_id    int32       row number, 0..N-1 (what synthetic cells refer to)
source         string      dataset name the cell comes from
stem           string      sample (image) name in that dataset
instance_id    int32       the cell's id in that sample's instance map
category       int16       COCO category id (1 RBC, 2 WBC, 3 Platelet)
morphology     int16       red-cell morphology class (rbcray.data.morphology: 0..12, -1 an
                           unlabelled RBC); null for WBC / platelets and for datasets without
                           morphology labels
height, width  int32       crop size = the cell's bounding box (px)
area           int32       cell pixels
mask_png       binary      the crop as an 8-bit greyscale PNG, 255 = cell, 0 = not
=============  ==========  ===========================================================

The file's key-value metadata ``rbcray.shape_bank`` holds a JSON record (source folder, counts,
mean size, rbcray version, creation time) and ``rbcray_provenance`` the exact image stems the
bank was cut from (and the split role, ``all`` without a split file; see
:mod:`rbcray.data.provenance`).

:class:`ShapeBank` loads such a file once (decoding every crop) and :meth:`ShapeBank.augment`
makes one augmented cell: rotation about the cell's centroid by any angle, scaling and flips, in
a single ``cv2.warpAffine`` of the small crop (bilinear, thresholded at half), never the canvas.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import cv2
import numpy as np

from rbcray import __version__
from rbcray.data.dataset import Dataset, utc_now
from rbcray.errors import DataError
from rbcray.io import atomic_write_bytes, decode_png, encode_png

if TYPE_CHECKING:
    from rbcray.data.splits import Splits

META_KEY = b"rbcray.shape_bank"
#: ShapeBank.morphology of an exemplar without a morphology label (a WBC or platelet)
NO_MORPHOLOGY = -2
COLUMNS = ("exemplar_id", "source", "stem", "instance_id", "category", "morphology", "height", "width", "area", "mask_png")


# ----------------------------------------------------------------------------- building
def solidity(crop: np.ndarray) -> float:
    """Area / convex-hull area of a binary crop (the hull taken around pixel squares, not centres)."""
    m = crop.astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return 0.0
    hull = cv2.convexHull(np.vstack(contours))
    # contourArea runs through pixel centres; half the hull's perimeter adds the pixels' outer halves
    hull_area = cv2.contourArea(hull) + cv2.arcLength(hull, True) / 2 + 1
    return float(min(1.0, m.sum() / hull_area))


#: the filter rules, in the order they are applied (see the module docstring)
RULES = ("border", "small", "touching", "irregular", "elongated", "size")


def extract_shapes(ds: Dataset, min_area: int = 1, min_solidity: float = 0.9, *, isolated: bool = True,
                   max_roundness: float = 18.0, size_range: tuple[float, float] | None = (0.4, 2.5),
                   report: dict[str, int] | None = None) -> dict[str, list]:
    """Columns of the shape bank for the clean cells of a dataset folder (rules: module docstring).

    ``report``, when given, receives the number of cells each rule dropped (and ``seen``, ``kept``).
    """
    from rbcray.data.morphology import RBC, UNLABELLED, load_dataset_morphology
    from rbcray.synth.shape_stats import cell_crops, features

    labels = load_dataset_morphology(ds.root)  # {} when the dataset has no morphology labels
    drops = dict.fromkeys(RULES, 0)
    rows = []
    seen = 0
    for rec in ds.samples:
        stem = rec["stem"]
        inst = ds.load_instances(stem)
        cats = ds.load_categories(stem)
        for cid, crop, whole, alone in cell_crops(inst, whole=False, isolated=False):
            seen += 1
            area = int(crop.sum())
            rule, cat = None, int(cats.get(cid, RBC))
            if not whole:
                rule = "border"  # cut by the border: not a whole cell shape
            elif area < min_area:
                rule = "small"
            elif isolated and not alone and cat == RBC:  # WBCs and platelets are typed by stain, not cut from clumps
                rule = "touching"
            else:
                _, rnd, _, sol = features(crop) if (min_solidity > 0 or math.isfinite(max_roundness)) else (0, 0.0, 0, 1.0)
                if min_solidity > 0 and sol < min_solidity:
                    rule = "irregular"
                elif rnd > max_roundness:
                    rule = "elongated"
            if rule:
                drops[rule] += 1
                continue
            morph = labels.get(stem, {}).get(cid, UNLABELLED) if labels and cat == RBC else None
            rows.append((stem, cid, cat, crop, area, morph))
    if size_range is not None and rows:
        med = {c: float(np.median([r[4] for r in rows if r[2] == c])) for c in {r[2] for r in rows}}  # per category
        keep = [r for r in rows if size_range[0] * med[r[2]] <= r[4] <= size_range[1] * med[r[2]]]
        drops["size"] = len(rows) - len(keep)
        rows = keep
    cols: dict[str, list] = {k: [] for k in COLUMNS}
    for stem, cid, cat, crop, area, morph in rows:
        cols["exemplar_id"].append(len(cols["exemplar_id"]))
        cols["source"].append(ds.name)
        cols["stem"].append(stem)
        cols["instance_id"].append(cid)
        cols["category"].append(cat)
        cols["morphology"].append(morph)
        cols["height"].append(crop.shape[0])
        cols["width"].append(crop.shape[1])
        cols["area"].append(area)
        cols["mask_png"].append(encode_png(crop.astype(np.uint8) * 255, compression=9))
    if report is not None:
        report.update(seen=seen, **drops, kept=len(rows))
    return cols


def build_shape_bank(
    dataset_dir: str | Path, out: str | Path, min_area: int = 1, min_solidity: float = 0.9, *,
    isolated: bool = True, max_roundness: float = 18.0, size_range: tuple[float, float] | None = (0.4, 2.5),
    splits: Splits | None = None, role: str | None = None,
) -> dict[str, Any]:
    """Write the shape bank Parquet of a dataset folder (atomically); returns its metadata, whose
    ``filter`` holds the rules' settings and how many cells each dropped.

    With ``splits`` and ``role`` only that role's images are cut into shapes; the record of the
    images used (:func:`rbcray.data.provenance.provenance_record`, ``split: all`` without a split
    file) is in the metadata under ``provenance`` and in the Parquet key ``rbcray_provenance``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rbcray.data.provenance import PARQUET_KEY, select_dataset

    ds, prov = select_dataset(Dataset.open(dataset_dir), splits, role)
    if not 0.0 <= min_solidity <= 1.0:
        raise DataError(f"min_solidity = {min_solidity} must be in [0, 1]")
    if not max_roundness > 0:
        raise DataError(f"max_roundness = {max_roundness} must be > 0")
    if size_range is not None and not 0 <= size_range[0] < size_range[1]:
        raise DataError(f"size_range = {size_range} must be (low, high) with 0 <= low < high")
    report: dict[str, int] = {}
    cols = extract_shapes(ds, min_area, min_solidity, isolated=isolated, max_roundness=max_roundness,
                          size_range=size_range, report=report)
    n = len(cols["exemplar_id"])
    if n == 0:
        raise DataError(
            f"{dataset_dir}: no clean cells (of {report['seen']} cells, dropped: "
            + ", ".join(f"{k} {report[k]}" for k in RULES) + "); the shape bank would be empty")
    hs, ws = np.array(cols["height"]), np.array(cols["width"])
    cats, counts = np.unique(np.array(cols["category"]), return_counts=True)
    meta = {
        "format": "rbcray-shape-bank",
        "version": 1,
        "source": str(Path(dataset_dir).resolve()),
        "dataset": ds.name,
        "n_images": len(ds),
        "n_shapes": n,
        "min_solidity": min_solidity,
        "filter": {
            "rules": {"min_area": min_area, "isolated": isolated, "min_solidity": min_solidity,
                      "max_roundness": max_roundness if math.isfinite(max_roundness) else None,
                      "size_range": list(size_range) if size_range is not None else None},
            "dropped": {k: report[k] for k in RULES}, "seen": report["seen"], "kept": report["kept"],
        },
        "per_category": {str(int(c)): int(k) for c, k in zip(cats, counts)},
        "per_morphology": _morphology_counts(cols["morphology"]),
        "mean_size": float(np.mean((hs + ws) / 2)),
        "created": utc_now(),
        "rbcray_version": __version__,
        "provenance": prov,
    }
    schema = pa.schema(
        [
            ("exemplar_id", pa.int32()), ("source", pa.string()), ("stem", pa.string()),
            ("instance_id", pa.int32()), ("category", pa.int16()), ("morphology", pa.int16()), ("height", pa.int32()),
            ("width", pa.int32()), ("area", pa.int32()), ("mask_png", pa.binary()),
        ],
        metadata={META_KEY: json.dumps(meta).encode(), PARQUET_KEY: json.dumps(prov).encode()},
    )
    table = pa.Table.from_pydict(cols, schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    atomic_write_bytes(out, sink.getvalue().to_pybytes())
    return meta


def _morphology_counts(values: list[int | None]) -> dict[str, int] | None:
    """Exemplars per morphology class name (None when the dataset has no morphology labels)."""
    from rbcray.data.morphology import counts_by_name

    labelled = [v for v in values if v is not None]
    return counts_by_name(dict(enumerate(labelled))) if labelled else None


# ----------------------------------------------------------------------------- loading
class Cell(NamedTuple):
    """One augmented cell: its binary shape and where its centroid sits in it."""

    #: uint8 0/1 (h, w): the cell, tight bounding box
    mask: np.ndarray
    #: uint8 0/1 (h + 2, w + 2): the cell dilated by one pixel (3x3), i.e. itself plus every
    #: pixel 8-connected to it; ``dil[1:-1, 1:-1]`` lines up with ``mask``
    dil: np.ndarray
    #: centroid of the cell within ``mask`` (integer pixel), where the sampled location goes
    ax: int
    ay: int
    #: exemplar and the linear part of its map (for :meth:`ShapeBank.probes_of`)
    k: int
    a: tuple[float, float, float, float]
    #: number of cell pixels
    area: int
    #: whether the centroid's pixel (ax, ay) is a cell pixel (false for some non-convex cells)
    centre_in: bool


class ShapeBank:
    """The decoded shape bank: crops, centroids, categories; loads once, augments per cell."""

    def __init__(self, crops: list[np.ndarray], category: np.ndarray, exemplar_id: np.ndarray, meta: dict[str, Any], path: str = "<memory>",
                 morphology: np.ndarray | None = None) -> None:
        if not crops:
            raise DataError(f"{path}: the shape bank holds no cells; build it from a dataset with whole cells ('rbcray shapes')")
        self.path = path
        self.meta = meta
        self.sha256: str | None = None
        self.crops = crops  # uint8 0/255, tight
        # per exemplar, made on first use (a large bank loads in a fraction of the time): the signed
        # distance field that augment warps, and the probe points (see probes_of)
        self._src: list[np.ndarray | None] = [None] * len(crops)
        self._probes: list[np.ndarray | None] = [None] * len(crops)
        self.category = np.asarray(category, dtype=np.int64)
        self.exemplar_id = np.asarray(exemplar_id, dtype=np.int64)
        #: morphology class per exemplar (-1 unlabelled RBC, -2 no label: WBC / platelet); None
        #: when the bank has no morphology (an unlabelled source, or a bank older than the column)
        self.morphology = None if morphology is None else np.asarray(morphology, dtype=np.int64)
        self.heights = np.array([c.shape[0] for c in crops], dtype=np.float64)
        self.widths = np.array([c.shape[1] for c in crops], dtype=np.float64)
        cents = []
        for c in crops:
            m = cv2.moments(c, binaryImage=True)
            cents.append((m["m10"] / m["m00"], m["m01"] / m["m00"]) if m["m00"] > 0 else ((c.shape[1] - 1) / 2, (c.shape[0] - 1) / 2))
        self.cx = np.array([p[0] for p in cents])
        self.cy = np.array([p[1] for p in cents])
        # farthest crop corner from the centroid: bounds any rotated cell's extent
        far = np.maximum(np.hypot(np.maximum(self.cx + 0.5, self.widths - self.cx - 0.5), np.maximum(self.cy + 0.5, self.heights - self.cy - 0.5)), 1.0)
        self.radius = far
        # probe points: PROBES points of each cell's outline, pulled 2 px towards the centroid,
        # relative to the centroid (see augment: they are mapped like the cell, then checked)
        # (made on first use, in probes_of)
        self.mean_size = float(np.mean((self.heights + self.widths) / 2))
        # Python lists for the per-cell hot path (indexing a list is ~10x cheaper than an array)
        self._cx, self._cy = self.cx.tolist(), self.cy.tolist()
        self._h, self._w = [int(v) for v in self.heights], [int(v) for v in self.widths]

    def __len__(self) -> int:
        return len(self.crops)

    @classmethod
    def load(cls, path: str | Path, categories: tuple[int, ...] | None = None) -> ShapeBank:
        """Read a shape bank Parquet (local path or s3:// / gs:// URI); keep only ``categories``.

        ``bank.sha256`` is the file's SHA-256 (provenance of everything made from it).
        """
        import hashlib

        import pyarrow as pa
        import pyarrow.parquet as pq

        from rbcray import storage

        path = str(path)
        try:
            if storage.is_remote(path):
                data = storage.read_bytes(path)
            else:
                data = Path(path).read_bytes()
        except FileNotFoundError:
            raise DataError(f"{path}: shape bank file not found (make it with 'rbcray shapes DATASET_DIR --out {Path(path).name}')") from None
        except IsADirectoryError:
            raise DataError(f"{path}: is a folder, not a shape bank Parquet file") from None
        except OSError as e:
            raise DataError(f"{path}: cannot read the shape bank ({e.strerror or e})") from None
        try:
            table = pq.read_table(pa.BufferReader(data))
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise DataError(f"{path}: not a readable Parquet shape bank ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        missing = [c for c in ("category", "mask_png") if c not in table.column_names]
        if missing:
            raise DataError(f"{path}: not a shape bank (missing column(s) {', '.join(missing)})")
        raw_meta = (table.schema.metadata or {}).get(META_KEY)
        meta = json.loads(raw_meta) if raw_meta else {}
        cats = np.asarray(table.column("category").to_numpy(zero_copy_only=False), dtype=np.int64)
        ids = np.asarray(table.column("exemplar_id").to_numpy(zero_copy_only=False), dtype=np.int64) if "exemplar_id" in table.column_names else np.arange(len(cats))
        keep = np.ones(len(cats), bool) if categories is None else np.isin(cats, np.asarray(categories))
        if len(cats) and not keep.any():
            have = sorted({int(c) for c in cats})
            raise DataError(f"{path}: the shape bank has no cells of categories {list(categories or [])} (it has {have})")
        pngs = table.column("mask_png").to_pylist()
        crops = []
        for i in np.flatnonzero(keep):
            m = decode_png(pngs[i], name=f"{path} row {i}")
            if m.ndim != 2 or m.dtype != np.uint8 or not m.any():
                raise DataError(f"{path}: row {i}: mask_png must be a non-empty 8-bit greyscale crop")
            crops.append(np.where(m > 127, 255, 0).astype(np.uint8))
        morph = None
        if "morphology" in table.column_names and table.column("morphology").null_count < len(table):
            morph = np.array([NO_MORPHOLOGY if v is None else v for v in table.column("morphology").to_pylist()], dtype=np.int64)[keep]
        bank = cls(crops, cats[keep], ids[keep], meta, path, morph)
        bank.sha256 = hashlib.sha256(data).hexdigest()
        return bank

    def prepare(self) -> None:
        """Make every exemplar's distance field and probe points now (they are otherwise made on
        first use; a long run amortises them, a timing should not include them)."""
        for k in range(len(self.crops)):
            if self._src[k] is None:
                self._src[k] = _signed_distance(self.crops[k] > 0)
            if self._probes[k] is None:
                self._probes[k] = _probe_points(self.crops[k], self.cx[k], self.cy[k])

    def max_radius(self, scale: float) -> int:
        """An integer bound on how far any augmented cell extends from its centroid."""
        return int(math.ceil(float(self.radius.max()) * scale)) + 2

    def augment(self, k: int, angle: float, scale: float, flip_h: bool, flip_v: bool) -> Cell:
        """Exemplar ``k`` rotated by ``angle`` degrees about its centroid, scaled, flipped."""
        src = self._src[k]
        if src is None:
            src = self._src[k] = _signed_distance(self.crops[k] > 0)
        cx, cy = self._cx[k], self._cy[k]
        t = math.radians(angle)
        c, s = math.cos(t) * scale, math.sin(t) * scale
        fx = -1.0 if flip_h else 1.0
        fy = -1.0 if flip_v else 1.0
        # forward map dst = A (src - centroid) + (ox, oy); A = scale * R(angle) * diag(fx, fy)
        a00, a01, a10, a11 = c * fx, -s * fy, s * fx, c * fy
        # extent of the crop's corners around the centroid after A -> output size and anchor
        hw_x = (abs(a00) * self._w[k] + abs(a01) * self._h[k]) / 2
        hw_y = (abs(a10) * self._w[k] + abs(a11) * self._h[k]) / 2
        mx = (self._w[k] - 1) / 2 - cx
        my = (self._h[k] - 1) / 2 - cy
        ccx = a00 * mx + a01 * my  # where the crop centre lands relative to the centroid
        ccy = a10 * mx + a11 * my
        # one empty pixel on every side of the cell, for its dilation (a bilinear value of one half
        # needs a source pixel within half a pixel, so the cell stays inside the rotated crop)
        ox = int(math.ceil(hw_x - ccx)) + 1
        oy = int(math.ceil(hw_y - ccy)) + 1
        wo = int(math.ceil(ccx + hw_x)) + ox + 2
        ho = int(math.ceil(ccy + hw_y)) + oy + 2
        m = np.array([[a00, a01, ox - a00 * cx - a01 * cy], [a10, a11, oy - a10 * cx - a11 * cy]])
        # the (lightly smoothed) signed distance to the outline, interpolated bilinearly: cell where
        # it is > 0. A warped 0/1 crop rounded at one half gives ragged outlines at small angles
        # (perimeter^2 / area of augmented cells KS 0.6 from real ones; 0.08 this way, docs/masks.md)
        sd = cv2.warpAffine(src, m, (wo, ho), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=-1.0)
        b = (sd > 0).view(np.uint8)
        x, y, w, h = cv2.boundingRect(b)
        if w == 0:  # scaled below a pixel: keep the centroid pixel
            b[oy, ox] = 1
            x, y, w, h = ox, oy, 1, 1
        dil = cv2.dilate(b[y - 1 : y + h + 1, x - 1 : x + w + 1], _K3)
        mask = np.ascontiguousarray(b[y : y + h, x : x + w])
        ax, ay = ox - x, oy - y
        centre_in = 0 <= ay < h and 0 <= ax < w and bool(mask[ay, ax])
        return Cell(mask, dil, ax, ay, k, (a00, a01, a10, a11), cv2.countNonZero(mask), centre_in)

    def probes_of(self, cell: Cell) -> tuple[np.ndarray, np.ndarray]:
        """Offsets (x, y) from the centroid of a few pixels of ``cell`` near its outline.

        The exemplar's probe points mapped like the cell and kept only where the augmented mask
        really is cell: if any of them is occupied at a candidate place, the cell overlaps there
        (an exact, cheap rejection used before the full shape test).
        """
        p = self._probes[cell.k]
        if p is None:
            k = cell.k
            p = self._probes[k] = _probe_points(self.crops[k], self.cx[k], self.cy[k])
        a00, a01, a10, a11 = cell.a
        mask = cell.mask
        h, w = mask.shape
        px = np.rint(a00 * p[:, 0] + a01 * p[:, 1]).astype(np.int64) + cell.ax
        py = np.rint(a10 * p[:, 0] + a11 * p[:, 1]).astype(np.int64) + cell.ay
        inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
        px, py = px[inside], py[inside]
        keep = mask[py, px] > 0
        return px[keep] - cell.ax, py[keep] - cell.ay


#: dihedral elements (bit 0: transpose, bit 1: mirror x, bit 2: mirror y) that are rotations by
#: multiples of 90 degrees (an even number of reflections); the others are reflections
ROTATIONS_90 = (0, 3, 5, 6)


def _grid_op(a: np.ndarray, d: int) -> np.ndarray:
    """Array ``a`` under dihedral element ``d`` (bit 0: transpose, then bit 1: mirror x, bit 2: mirror y)."""
    if d == 1:
        return cv2.transpose(a)
    if d == 2:
        return cv2.flip(a, 1)
    if d == 3:
        return cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE)
    if d == 4:
        return cv2.flip(a, 0)
    if d == 5:
        return cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE)
    if d == 6:
        return cv2.rotate(a, cv2.ROTATE_180)
    return cv2.flip(cv2.transpose(a), -1)


def turn(cell: Cell, d: int) -> Cell:
    """``cell`` under the dihedral element ``d`` of the pixel grid (exact: no resampling)."""
    if d == 0:
        return cell
    h, w = cell.mask.shape
    ax, ay = cell.ax, cell.ay
    a00, a01, a10, a11 = cell.a
    if d & 1:
        h, w, ax, ay = w, h, ay, ax
        a00, a01, a10, a11 = a10, a11, a00, a01
    if d & 2:
        ax = w - 1 - ax
        a00, a01 = -a00, -a01
    if d & 4:
        ay = h - 1 - ay
        a10, a11 = -a10, -a11
    return Cell(_grid_op(cell.mask, d), _grid_op(cell.dil, d), ax, ay, cell.k, (a00, a01, a10, a11), cell.area, cell.centre_in)


def turn_offsets(px: np.ndarray, py: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (x, y) from a cell's centroid under the same dihedral element as :func:`turn`."""
    if d & 1:
        px, py = py, px
    if d & 2:
        px = -px
    if d & 4:
        py = -py
    return px, py


_K3 = np.ones((3, 3), np.uint8)


def _signed_distance(m: np.ndarray) -> np.ndarray:
    """float32 signed distance of a binary crop's pixel centres to its outline (pixel edges,
    > 0 inside), smoothed by a Gaussian of 1 px so that the outline's pixel staircase does not
    survive rotation."""
    p = np.pad(m.astype(np.uint8), 2)
    d_in = cv2.distanceTransform(p, cv2.DIST_L2, cv2.DIST_MASK_5)
    d_out = cv2.distanceTransform(1 - p, cv2.DIST_L2, cv2.DIST_MASK_5)
    sd = cv2.GaussianBlur(np.where(p > 0, d_in - 0.5, 0.5 - d_out).astype(np.float32), (0, 0), 1.0)
    return np.ascontiguousarray(sd[2:-2, 2:-2])


PROBES = 12


def _probe_points(crop: np.ndarray, cx: float, cy: float) -> np.ndarray:
    """(PROBES, 2) float offsets (x, y) from the centroid of points just inside the outline."""
    contours, _ = cv2.findContours((crop > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    pts = max(contours, key=len).reshape(-1, 2).astype(np.float64)
    pts = pts[np.linspace(0, len(pts), PROBES, endpoint=False).astype(np.int64)]
    d = pts - (cx, cy)
    r = np.hypot(d[:, 0], d[:, 1])
    inward = np.maximum(r - 2.0, 0.0) / np.maximum(r, 1e-9)
    return d * inward[:, None]
