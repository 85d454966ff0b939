"""Red-cell morphology labels: Chula-RBC-12's 13 point classes carried onto derived instances.

Chula-RBC-12 marks cells with points (x, y, class) — no outlines. ``rbcray annotate`` derives the
instance map by classical segmentation (:mod:`rbcray.data.segment`); this module then gives each
derived **RBC** instance a morphology class:

- an RBC instance holding exactly one labelled point takes that point's class (0..12);
- an RBC instance holding no point, or two or more (a merged pair the segmentation did not split,
  whose classes could disagree), is ``RBC, unlabelled`` (:data:`UNLABELLED` = -1);
- points on background, or on an instance recognised as a WBC or platelet, label nothing.

Because the instances are derived, a cell's class rests on a derived mask: a point that falls
into a wrongly merged or wrongly split region labels the wrong outline. :func:`assign_morphology`
returns the counts of such points so that every dataset says how many were lost.

On disk (backward compatible: ``category_id`` stays 1 RBC / 2 WBC / 3 Platelet, so every existing
reader keeps working):

- each RBC annotation in ``coco.json`` carries an integer attribute ``morphology``
  (0..12 = :data:`CLASSES`, -1 = unlabelled); WBC and platelet annotations carry none;
- ``coco.json`` carries ``morphology_classes`` (the names, index = value);
- each sample record of ``dataset.json`` carries ``morphology_counts`` (class name -> cells).

Datasets whose source has no point labels carry no ``morphology`` attribute at all. For tools that
want one COCO category per subclass, :func:`coco_with_subcategories` rewrites a document (RBC
subclasses as categories 100 + class, 99 unlabelled RBC, WBC 2, platelet 3) and
:func:`coco_from_subcategories` undoes it exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rbcray.data.sources import CHULA_CLASSES
from rbcray.errors import DataError

#: The 13 morphology classes of Chula-RBC-12 (index = class id in its label files).
CLASSES: tuple[str, ...] = CHULA_CLASSES
#: Value of an RBC instance with no (or an ambiguous) point label.
UNLABELLED = -1
UNLABELLED_NAME = "unlabelled"
RBC, WBC, PLATELET = 1, 2, 3
#: Category ids of the subcategory COCO scheme (:func:`coco_with_subcategories`).
SUBCATEGORY_BASE = 100
SUBCATEGORY_UNLABELLED = 99


def class_name(value: int) -> str:
    """Name of a morphology value (``unlabelled`` for -1)."""
    if value == UNLABELLED:
        return UNLABELLED_NAME
    if not 0 <= value < len(CLASSES):
        raise DataError(f"morphology class {value}: must be -1 (unlabelled) or within 0..{len(CLASSES) - 1}")
    return CLASSES[value]


def class_id(name: str) -> int:
    """Morphology value of a class name (accepts ``target`` or ``4``); :class:`DataError` otherwise."""
    key = str(name).strip().lower()
    if key == UNLABELLED_NAME:
        return UNLABELLED
    if key.lstrip("-").isdigit():
        v = int(key)
        class_name(v)
        return v
    if key in CLASSES:
        return CLASSES.index(key)
    raise DataError(f"morphology class {name!r}: use one of {', '.join(CLASSES)} (or its number 0..{len(CLASSES) - 1})")


def assign_morphology(
    inst: np.ndarray, categories: Mapping[int, int] | None, points: np.ndarray | None
) -> tuple[dict[int, int], dict[str, int]]:
    """Morphology per RBC instance id from point labels, and what happened to the points.

    ``inst`` is a uint16 instance map, ``categories`` the category per id (missing ids are RBC),
    ``points`` an (N, 3) int array of x, y, class. Returns ``(morphology, report)``:
    ``morphology[id]`` for every RBC id (class or :data:`UNLABELLED`), and ``report`` counting
    points ``used``, ``background`` (outside every cell), ``off_image``, ``non_rbc`` (on a WBC or
    platelet) and ``shared`` (in an instance with two or more points). Pure.
    """
    cats = dict(categories or {})
    ids = np.unique(inst)
    ids = ids[ids > 0]
    rbc_ids = [int(i) for i in ids if cats.get(int(i), RBC) == RBC]
    out = {i: UNLABELLED for i in rbc_ids}
    report = {"used": 0, "background": 0, "off_image": 0, "non_rbc": 0, "shared": 0}
    if points is None or len(points) == 0:
        return out, report
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise DataError(f"point labels must be an (N, 3) array of x, y, class, got shape {pts.shape}")
    bad = (pts[:, 2] < 0) | (pts[:, 2] >= len(CLASSES))
    if bad.any():
        raise DataError(f"point label class {int(pts[bad][0, 2])}: outside 0..{len(CLASSES) - 1}")
    h, w = inst.shape
    x, y = pts[:, 0].astype(np.int64), pts[:, 1].astype(np.int64)
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    report["off_image"] = int((~inside).sum())
    hit = np.zeros(len(pts), dtype=np.int64)
    hit[inside] = inst[y[inside], x[inside]]
    report["background"] = int((inside & (hit == 0)).sum())
    on_rbc = np.array([h_ > 0 and cats.get(int(h_), RBC) == RBC for h_ in hit], dtype=bool)
    report["non_rbc"] = int(((hit > 0) & ~on_rbc).sum())
    cell_ids, counts = np.unique(hit[on_rbc], return_counts=True)
    n_points = dict(zip(cell_ids.tolist(), counts.tolist()))
    for k in np.flatnonzero(on_rbc):
        cid = int(hit[k])
        if n_points[cid] == 1:
            out[cid] = int(pts[k, 2])
            report["used"] += 1
        else:
            report["shared"] += 1
    return out, report


def counts_by_name(morphology: Mapping[int, int]) -> dict[str, int]:
    """Cells per class name (every class listed, ``unlabelled`` last)."""
    vals = list(morphology.values())
    out = {name: vals.count(k) for k, name in enumerate(CLASSES)}
    out[UNLABELLED_NAME] = vals.count(UNLABELLED)
    return out


# ----------------------------------------------------------------------------- reading datasets
def morphology_from_coco(anns: list[dict[str, Any]]) -> dict[int, int]:
    """Morphology per instance id of one image's COCO annotations (only those carrying it)."""
    out = {}
    for k, a in enumerate(anns):
        if "morphology" in a:
            v = int(a["morphology"])
            class_name(v)  # validates
            out[int(a.get("instance_id", k + 1))] = v
    return out


def load_dataset_morphology(root: str | Path) -> dict[str, dict[int, int]]:
    """Morphology per instance id per sample stem of a dataset folder (from its ``coco.json``).

    Samples without labels are absent; an empty dict means the dataset has no morphology labels.
    """
    from rbcray.io import read_json

    path = Path(root) / "coco.json"
    if not path.exists():
        return {}
    coco = read_json(path)
    stem_of = {im["id"]: im.get("rbcray_stem", Path(im["file_name"]).stem) for im in coco.get("images", [])}
    per_image: dict[str, list[dict[str, Any]]] = {}
    for a in coco.get("annotations", []):
        s = stem_of.get(a.get("image_id"))
        if s is not None and "morphology" in a:
            per_image.setdefault(s, []).append(a)
    try:
        return {s: morphology_from_coco(anns) for s, anns in per_image.items()}
    except DataError as e:
        raise DataError(f"{path}: {e}") from None


def dataset_counts(root: str | Path, stems: list[str] | None = None) -> dict[str, int] | None:
    """Cells per morphology class over a dataset folder (or some of its stems); None if unlabelled."""
    per = load_dataset_morphology(root)
    if not per:
        return None
    total = counts_by_name({})
    for s, m in per.items():
        if stems is None or s in stems:
            for name, n in counts_by_name(m).items():
                total[name] += n
    return total


def exemplar_morphology(root: str | Path, stems: list[str], instance_ids: list[int]) -> np.ndarray:
    """Morphology of cells named by (stem, instance_id) — e.g. the rows of a shape bank, whose
    ``stem`` and ``instance_id`` columns join to the dataset folder ``root`` it was cut from.
    -1 where the cell is unlabelled or not an RBC."""
    if len(stems) != len(instance_ids):
        raise DataError(f"exemplar_morphology: {len(stems)} stems but {len(instance_ids)} instance ids")
    per = load_dataset_morphology(root)
    return np.array([per.get(s, {}).get(int(i), UNLABELLED) for s, i in zip(stems, instance_ids)], dtype=np.int16)


# ----------------------------------------------------------------------------- COCO subcategories
def coco_with_subcategories(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of a COCO document with one category per RBC subclass (for generic COCO tools).

    RBC annotations with ``morphology`` k get category ``100 + k`` (named ``RBC:<class>``), those
    with -1 get 99 (``RBC:unlabelled``); WBC (2) and platelet (3) stay. The original category is
    kept in ``rbcray_category_id`` so :func:`coco_from_subcategories` restores the document.
    """
    out = copy.deepcopy(doc)
    cats = [c for c in out.get("categories", []) if c["id"] != RBC]
    cats.append({"id": SUBCATEGORY_UNLABELLED, "name": "RBC:unlabelled", "supercategory": "RBC"})
    cats += [{"id": SUBCATEGORY_BASE + k, "name": f"RBC:{n}", "supercategory": "RBC"} for k, n in enumerate(CLASSES)]
    out["categories"] = cats
    out["rbcray_categories"] = doc.get("categories", [])
    for a in out.get("annotations", []):
        if int(a.get("category_id", RBC)) == RBC:
            m = int(a.get("morphology", UNLABELLED))
            a["rbcray_category_id"] = RBC
            a["category_id"] = SUBCATEGORY_UNLABELLED if m == UNLABELLED else SUBCATEGORY_BASE + m
    return out


def coco_from_subcategories(doc: dict[str, Any]) -> dict[str, Any]:
    """Undo :func:`coco_with_subcategories` (RBC category back, ``morphology`` from the category)."""
    out = copy.deepcopy(doc)
    if "rbcray_categories" not in out:
        raise DataError("COCO document has no 'rbcray_categories': not written by coco_with_subcategories")
    out["categories"] = out.pop("rbcray_categories")
    for a in out.get("annotations", []):
        if "rbcray_category_id" in a:
            c = int(a["category_id"])
            a["morphology"] = UNLABELLED if c == SUBCATEGORY_UNLABELLED else c - SUBCATEGORY_BASE
            class_name(a["morphology"])
            a["category_id"] = int(a.pop("rbcray_category_id"))
    return out
