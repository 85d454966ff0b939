"""``rbcray verify``: is a generated output complete and consistent?

Checks, in order: the manifest exists (it is written last); every shard it lists exists with the
recorded size and SHA-256; the shards hold exactly the sample ids 0..N-1, each once; every PNG
decodes to the recorded size (RGB image, uint16 instance mask, RGB colour mask); the colour mask is
a proper colouring of the instance mask; ``n_cells`` and every box match the instance mask.
Any problem is reported; the output is good only when there is none.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from rbcray import storage
from rbcray.data.formats import adjacency_pairs, decode_color_mask, instance_boxes
from rbcray.errors import DataError
from rbcray.generate.shards import MANIFEST, read_manifest
from rbcray.io import decode_png

MAX_PROBLEMS = 50


def check_sample(row: dict[str, Any]) -> list[str]:
    """Problems with one sample row (empty list when it is consistent)."""
    sid = row["sample_id"]
    where = f"sample {sid}"
    try:
        img = decode_png(row["image"], f"{where} image")
        inst = decode_png(row["instance_mask"], f"{where} instance_mask")
        col = decode_png(row["color_mask"], f"{where} color_mask")
    except DataError as e:
        return [str(e)]
    w, h = row["width"], row["height"]
    problems = []
    if img.shape != (h, w, 3) or img.dtype != np.uint8:
        problems.append(f"{where}: image is {img.dtype} {img.shape}, expected uint8 ({h}, {w}, 3)")
    if inst.shape != (h, w) or inst.dtype != np.uint16:
        return problems + [f"{where}: instance_mask is {inst.dtype} {inst.shape}, expected uint16 ({h}, {w})"]
    if col.shape != (h, w, 3):
        problems.append(f"{where}: color_mask is {col.shape}, expected ({h}, {w}, 3)")
    else:
        same = (col.any(-1)) == (inst > 0)
        if not same.all():
            problems.append(f"{where}: color_mask and instance_mask disagree on which pixels are cells")
        code = (col[..., 0].astype(np.int64) << 16) | (col[..., 1].astype(np.int64) << 8) | col[..., 2]
        pairs = adjacency_pairs(inst)
        if len(pairs):
            first = np.zeros(int(inst.max()) + 1, np.int64)
            ys, xs = np.nonzero(inst)
            first[inst[ys, xs]] = code[ys, xs]
            clash = first[pairs[:, 0]] == first[pairs[:, 1]]
            if clash.any():
                a, b = pairs[np.argmax(clash)]
                problems.append(f"{where}: touching cells {a} and {b} share a colour in color_mask")
        try:
            decode_color_mask(col, name=f"{where} color_mask")
        except DataError as e:
            problems.append(str(e))
    ids, boxes = instance_boxes(inst)
    if row["n_cells"] != len(ids):
        problems.append(f"{where}: n_cells = {row['n_cells']} but the instance mask has {len(ids)} cells")
    got = {int(b["instance_id"]): (b["x0"], b["y0"], b["x1"], b["y1"]) for b in row["boxes"]}
    want = {int(i): tuple(int(v) for v in bb) for i, bb in zip(ids, boxes)}
    if got != want:
        bad = sorted(set(got.items()) ^ set(want.items()))[:1]
        problems.append(f"{where}: boxes do not match the instance mask (first difference: {bad})")
    if len(row["styles"]) != len(row["boxes"]):
        problems.append(f"{where}: {len(row['styles'])} styles for {len(row['boxes'])} boxes")
    return problems


def verify_output(out: str, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Verify a generated output; returns ``{"n_samples", "n_shards", "problems"}``."""
    manifest = read_manifest(out)
    n = int(manifest["n_samples"])
    problems: list[str] = []
    seen = np.zeros(n, dtype=np.int32)
    extra_ids = 0

    def problem(msg: str) -> None:
        if len(problems) < MAX_PROBLEMS:
            problems.append(msg)

    for k, entry in enumerate(manifest["shards"]):
        uri = storage.join(out, entry["name"])
        if not storage.exists(uri):
            problem(f"{entry['name']}: listed in {MANIFEST} but missing")
            continue
        data = storage.read_bytes(uri)
        if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            problem(f"{entry['name']}: size or SHA-256 differs from {MANIFEST}")
            continue
        try:
            table = pq.read_table(io.BytesIO(data))
        except Exception as e:  # noqa: BLE001 - any parquet failure is a problem to report
            problem(f"{entry['name']}: not a readable Parquet file ({e})")
            continue
        if table.num_rows != entry["count"]:
            problem(f"{entry['name']}: {table.num_rows} rows, {MANIFEST} says {entry['count']}")
        for row in table.to_pylist():
            sid = row["sample_id"]
            if not entry["start"] <= sid < entry["stop"] or sid >= n:
                problem(f"{entry['name']}: sample {sid} is outside the shard's range")
                extra_ids += 1
                continue
            seen[sid] += 1
            for p in check_sample(row):
                problem(f"{entry['name']}: {p}")
        if log:
            log(f"  checked {entry['name']} ({k + 1}/{len(manifest['shards'])})")
    missing = np.flatnonzero(seen == 0)
    dupes = np.flatnonzero(seen > 1)
    if len(missing):
        problem(f"{len(missing)} sample id(s) missing, first {missing[:5].tolist()}")
    if len(dupes):
        problem(f"{len(dupes)} sample id(s) appear more than once, first {dupes[:5].tolist()}")
    return {"n_samples": int((seen > 0).sum()), "n_expected": n, "n_shards": len(manifest["shards"]), "problems": problems}
