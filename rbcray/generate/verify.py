"""``rbcray verify``: is a generated output complete and consistent?

Always, from listings only (two LISTs per 1,000 shards, no shard is read): the manifest exists
(it is written last); its shards cover the sample ids 0..N-1 exactly once; every shard it lists
exists with the recorded size, and its index marker records the same SHA-256.

``--deep`` (:func:`check_shard` per shard, as Ray tasks across the cluster: see
:func:`rbcray.distributed.generate.verify_deep`) also re-hashes every shard against the manifest,
reads it, and checks every sample: its id lies in the shard's range, each once; every PNG decodes
to the recorded size (RGB image, uint16 instance mask, RGB colour mask); the colour mask is a
proper colouring of the instance mask; ``n_cells`` and every box match the instance mask. Any
problem is reported; the output is good only when there is none.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from rbcray import storage
from rbcray.data.formats import adjacency_pairs, decode_color_mask, instance_boxes
from rbcray.errors import DataError
from rbcray.generate import objects
from rbcray.generate.shards import INDEX, MANIFEST, marker_name, png_bytes, read_manifest
from rbcray.io import decode_png

MAX_PROBLEMS = 50


def check_sample(row: dict[str, Any]) -> list[str]:
    """Problems with one sample row (empty list when it is consistent)."""
    sid = row["sample_id"]
    where = f"sample {sid}"
    try:
        img = decode_png(png_bytes(row["image"]), f"{where} image")
        inst = decode_png(png_bytes(row["instance_mask"]), f"{where} instance_mask")
        col = decode_png(png_bytes(row["color_mask"]), f"{where} color_mask")
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
    morph = [b.get("morphology") for b in row["boxes"] if b.get("morphology") is not None]
    if any(not -1 <= m <= 12 for m in morph):
        problems.append(f"{where}: a box has morphology {next(m for m in morph if not -1 <= m <= 12)}, outside -1..12")
    tried = {int(c["instance_id"]) for c in row.get("morphology_cells") or []}
    if not tried <= set(want):
        problems.append(f"{where}: morphology_cells name cells {sorted(tried - set(want))[:3]} the instance mask does not hold")
    if len(row["styles"]) != len(row["boxes"]):
        problems.append(f"{where}: {len(row['styles'])} styles for {len(row['boxes'])} boxes")
    return problems


def check_shard(out: str, entry: dict[str, Any]) -> list[str]:
    """Problems of one shard (deep check: re-hash, rows, every sample); a pure function of the
    stored bytes, run as a Ray task by ``verify --deep``."""
    name = entry["name"]
    data = objects.read(storage.join(out, name))
    if data is None:
        return [f"{name}: listed in {MANIFEST} but missing"]
    if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        return [f"{name}: size or SHA-256 differs from {MANIFEST}"]
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - any parquet failure is a problem to report
        return [f"{name}: not a readable Parquet file ({e})"]
    problems = []
    if table.num_rows != entry["count"]:
        problems.append(f"{name}: {table.num_rows} rows, {MANIFEST} says {entry['count']}")
    ids = []
    for row in table.to_pylist():
        sid = row["sample_id"]
        ids.append(sid)
        if not entry["start"] <= sid < entry["stop"]:
            problems.append(f"{name}: sample {sid} is outside the shard's range")
            continue
        problems += [f"{name}: {p}" for p in check_sample(row)]
        if len(problems) >= MAX_PROBLEMS:
            break
    if sorted(ids) != list(range(entry["start"], entry["stop"])):
        problems.append(f"{name}: does not hold exactly the sample ids {entry['start']}..{entry['stop'] - 1}")
    return problems[:MAX_PROBLEMS]


def verify_output(out: str, log: Callable[[str], None] | None = None, deep: bool = True,
                  map_fn: Callable[[list[dict[str, Any]]], Iterable[list[str]]] | None = None,
                  ) -> dict[str, Any]:
    """Verify a generated output; returns ``{"n_samples", "n_expected", "n_shards", "problems"}``.

    ``deep`` also runs :func:`check_shard` on every shard: ``map_fn(entries)`` yields the problem
    lists in order (default: in this process, one shard after the other).
    """
    manifest = read_manifest(out)
    n = int(manifest["n_samples"])
    entries = sorted(manifest["shards"], key=lambda e: e["start"])
    problems: list[str] = []

    def problem(msg: str) -> None:
        if len(problems) < MAX_PROBLEMS:
            problems.append(msg)

    # coverage of 0..N-1 from the manifest's ranges
    expect = 0
    for e in entries:
        if e["start"] != expect:
            problem(f"sample ids {expect}..{e['start'] - 1} are in no shard" if e["start"] > expect
                    else f"{e['name']}: overlaps the previous shard (ids from {e['start']})")
        expect = max(expect, e["stop"])
    if expect != n:
        problem(f"the shards hold ids up to {expect - 1}, the manifest counts {n} samples")
    sizes = objects.list_sizes(out)
    markers = set(objects.list_sizes(storage.join(out, INDEX)))
    bad: set[str] = set()
    for e in entries:
        if e["name"] not in sizes:
            problem(f"{e['name']}: listed in {MANIFEST} but missing")
            bad.add(e["name"])
        elif sizes[e["name"]] != e["bytes"] or marker_name(e) not in markers:
            problem(f"{e['name']}: size or SHA-256 differs from {MANIFEST}")
            bad.add(e["name"])
    n_ok = sum(e["count"] for e in entries if e["name"] not in bad)
    if deep:
        run = map_fn or (lambda items: (check_shard(out, e) for e in items))
        n_ok = 0
        for k, (e, found) in enumerate(zip(entries, run(entries))):
            for p in found:
                problem(p)
            if not found:
                n_ok += e["count"]
            if log:
                log(f"  checked {e['name']} ({k + 1}/{len(entries)})")
        bad_ids = sum(e["count"] for e in entries) - n_ok
        if bad_ids:
            problem(f"{bad_ids} sample id(s) missing or unreadable in {len(entries)} shard(s)")
    return {"n_samples": n_ok, "n_expected": n, "n_shards": len(entries), "problems": problems}
