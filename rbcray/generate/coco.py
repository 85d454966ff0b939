"""COCO annotations of a generated output: one fragment per shard, merged on request, streaming.

With ``--coco`` each writer adds ``OUT/_coco/part-<start>-<stop>.json`` beside its shard: a
complete COCO instances document (images, annotations, categories) that pycocotools loads on its
own. No process ever holds more than one shard's annotations. ``rbcray export-coco OUT --out FILE``
streams all fragments into one COCO file in constant memory (two passes over the fragments:
images, then annotations).

Ids: image id = sample id + 1; annotation id = sample id * 65536 + instance id (instance maps are
uint16), so ids are unique, stable, and the same in fragments and in the merged file.
Runs with ``--morphology`` give every RBC annotation the integer attribute ``morphology`` (0..12,
-1 unlabelled) and the document ``morphology_classes``, as rbcray's annotated datasets do
(:mod:`rbcray.data.morphology`; ``coco_with_subcategories`` turns them into one category per class).
Segmentations are COCO RLE, computed per cell on a strip of the cell's box columns (all rows),
which is the same run-length code as over the full frame at a fraction of the work.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from rbcray import storage
from rbcray.data.formats import CATEGORIES
from rbcray.data.morphology import CLASSES as MORPHOLOGY_CLASSES
from rbcray.errors import RbcrayError
from rbcray.generate import objects
from rbcray.generate.export import PNG_TREE, sample_name
from rbcray.generate.shards import Shard, read_manifest
from rbcray.io import decode_png

COCO_PARTS = "_coco"


def fragment_name(shard: Shard) -> str:
    return f"part-{shard.start:09d}-{shard.stop:09d}.json"


def rle_in_box(crop: np.ndarray, x0: int, y0: int, height: int, width: int) -> dict[str, Any]:
    """COCO RLE (compressed) of a full ``height x width`` frame that is zero outside a box whose
    top-left corner is (x0, y0) and content ``crop`` (bool, (h, w)): runs computed on the box's
    column strip only; the zeros left and right of it are one run each."""
    h, w = crop.shape
    strip = np.zeros((w, height), dtype=bool)  # column-major: one row per image column
    strip[:, y0 : y0 + h] = crop.T
    flat = strip.ravel()
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], change, [flat.size]))).tolist()
    if flat[0]:
        runs.insert(0, 0)
    runs[0] += x0 * height
    after = (width - x0 - w) * height
    if after:
        if flat[-1]:
            runs.append(after)
        else:
            runs[-1] += after
    rle = mask_utils.frPyObjects({"counts": runs, "size": [height, width]}, height, width)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def sample_annotations(inst: np.ndarray, sample_id: int, boxes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """COCO annotations of one sample from its instance map and box records."""
    height, width = inst.shape
    anns = []
    for b in boxes:
        x0, y0, x1, y1, cid = int(b["x0"]), int(b["y0"]), int(b["x1"]), int(b["y1"]), int(b["instance_id"])
        crop = inst[y0:y1, x0:x1] == cid
        anns.append({
            "id": sample_id * 65536 + cid, "image_id": sample_id + 1, "category_id": int(b["class"]),
            "segmentation": rle_in_box(crop, x0, y0, height, width), "area": int(crop.sum()),
            "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0, "instance_id": cid,
            "border": bool(x0 == 0 or y0 == 0 or x1 == width or y1 == height),
        })
        if b.get("morphology") is not None:  # --morphology runs: the RBC subclass, as in rbcray's datasets
            anns[-1]["morphology"] = int(b["morphology"])
    return anns


def write_coco_fragment(out: str, shard: Shard, rows: list[dict[str, Any]]) -> None:
    """The COCO document of one shard's samples."""
    images, anns = [], []
    for r in sorted(rows, key=lambda r: r["sample_id"]):
        sid = int(r["sample_id"])
        inst = decode_png(r["instance_mask"], f"sample {sid}")
        images.append({"id": sid + 1, "file_name": f"{PNG_TREE}/images/{sample_name(sid)}", "width": r["width"],
                       "height": r["height"], "rbcray_sample_id": sid})
        anns.extend(sample_annotations(inst, sid, r["boxes"]))
    doc = {"info": {"description": f"rbcray synthetic samples {shard.start}..{shard.stop - 1}"}, "licenses": [],
           "images": images, "annotations": anns, "categories": CATEGORIES}
    if any("morphology" in a for a in anns):
        doc["morphology_classes"] = list(MORPHOLOGY_CLASSES)
    objects.write(storage.join(out, COCO_PARTS, fragment_name(shard)), json.dumps(doc).encode())


def export_coco(out: str, dest: str, log: Callable[[str], None] | None = None) -> dict[str, int]:
    """Merge the fragments of a complete output into one COCO file at ``dest``, streaming."""
    manifest = read_manifest(out)
    if not manifest.get("coco_fragments"):
        raise RbcrayError(f"{out}: was generated without --coco (no COCO fragments to merge)")
    parts = [storage.join(out, COCO_PARTS, fragment_name(Shard(k, e["start"], e["stop"])))
             for k, e in enumerate(manifest["shards"])]

    def fragments():
        for p in parts:
            data = objects.read(p)
            if data is None:
                raise RbcrayError(f"{p}: COCO fragment missing (run 'rbcray verify {out}')")
            yield json.loads(data)

    counts = {"images": 0, "annotations": 0}
    local = not storage.is_remote(dest)
    if local:
        os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".coco-", suffix=".partial", dir=os.path.dirname(os.path.abspath(dest)))
        f = os.fdopen(fd, "w")
    else:
        fs, path = storage.filesystem(dest)
        f = fs.open(path, "w")
    try:
        f.write('{"info": ' + json.dumps({"description": "rbcray synthetic dataset", "source": out})
                + ', "licenses": [], "categories": ' + json.dumps(CATEGORIES))
        if (manifest.get("config") or {}).get("morphology"):  # RBC annotations carry 'morphology'
            f.write(', "morphology_classes": ' + json.dumps(list(MORPHOLOGY_CLASSES)))
        for key in ("images", "annotations"):
            f.write(f', "{key}": [')
            first = True
            for k, frag in enumerate(fragments()):
                for item in frag[key]:
                    f.write(("" if first else ", ") + json.dumps(item))
                    first = False
                    counts[key] += 1
                if log and key == "annotations":
                    log(f"  merged {k + 1}/{len(parts)} fragments")
            f.write("]")
        f.write("}\n")
        f.close()
        if local:
            os.replace(tmp, dest)
    except BaseException:
        f.close()
        if local:
            os.unlink(tmp)
        raise
    return counts
