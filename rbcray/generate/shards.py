"""Parquet shards of generated samples: layout, schema, shard plan, atomic writes, manifest.

The product of rbcray is a dataset of (image, instance mask, colour mask, boxes) samples that any
training code reads without rbcray. Layout of an output ``OUT`` (local folder or ``s3://`` prefix)::

    OUT/train-000000000-000000064.parquet   the samples: the only files without a '_' prefix
    OUT/_manifest.json                      written last: an output without it is incomplete
    OUT/_plan.json                          the run's content config (a re-run must agree)
    OUT/_lease.json                         the running run's lease (one run per output)
    OUT/_index/                             one empty marker per written shard (range, size, SHA-256)
    OUT/_coco/, OUT/_png/                   optional exports (--coco, --png)

Every non-sample name starts with '_', so Arrow's dataset discovery (``pandas.read_parquet(OUT)``,
``pyarrow.dataset``) skips it; shard names start with ``train-``, the file-name pattern Hugging
Face ``datasets.load_dataset("parquet", data_dir=OUT)`` picks out as the train split; DuckDB reads
``read_parquet('OUT/*.parquet')``.

- shard ``k`` holds sample ids ``[k*S, min((k+1)*S, N))`` and is named after that range, so names
  are a function of the plan, never of which worker wrote what;
- each shard is written whole (temporary name + rename locally, one upload on object storage),
  then its marker ``_index/<start>-<stop>.<bytes>.<sha256>``: a re-run learns which shards are done, and
  their sizes and checksums, from one LIST of ``_index/`` (no shard is read);
- the image columns are Hugging Face ``Image`` structs (``{bytes: PNG, path: null}``), declared in
  the schema's ``huggingface`` metadata, so ``ds[0]["image"]`` is a PIL image; run constants
  (config, input checksums, version) are in the file's key-value metadata under ``rbcray``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rbcray import __version__, storage
from rbcray.errors import RbcrayError
from rbcray.generate import objects

MANIFEST = "_manifest.json"
#: where a re-run moves the previous run's manifest at start (so none is visible while it works)
PREVIOUS_MANIFEST = "_manifest.previous.json"
PLAN = "_plan.json"
INDEX = "_index"
FORMAT = "rbcray-shards"
FORMAT_VERSION = 3
SHARD_PREFIX = "train-"
#: row groups of about this many bytes (readers fetch a row group at a time)
ROW_GROUP_BYTES = 64 * 2**20

BOX_TYPE = pa.struct(
    [
        ("x0", pa.int32()),
        ("y0", pa.int32()),
        ("x1", pa.int32()),
        ("y1", pa.int32()),
        ("instance_id", pa.int32()),
        ("class", pa.int32()),
        # red-cell morphology (rbcray.data.morphology.CLASSES index; -1 unlabelled RBC); null on
        # WBC / platelet boxes and in runs without --morphology
        ("morphology", pa.int32()),
    ]
)
#: one translation attempt of ``--morphology`` (rbcray.generate.morphology): the cell, the class it
#: was translated into, the classifier's p(class) (null without a classifier), kept or not
MORPHOLOGY_CELL_TYPE = pa.struct(
    [("instance_id", pa.int32()), ("class", pa.int32()), ("p", pa.float32()), ("accepted", pa.bool_())]
)
#: Hugging Face's Image storage type: PNG bytes plus an (unused, null) path
IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
IMAGE_COLUMNS = ("image", "instance_mask", "color_mask")

#: The shard schema, the one place columns are declared (boxes are pixel corners, x1/y1
#: exclusive; class is the COCO category id: 1 RBC, 2 WBC, 3 Platelet, morphology the RBC subclass
#: of --morphology runs; styles[k] is the style
#: cluster of boxes[k]'s instance). A new column is added here and filled by the stage that knows it.
SCHEMA = pa.schema(
    [
        ("sample_id", pa.int64()),
        ("seed", pa.int64()),
        ("image", IMAGE_TYPE),
        ("instance_mask", IMAGE_TYPE),
        ("color_mask", IMAGE_TYPE),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("n_cells", pa.int32()),
        ("boxes", pa.list_(BOX_TYPE)),
        ("styles", pa.list_(pa.int32())),
        ("quality", pa.float32()),  # mask fidelity (null without --quality-encoder)
        ("attempts", pa.int32()),  # candidates generated for this row (the quality gate; 1 without it)
        ("morphology_cells", pa.list_(MORPHOLOGY_CELL_TYPE)),  # --morphology attempts (null without it)
    ]
)
_HF_FEATURES = {"info": {"features": {c: {"_type": "Image"} for c in IMAGE_COLUMNS}}}


def png_bytes(value: Any) -> bytes:
    """The PNG bytes of an image cell (an Image struct as read back, or plain bytes)."""
    return value["bytes"] if isinstance(value, dict) else value


def image_cell(data: bytes) -> dict[str, Any]:
    return {"bytes": data, "path": None}


def file_schema(constants: dict[str, Any]) -> pa.Schema:
    """:data:`SCHEMA` with the key-value metadata of a run (run constants, HF features)."""
    return SCHEMA.with_metadata({b"rbcray": json.dumps(constants, sort_keys=True).encode(),
                                 b"huggingface": json.dumps(_HF_FEATURES).encode()})


def read_constants(path_or_file: Any, filesystem: Any = None) -> dict[str, Any]:
    """The run constants stored in a shard's footer."""
    md = pq.read_schema(path_or_file, filesystem=filesystem).metadata or {}
    return json.loads(md[b"rbcray"]) if b"rbcray" in md else {}


@dataclass(frozen=True)
class Shard:
    """One planned shard: sample ids ``[start, stop)``."""

    index: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"{SHARD_PREFIX}{self.start:09d}-{self.stop:09d}.parquet"

    @property
    def count(self) -> int:
        return self.stop - self.start


class ShardPlan(Sequence[Shard]):
    """Ids ``0..num_samples-1`` in consecutive shards of ``per_shard``: computed on demand, so a
    plan of 10^8 samples costs no memory."""

    def __init__(self, num_samples: int, per_shard: int) -> None:
        if num_samples < 1 or per_shard < 1:
            raise RbcrayError(f"cannot plan {num_samples} samples in shards of {per_shard}")
        self.num_samples, self.per_shard = int(num_samples), int(per_shard)

    def __len__(self) -> int:
        return -(-self.num_samples // self.per_shard)

    def __getitem__(self, k):  # type: ignore[override]
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(k)
        a = k * self.per_shard
        return Shard(k, a, min(a + self.per_shard, self.num_samples))

    def __iter__(self) -> Iterator[Shard]:
        return (self[k] for k in range(len(self)))

    def index_of(self, name: str) -> int | None:
        """The shard index of a file name, or None when the name is not one of this plan's."""
        try:
            a, b = name[len(SHARD_PREFIX):].removesuffix(".parquet").split("-")
            k = int(a) // self.per_shard
        except ValueError:
            return None
        if not name.startswith(SHARD_PREFIX) or not 0 <= k < len(self):
            return None
        return k if self[k].name == name else None


def samples_per_shard(target_bytes: int, width: int, height: int) -> int:
    """Samples per shard for a target shard size (PNG RGB ~ 1.5 bytes/pixel, masks ~ 0.2)."""
    per_sample = width * height * 1.7 + 2048
    return max(1, int(target_bytes // per_sample))


def plan_shards(num_samples: int, per_shard: int) -> ShardPlan:
    """Split ids ``0..num_samples-1`` into consecutive shards of ``per_shard`` samples."""
    return ShardPlan(num_samples, per_shard)


def shard_table(rows: Sequence[dict[str, Any]], constants: dict[str, Any] | None = None) -> pa.Table:
    """A shard's Arrow table from row dicts (keys = schema names), sorted by sample id."""
    rows = sorted(rows, key=lambda r: r["sample_id"])
    cols = {f.name: [r.get(f.name) for r in rows] for f in SCHEMA}  # a column a stage did not fill is null
    for c in IMAGE_COLUMNS:
        cols[c] = [v if isinstance(v, dict) else image_cell(v) for v in cols[c]]
    return pa.Table.from_pydict(cols, schema=file_schema(constants or {}))


def table_bytes(table: pa.Table) -> bytes:
    """Serialise a shard: PNG bytes stored as they are (no compression, no dictionary), other
    columns zstd; row groups of about :data:`ROW_GROUP_BYTES`."""
    per_row = max(1, table.nbytes // max(1, table.num_rows))
    buf = io.BytesIO()
    plain = {f"{c}.bytes" for c in IMAGE_COLUMNS} | {f"{c}.path" for c in IMAGE_COLUMNS}
    leaves = [f.name for f in SCHEMA if f.name not in IMAGE_COLUMNS] + [f"{c}.{p}" for c in IMAGE_COLUMNS for p in ("bytes", "path")]
    pq.write_table(
        table, buf,
        compression={c: ("none" if c in plain else "zstd") for c in leaves},
        use_dictionary=[c for c in leaves if c not in plain],
        row_group_size=max(1, min(table.num_rows, ROW_GROUP_BYTES // per_row)),
    )
    return buf.getvalue()


def marker_name(entry: dict[str, Any]) -> str:
    """``<start>-<stop>.<bytes>.<sha256>`` (no ``train-`` prefix: Hugging Face's split pattern
    would take the markers for data files)."""
    return f"{entry['start']:09d}-{entry['stop']:09d}.{entry['bytes']}.{entry['sha256']}"


#: A test's fault hook for the writer: ``hook("write", k)`` is called with half of shard ``k``'s
#: object written, ``hook("index", k)`` with the object in place but not yet its index marker.
#: Only a caller can pass one (tests do); nothing reads it from the environment or a config.
WriteHook = Callable[[str, int], None]


def write_shard(out: str, shard: Shard, rows: Sequence[dict[str, Any]], constants: dict[str, Any] | None = None, *,
                fault_hook: WriteHook | None = None) -> dict[str, Any]:
    """Write one complete shard atomically, then its index marker; returns its manifest entry.

    A shard without its marker is not done: a writer that dies anywhere before the marker leaves
    a shard that the next run rewrites (and, locally, a ``.<name>.*.partial`` temporary that
    :func:`remove_partials` clears; on object storage an unfinished upload is never visible)."""
    ids = sorted(r["sample_id"] for r in rows)
    if ids != list(range(shard.start, shard.stop)):
        raise RuntimeError(f"{shard.name}: rows hold ids {ids[:3]}...{ids[-3:]}, expected {shard.start}..{shard.stop - 1}")
    data = table_bytes(shard_table(rows, constants))
    part = None if fault_hook is None else (lambda: fault_hook("write", shard.index))
    objects.write(storage.join(out, shard.name), data, after_part=part)
    entry = {"name": shard.name, "start": shard.start, "stop": shard.stop, "count": shard.count,
             "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if fault_hook is not None:
        fault_hook("index", shard.index)
    objects.write(storage.join(out, INDEX, marker_name(entry)), b"")
    return entry


def remove_partials(out: str) -> int:
    """Delete the temporary files of shards whose local writer died mid-write (run under the
    output's lease, so no live writer owns one); returns how many. Object storage keeps none."""
    if storage.is_remote(out) or not os.path.isdir(out):
        return 0
    stale = [n for n in os.listdir(out) if n.startswith(f".{SHARD_PREFIX}") and n.endswith(".partial")]
    for n in stale:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(out, n))
    return len(stale)


def done_from_listing(out: str, plan: ShardPlan) -> dict[str, dict[str, Any]]:
    """Manifest entries of the shards already written, from one LIST of ``_index/`` (no reads)."""
    done: dict[str, dict[str, Any]] = {}
    for marker in objects.list_sizes(storage.join(out, INDEX)):
        try:
            stem, nbytes, sha = marker.rsplit(".", 2)
            nbytes_i = int(nbytes)
        except ValueError:
            continue
        k = plan.index_of(f"{SHARD_PREFIX}{stem}.parquet")
        if k is None or len(sha) != 64:
            continue
        sh = plan[k]
        done[sh.name] = {"name": sh.name, "start": sh.start, "stop": sh.stop, "count": sh.count, "bytes": nbytes_i, "sha256": sha}
    return done


def read_plan(out: str) -> dict[str, Any] | None:
    data = objects.read(storage.join(out, PLAN))
    return None if data is None else json.loads(data)


def write_plan(out: str, plan: dict[str, Any]) -> None:
    objects.write(storage.join(out, PLAN), json.dumps(plan, indent=2).encode())


def build_manifest(entries: list[dict[str, Any]], info: dict[str, Any]) -> dict[str, Any]:
    """The manifest dict, built in this one place (run facts in ``info``: config, inputs,
    checksums, timing, provenance ...)."""
    entries = sorted(entries, key=lambda e: e["start"])
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "rbcray_version": __version__,
        "n_samples": int(sum(e["count"] for e in entries)),
        "n_shards": len(entries),
        "shards": entries,
        **info,
    }


def write_manifest(out: str, entries: list[dict[str, Any]], info: dict[str, Any]) -> dict[str, Any]:
    """Write ``_manifest.json`` (last, after every shard is in place)."""
    manifest = build_manifest(entries, info)
    objects.write(storage.join(out, MANIFEST), json.dumps(manifest, indent=1).encode())
    return manifest


def move_manifest_aside(out: str) -> bool:
    """At the start of a run: the previous manifest becomes ``_manifest.previous.json``."""
    return objects.move(storage.join(out, MANIFEST), storage.join(out, PREVIOUS_MANIFEST))


def read_manifest(out: str) -> dict[str, Any]:
    uri = storage.join(out, MANIFEST)
    data = objects.read(uri)
    if data is None:
        raise RbcrayError(f"{out}: no {MANIFEST} (the run is incomplete or this is not an rbcray output)")
    try:
        m = json.loads(data)
    except json.JSONDecodeError as e:
        raise RbcrayError(f"{uri}: not valid JSON ({e.msg})") from None
    if m.get("format") != FORMAT:
        raise RbcrayError(f"{uri}: not an rbcray shard manifest")
    return m
