"""Parquet shards of generated samples: schema, shard plan, atomic writes, manifest.

The product of rbcray is a dataset of (image, instance mask, colour mask, boxes) samples that any
training code can read without rbcray (pyarrow, pandas, DuckDB, Hugging Face ``datasets``):

- one Parquet file per *shard*; shard ``k`` holds sample ids ``[k*S, min((k+1)*S, N))`` and is
  named after that range (``shard-000000000-000000064.parquet``), so names are a function of the
  plan, never of which worker wrote what;
- ``S`` (samples per shard) is fixed when a run starts, from a target byte count and the image
  size, and recorded in ``_plan.json``; a re-run with the same plan writes only missing shards;
- each shard is written whole (temporary name + rename locally, a single upload on object
  storage), so a shard that exists is complete;
- ``manifest.json`` (count and SHA-256 per shard, config, checksums of the inputs) is written last:
  an output without it is incomplete.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rbcray import __version__, storage
from rbcray.errors import RbcrayError

MANIFEST = "manifest.json"
PLAN = "_plan.json"
FORMAT = "rbcray-shards"
FORMAT_VERSION = 1

BOX_TYPE = pa.struct(
    [
        ("x0", pa.int32()),
        ("y0", pa.int32()),
        ("x1", pa.int32()),
        ("y1", pa.int32()),
        ("instance_id", pa.int32()),
        ("class", pa.int32()),
    ]
)

#: The shard schema (boxes are pixel corners, x1/y1 exclusive; class is the COCO category id:
#: 1 RBC, 2 WBC, 3 Platelet; styles[k] is the style cluster of boxes[k]'s instance).
SCHEMA = pa.schema(
    [
        ("sample_id", pa.int64()),
        ("seed", pa.int64()),
        ("image", pa.binary()),
        ("instance_mask", pa.binary()),
        ("color_mask", pa.binary()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("n_cells", pa.int32()),
        ("boxes", pa.list_(BOX_TYPE)),
        ("styles", pa.list_(pa.int32())),
        ("quality", pa.float32()),  # mask fidelity (null without --quality-encoder)
        ("attempts", pa.int32()),  # candidates generated for this row (the quality gate; 1 without it)
        ("checkpoint_sha256", pa.string()),
        ("shapes_sha256", pa.string()),
        ("rbcray_version", pa.string()),
        ("config", pa.string()),
    ]
)


@dataclass(frozen=True)
class Shard:
    """One planned shard: sample ids ``[start, stop)``."""

    index: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"shard-{self.start:09d}-{self.stop:09d}.parquet"

    @property
    def count(self) -> int:
        return self.stop - self.start


def samples_per_shard(target_bytes: int, width: int, height: int) -> int:
    """Samples per shard for a target shard size (PNG RGB ~ 1.5 bytes/pixel, masks ~ 0.2)."""
    per_sample = width * height * 1.7 + 2048
    return max(1, int(target_bytes // per_sample))


def plan_shards(num_samples: int, per_shard: int) -> list[Shard]:
    """Split ids ``0..num_samples-1`` into consecutive shards of ``per_shard`` samples."""
    if num_samples < 1 or per_shard < 1:
        raise RbcrayError(f"cannot plan {num_samples} samples in shards of {per_shard}")
    return [Shard(k, a, min(a + per_shard, num_samples)) for k, a in enumerate(range(0, num_samples, per_shard))]


def shard_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """A shard's Arrow table from row dicts (keys = schema names), sorted by sample id."""
    rows = sorted(rows, key=lambda r: r["sample_id"])
    cols = {f.name: [r[f.name] for r in rows] for f in SCHEMA}
    return pa.Table.from_pydict(cols, schema=SCHEMA)


def table_bytes(table: pa.Table) -> bytes:
    """Serialise a shard (zstd-compressed columns; PNG bytes are stored as they are)."""
    buf = io.BytesIO()
    pq.write_table(
        table,
        buf,
        compression={"image": "none", "instance_mask": "none", "color_mask": "none"} | {
            f.name: "zstd" for f in SCHEMA if f.name not in ("image", "instance_mask", "color_mask")
        },
        row_group_size=max(1, min(len(table), 64)),
    )
    return buf.getvalue()


def write_shard(out: str, shard: Shard, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Write one complete shard atomically; returns its manifest entry."""
    ids = sorted(r["sample_id"] for r in rows)
    if ids != list(range(shard.start, shard.stop)):
        raise RuntimeError(f"{shard.name}: rows hold ids {ids[:3]}...{ids[-3:]}, expected {shard.start}..{shard.stop - 1}")
    data = table_bytes(shard_table(rows))
    storage.write_bytes(storage.join(out, shard.name), data)
    return {"name": shard.name, "start": shard.start, "stop": shard.stop, "count": shard.count,
            "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def shard_entry_from_storage(out: str, shard: Shard) -> dict[str, Any] | None:
    """Manifest entry of an existing, readable shard with the right ids; None when absent or bad."""
    uri = storage.join(out, shard.name)
    if not storage.exists(uri):
        return None
    data = storage.read_bytes(uri)
    try:
        ids = pq.read_table(io.BytesIO(data), columns=["sample_id"]).column(0).to_pylist()
    except Exception:  # noqa: BLE001 - a truncated or foreign file is simply redone
        return None
    if sorted(ids) != list(range(shard.start, shard.stop)):
        return None
    return {"name": shard.name, "start": shard.start, "stop": shard.stop, "count": shard.count,
            "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def read_plan(out: str) -> dict[str, Any] | None:
    uri = storage.join(out, PLAN)
    return json.loads(storage.read_bytes(uri)) if storage.exists(uri) else None


def write_plan(out: str, plan: dict[str, Any]) -> None:
    storage.write_bytes(storage.join(out, PLAN), json.dumps(plan, indent=2).encode())


def write_manifest(out: str, entries: list[dict[str, Any]], info: dict[str, Any]) -> dict[str, Any]:
    """Write ``manifest.json`` (last, after every shard is in place)."""
    entries = sorted(entries, key=lambda e: e["start"])
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "rbcray_version": __version__,
        "n_samples": int(sum(e["count"] for e in entries)),
        "n_shards": len(entries),
        "shards": entries,
        **info,
    }
    storage.write_bytes(storage.join(out, MANIFEST), json.dumps(manifest, indent=2).encode())
    return manifest


def read_manifest(out: str) -> dict[str, Any]:
    uri = storage.join(out, MANIFEST)
    if not storage.exists(uri):
        raise RbcrayError(f"{out}: no {MANIFEST} (the run is incomplete or this is not an rbcray output)")
    try:
        m = json.loads(storage.read_bytes(uri))
    except json.JSONDecodeError as e:
        raise RbcrayError(f"{uri}: not valid JSON ({e.msg})") from None
    if m.get("format") != FORMAT:
        raise RbcrayError(f"{uri}: not an rbcray shard manifest")
    return m
