"""Small real-image datasets and issue-5 Parquet shards for the evaluation tests.

Masks here come from a plain Otsu threshold of the green channel (holes filled, small specks
dropped): crude, but real images with plausible cells, and independent of ``rbcray annotate``.
The "synthetic" shards hold other real Chula images: they exercise the shard reader and the
regimes, not the generator.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rbcray.data.dataset import DatasetWriter
from rbcray.data.formats import encode_color_mask, instance_boxes
from rbcray.io import encode_png, read_image


def otsu_instances(img: np.ndarray, min_area: int = 80) -> np.ndarray:
    """Connected components of the Otsu foreground of the green channel, holes filled."""
    _, m = cv2.threshold(img[..., 1], 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    h, w = m.shape
    flood = m.copy()
    mask = np.zeros((h + 2, w + 2), np.uint8)
    for x, y in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)):
        if flood[y, x] == 0:
            cv2.floodFill(flood, mask, (x, y), 255)
    filled = m | cv2.bitwise_not(flood)
    n, lab, st, _ = cv2.connectedComponentsWithStats(filled, connectivity=8)
    out = np.zeros((h, w), np.uint16)
    k = 0
    for i in range(1, n):
        if st[i, cv2.CC_STAT_AREA] >= min_area:
            k += 1
            out[lab == i] = k
    return out


def chula_images(chula_root: Path, start: int, n: int) -> list[tuple[str, np.ndarray]]:
    files = sorted((chula_root / "Dataset").glob("*.jpg"), key=lambda p: int(p.stem))[start:start + n]
    return [(p.stem, read_image(p)) for p in files]


def make_chula_dataset(chula_root: Path, out: Path, n: int, start: int = 0, kind: str = "derived") -> Path:
    """An rbcray dataset folder of ``n`` real Chula images with Otsu instance masks."""
    with DatasetWriter(out, name=out.name, kind=kind, source={"dataset": "chula-rbc-12"}) as w:
        for stem, img in chula_images(chula_root, start, n):
            w.add(f"c{stem}", otsu_instances(img), image=img)
    return out


def generator_provenance(stems: list[str], dataset: str = "chula", split: str = "train") -> dict:
    """A manifest's ``provenance`` as if generator, shape bank and statistics had learned from
    ``stems`` of ``dataset`` (the records rbcray.data.provenance writes)."""
    rec = {"dataset": dataset, "root": None, "split": split, "splits_sha256": None, "n_images": len(stems),
           "stems": sorted(stems)}
    return {"generator": rec, "shapes": rec, "stats": rec}


def write_shards(chula_root: Path, out: Path, n: int, start: int = 100, per_shard: int = 4, manifest: bool = True,
                 provenance: dict | None = None) -> Path:
    """Parquet shards in the generation engine's schema (issue 5) holding ``n`` samples.

    The manifest's ``provenance`` says the generator learned from Chula images ``c{start}``...
    (never the test datasets' first images) unless ``provenance`` is given."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for sid, (_, img) in enumerate(chula_images(chula_root, start, n)):
        inst = otsu_instances(img)
        ids, boxes = instance_boxes(inst)
        rows.append({
            "sample_id": sid, "seed": 7, "image": encode_png(img), "instance_mask": encode_png(inst),
            "color_mask": encode_png(encode_color_mask(inst)), "width": img.shape[1], "height": img.shape[0],
            "n_cells": len(ids),
            "boxes": [{"x0": int(b[0]), "y0": int(b[1]), "x1": int(b[2]), "y1": int(b[3]), "instance_id": int(i), "class": 1}
                      for i, b in zip(ids, boxes)],
            "styles": [0] * len(ids), "checkpoint_sha256": "0" * 64, "shapes_sha256": "0" * 64,
            "rbcray_version": "test", "config": json.dumps({"seed": 7}),
        })
    shards = []
    # written in reverse id order: the reader must sort by sample id, not trust file order
    for k in range(0, n, per_shard):
        part = rows[k:k + per_shard]
        name = f"samples-{part[0]['sample_id']:08d}-{part[-1]['sample_id']:08d}.parquet"
        pq.write_table(pa.Table.from_pylist(part[::-1]), out / name)
        shards.append({"file": name, "count": len(part)})
    if manifest:
        prov = provenance if provenance is not None else generator_provenance([f"c{start + k}" for k in range(n)])
        (out / "manifest.json").write_text(json.dumps({"count": n, "shards": shards, "provenance": prov}))
    return out
