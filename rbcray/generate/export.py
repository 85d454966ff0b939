"""Optional exports beside the Parquet shards: a PNG tree and a COCO JSON for detection frameworks.

``--png`` writes ``images/``, ``instances/`` (uint16) and ``masks/`` (colour-coded) with one file
per sample, named ``%09d.png`` by sample id; ``--coco`` writes ``coco.json`` (instances with RLE
segmentation, the layout of ``rbcray.data.formats``). Both are written per shard *before* the
shard's Parquet file, so a shard that exists has its exports too; ``coco.json`` is merged from the
per-shard fragments in ``_coco/`` when the run finishes, before the manifest.
"""

from __future__ import annotations

import json
from typing import Any

from rbcray import storage
from rbcray.data.formats import coco_document, instances_to_coco
from rbcray.generate.shards import Shard
from rbcray.io import decode_png

COCO_PARTS = "_coco"


def sample_name(sample_id: int) -> str:
    return f"{sample_id:09d}.png"


def write_png_tree(out: str, rows: list[dict[str, Any]]) -> None:
    """The PNG files of a shard's samples (bytes as stored in the shard, not re-encoded)."""
    for r in rows:
        name = sample_name(r["sample_id"])
        storage.write_bytes(storage.join(out, "images", name), r["image"])
        storage.write_bytes(storage.join(out, "instances", name), r["instance_mask"])
        storage.write_bytes(storage.join(out, "masks", name), r["color_mask"])


def write_coco_fragment(out: str, shard: Shard, rows: list[dict[str, Any]]) -> None:
    """COCO images and annotations of one shard (image id = sample id + 1)."""
    images, anns = [], []
    for r in rows:
        sid = int(r["sample_id"])
        inst = decode_png(r["instance_mask"], f"sample {sid}")
        cats = {b["instance_id"]: b["class"] for b in r["boxes"]}
        images.append({"id": sid + 1, "file_name": f"images/{sample_name(sid)}", "width": r["width"], "height": r["height"],
                       "rbcray_sample_id": sid})
        anns.extend(instances_to_coco(inst, sid + 1, 1, cats))
    doc = {"images": images, "annotations": anns}
    storage.write_bytes(storage.join(out, COCO_PARTS, shard.name.replace(".parquet", ".json")), json.dumps(doc).encode())


def merge_coco(out: str, shards: list[Shard]) -> None:
    """``coco.json`` from the per-shard fragments, annotation ids renumbered 1..M."""
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for sh in shards:
        frag = json.loads(storage.read_bytes(storage.join(out, COCO_PARTS, sh.name.replace(".parquet", ".json"))))
        images += frag["images"]
        for a in frag["annotations"]:
            a["id"] = len(anns) + 1
            anns.append(a)
    doc = coco_document(images, anns, {"description": "rbcray synthetic dataset"})
    storage.write_bytes(storage.join(out, "coco.json"), json.dumps(doc).encode())
