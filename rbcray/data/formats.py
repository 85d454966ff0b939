"""Instance-mask formats: colour-coded PNG (the paper's), uint16 label PNG, COCO RLE JSON.

Bailo et al. (Sec. 4.1) feed pix2pixHD colour-coded masks: every cell is painted one colour of a
fixed palette, and touching cells never share a colour, so each colour's connected components are
the cells. rbcray's canonical in-memory form is an instance map: ``uint16`` (H, W), 0 = background,
1..N = cells. This module converts between that and the three on-disk formats, and validates them:
size mismatches with the image, colours outside the palette, touching cells sharing a colour, more
cells than a format holds and unreadable files all raise :class:`~rbcray.errors.DataError` with the
file named.

Touching means 8-connectivity everywhere in rbcray: two cells touch when a pixel of one is among
the 8 neighbours of a pixel of the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from rbcray.errors import DataError
from rbcray.io import read_png_unchanged, write_png

#: The fixed palette of colour-coded masks (RGB). Black is background. Sixteen well-separated
#: colours: a greedy colouring of real smears needs at most 6-7 (cell adjacency graphs are
#: nearly planar), so 16 leaves ample room; synthesis may restrict itself to the first K.
PALETTE = np.array(
    [
        (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
        (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230),
        (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
        (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195),
    ],
    dtype=np.uint8,
)
BACKGROUND_RGB = (0, 0, 0)
MAX_INSTANCES = 65535  # what a uint16 label PNG holds (0 is background)

#: Default categories of rbcray datasets (COCO ids). Derived masks use RBC unless a cell is
#: recognised as another type.
CATEGORIES = [
    {"id": 1, "name": "RBC", "supercategory": "cell"},
    {"id": 2, "name": "WBC", "supercategory": "cell"},
    {"id": 3, "name": "Platelet", "supercategory": "cell"},
]


# ----------------------------------------------------------------------------- checks
def check_instances(inst: np.ndarray, name: str, image_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Validate an instance map (2-D integer, ids within uint16, size matching the image)."""
    if not isinstance(inst, np.ndarray) or inst.ndim != 2:
        shape = getattr(inst, "shape", None)
        raise DataError(f"{name}: instance map must be a single-channel (H, W) array, got shape {shape}")
    if not np.issubdtype(inst.dtype, np.integer):
        raise DataError(f"{name}: instance map must hold integers, got {inst.dtype}")
    if inst.size and (int(inst.min()) < 0 or int(inst.max()) > MAX_INSTANCES):
        n = int(inst.max())
        raise DataError(f"{name}: instance id {n} does not fit a uint16 label map (at most {MAX_INSTANCES} cells)")
    if image_shape is not None and tuple(inst.shape[:2]) != tuple(image_shape[:2]):
        raise DataError(
            f"{name}: mask size {inst.shape[1]}x{inst.shape[0]} does not match image size "
            f"{image_shape[1]}x{image_shape[0]}"
        )
    return inst.astype(np.uint16, copy=False)


def relabel_sequential(inst: np.ndarray) -> np.ndarray:
    """Renumber cells 1..N in raster order of their first pixel (a canonical labelling)."""
    flat = inst.ravel()
    ids, first = np.unique(flat, return_index=True)
    keep = ids != 0
    ids, first = ids[keep], first[keep]
    order = ids[np.argsort(first, kind="stable")]
    lut = np.zeros(int(inst.max()) + 1 if inst.size else 1, dtype=np.uint32)
    lut[order] = np.arange(1, len(order) + 1, dtype=np.uint32)
    if len(order) > MAX_INSTANCES:
        raise DataError(f"{len(order)} cells do not fit a uint16 label map (at most {MAX_INSTANCES})")
    return lut[inst].astype(np.uint16)


def adjacency_pairs(inst: np.ndarray) -> np.ndarray:
    """Unique (a, b) pairs, a < b, of distinct cells that touch (8-connectivity). Shape (M, 2)."""
    pairs = []
    h, w = inst.shape
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = inst[0 : h - dy, max(0, -dx) : w - max(0, dx)]
        b = inst[dy:h, max(0, dx) : w - max(0, -dx)]
        m = (a != b) & (a > 0) & (b > 0)
        if m.any():
            pairs.append(np.stack([a[m], b[m]], axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    p = np.concatenate(pairs).astype(np.int64)
    p.sort(axis=1)
    return np.unique(p, axis=0)


def color_instances(inst: np.ndarray, num_colors: int = len(PALETTE), name: str = "mask") -> np.ndarray:
    """Palette index for every cell id, touching cells always different (DSATUR greedy colouring).

    Returns an int array ``c`` of length ``max_id + 1`` with ``c[0] = -1`` and ``c[id]`` the palette
    index of cell ``id`` (-1 for ids not present). Raises :class:`DataError` when ``num_colors``
    colours do not suffice.
    """
    n = int(inst.max()) if inst.size else 0
    colors = np.full(n + 1, -1, dtype=np.int64)
    present = np.unique(inst)
    present = present[present > 0]
    neigh: dict[int, set[int]] = {int(i): set() for i in present}
    for a, b in adjacency_pairs(inst):
        neigh[int(a)].add(int(b))
        neigh[int(b)].add(int(a))
    uncolored = set(neigh)
    sat: dict[int, set[int]] = {i: set() for i in neigh}
    while uncolored:
        # DSATUR: the cell whose neighbours already use the most colours, ties by degree, then id.
        v = max(uncolored, key=lambda i: (len(sat[i]), len(neigh[i]), -i))
        free = [c for c in range(num_colors) if c not in sat[v]]
        if not free:
            raise DataError(f"{name}: cell {v} touches cells of all {num_colors} palette colours; cannot colour-code")
        colors[v] = free[0]
        uncolored.discard(v)
        for u in neigh[v]:
            sat[u].add(free[0])
    return colors


# ----------------------------------------------------------------------------- colour-coded masks
def encode_color_mask(
    inst: np.ndarray, colors: np.ndarray | None = None, palette: np.ndarray = PALETTE, name: str = "mask"
) -> np.ndarray:
    """Paint each cell in its palette colour -> RGB uint8 (H, W, 3).

    ``colors`` (palette index per cell id, as from :func:`color_instances`) is computed when not
    given; when given, it is checked: two touching cells with one colour is an error.
    """
    inst = check_instances(inst, name)
    if colors is None:
        colors = color_instances(inst, len(palette), name)
    else:
        colors = np.asarray(colors)
        if len(colors) <= int(inst.max()):
            raise DataError(f"{name}: colour table has {len(colors)} entries but the mask has cell id {int(inst.max())}")
        pairs = adjacency_pairs(inst)
        same = colors[pairs[:, 0]] == colors[pairs[:, 1]] if len(pairs) else np.zeros(0, bool)
        if same.any():
            a, b = pairs[np.argmax(same)]
            raise DataError(f"{name}: touching cells {a} and {b} share colour {tuple(palette[colors[a]])}")
        ids = np.unique(inst)
        ids = ids[ids > 0]
        bad = ids[(colors[ids] < 0) | (colors[ids] >= len(palette))]
        if len(bad):
            raise DataError(f"{name}: cell {bad[0]} has colour index {colors[bad[0]]}, outside the palette of {len(palette)}")
    lut = np.zeros((len(colors), 3), dtype=np.uint8)
    ok = colors >= 0
    lut[ok] = palette[colors[ok]]
    lut[0] = BACKGROUND_RGB
    return lut[inst]


def decode_color_mask(rgb: np.ndarray, palette: np.ndarray = PALETTE, name: str = "mask") -> np.ndarray:
    """Split each palette colour into its 8-connected components -> uint16 instance map.

    Ids follow raster order of each cell's first pixel. A colour that is neither black nor in the
    palette is an error naming the colour and a pixel that has it.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise DataError(f"{name}: a colour-coded mask must be an 8-bit RGB image, got {rgb.dtype} {rgb.shape}")
    code = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    pal_code = (palette[:, 0].astype(np.int32) << 16) | (palette[:, 1].astype(np.int32) << 8) | palette[:, 2]
    valid = np.isin(code, pal_code) | (code == 0)
    if not valid.all():
        y, x = np.argwhere(~valid)[0]
        raise DataError(f"{name}: colour {tuple(int(v) for v in rgb[y, x])} at pixel (x={x}, y={y}) is not in the palette")
    out = np.zeros(code.shape, dtype=np.int64)
    next_id = 0
    for c in np.unique(code):
        if c == 0:
            continue
        n, lab = cv2.connectedComponents((code == c).astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
        m = lab > 0
        out[m] = lab[m] + next_id
        next_id += n - 1
    if next_id > MAX_INSTANCES:
        raise DataError(f"{name}: {next_id} cells do not fit a uint16 label map (at most {MAX_INSTANCES})")
    return relabel_sequential(out)


def read_color_mask(path: str | Path, image_shape: tuple[int, ...] | None = None, palette: np.ndarray = PALETTE) -> np.ndarray:
    """Read a colour-coded mask PNG as a uint16 instance map."""
    rgb = read_png_unchanged(path)
    if rgb.ndim != 3:
        raise DataError(f"{path}: a colour-coded mask must be RGB, got a single-channel image")
    if rgb.dtype != np.uint8:
        raise DataError(f"{path}: a colour-coded mask must be 8-bit, got {rgb.dtype}")
    inst = decode_color_mask(rgb, palette, name=str(path))
    return check_instances(inst, str(path), image_shape)


def write_color_mask(path: str | Path, inst: np.ndarray, colors: np.ndarray | None = None) -> None:
    """Write an instance map as a colour-coded RGB PNG."""
    write_png(path, encode_color_mask(inst, colors, name=str(path)))


# ----------------------------------------------------------------------------- uint16 label PNG
def read_instances(path: str | Path, image_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Read a label PNG (0 = background, 1..N = cells) as uint16 (H, W)."""
    arr = read_png_unchanged(path)
    if arr.ndim != 2:
        raise DataError(f"{path}: a label map must be a single-channel PNG, got {arr.shape[2]} channels")
    if arr.dtype not in (np.uint8, np.uint16):
        raise DataError(f"{path}: a label map must be 8- or 16-bit, got {arr.dtype}")
    return check_instances(arr, str(path), image_shape)


def write_instances(path: str | Path, inst: np.ndarray) -> None:
    """Write an instance map as a uint16 single-channel PNG."""
    write_png(path, check_instances(inst, str(path)))


# ----------------------------------------------------------------------------- COCO RLE
def instances_to_coco(
    inst: np.ndarray,
    image_id: int,
    first_ann_id: int = 1,
    category_of: dict[int, int] | None = None,
    morphology_of: dict[int, int] | None = None,
) -> list[dict[str, Any]]:
    """COCO annotations (RLE segmentation) for every cell of one image.

    Each annotation carries two fields beyond COCO's: ``instance_id`` (the cell's id in the label
    map, so a round trip is exact) and ``border`` (the cell touches the image edge, so its shape
    is cut). Cells listed in ``morphology_of`` also carry ``morphology`` (the red-cell class,
    :mod:`rbcray.data.morphology`).
    """
    inst = check_instances(inst, f"image {image_id}")
    h, w = inst.shape
    anns = []
    ids = np.unique(inst)
    ids = ids[ids > 0]
    boxes = _bboxes(inst, ids)
    buf = np.zeros((h, w), dtype=np.uint8, order="F")
    for k, cid in enumerate(ids):
        x0, y0, x1, y1 = boxes[k]
        crop = inst[y0:y1, x0:x1] == cid
        buf[y0:y1, x0:x1] = crop
        rle = mask_utils.encode(buf)
        buf[y0:y1, x0:x1] = 0
        rle["counts"] = rle["counts"].decode("ascii")
        anns.append(
            {
                "id": first_ann_id + k,
                "image_id": image_id,
                "category_id": int((category_of or {}).get(int(cid), 1)),
                "segmentation": rle,
                "area": int(crop.sum()),
                "bbox": [int(x0), int(y0), int(x1 - x0), int(y1 - y0)],
                "iscrowd": 0,
                "instance_id": int(cid),
                "border": bool(x0 == 0 or y0 == 0 or x1 == w or y1 == h),
            }
        )
        if morphology_of and int(cid) in morphology_of:
            anns[-1]["morphology"] = int(morphology_of[int(cid)])
    return anns


def coco_to_instances(anns: list[dict[str, Any]], height: int, width: int, name: str = "coco") -> tuple[np.ndarray, dict[int, int]]:
    """Rebuild (instance map, category per cell id) from one image's COCO annotations.

    Uses ``instance_id`` when present, else numbers cells by annotation order. Polygons and RLE
    are both accepted (converted by pycocotools). Overlapping annotations: later ones win.
    """
    if len(anns) > MAX_INSTANCES:
        raise DataError(f"{name}: {len(anns)} cells do not fit a uint16 label map (at most {MAX_INSTANCES})")
    inst = np.zeros((height, width), dtype=np.uint16)
    cats: dict[int, int] = {}
    for k, a in enumerate(anns):
        seg = a.get("segmentation")
        if seg is None:
            raise DataError(f"{name}: annotation {a.get('id')} has no segmentation")
        if isinstance(seg, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
        elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):
            rle = mask_utils.frPyObjects(seg, height, width)
        else:
            rle = dict(seg)
            if isinstance(rle.get("counts"), str):
                rle["counts"] = rle["counts"].encode("ascii")
        if list(rle["size"]) != [height, width]:
            raise DataError(f"{name}: annotation {a.get('id')} has size {rle['size']} but its image is {height}x{width}")
        m = mask_utils.decode(rle).astype(bool)
        cid = int(a.get("instance_id", k + 1))
        if not 1 <= cid <= MAX_INSTANCES:
            raise DataError(f"{name}: annotation {a.get('id')} has instance_id {cid} outside 1..{MAX_INSTANCES}")
        inst[m] = cid
        cats[cid] = int(a.get("category_id", 1))
    return inst, cats


def coco_document(images: list[dict[str, Any]], annotations: list[dict[str, Any]], info: dict[str, Any] | None = None) -> dict[str, Any]:
    """A complete COCO instances document (images, annotations, categories).

    When any annotation carries ``morphology``, the document lists the class names under
    ``morphology_classes`` (index = value; -1 is an unlabelled RBC).
    """
    doc = {
        "info": info or {"description": "rbcray dataset"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": CATEGORIES,
    }
    if any("morphology" in a for a in annotations):
        from rbcray.data.morphology import CLASSES

        doc["morphology_classes"] = list(CLASSES)
    return doc


def _bboxes(inst: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) exclusive boxes of the given (present) cell ids."""
    from scipy import ndimage

    slices = ndimage.find_objects(inst)
    out = np.zeros((len(ids), 4), dtype=np.int64)
    for k, i in enumerate(ids):
        sy, sx = slices[int(i) - 1]
        out[k] = (sx.start, sy.start, sx.stop, sy.stop)
    return out


def instance_boxes(inst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, boxes) of all cells; boxes are (x0, y0, x1, y1) with exclusive x1, y1."""
    ids = np.unique(inst)
    ids = ids[ids > 0]
    if len(ids) == 0:
        return ids.astype(np.int64), np.zeros((0, 4), dtype=np.int64)
    return ids.astype(np.int64), _bboxes(inst, ids)
