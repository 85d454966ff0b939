"""Optional PNG tree beside the Parquet shards (``--png``), for tools that want one file per image.

``OUT/_png/images/``, ``OUT/_png/instances/`` (uint16) and ``OUT/_png/masks/`` (colour-coded),
one file per sample named ``%09d.png`` by sample id: the bytes stored in the shard, not re-encoded.
Written per shard before the shard's Parquet file, so a shard that exists has its PNGs too. The
folder name starts with '_' so that Parquet readers of ``OUT`` skip it.
"""

from __future__ import annotations

from typing import Any

from rbcray import storage
from rbcray.generate import objects

PNG_TREE = "_png"


def sample_name(sample_id: int) -> str:
    return f"{sample_id:09d}.png"


def write_png_tree(out: str, rows: list[dict[str, Any]]) -> None:
    """The PNG files of a shard's samples."""
    for r in rows:
        name = sample_name(r["sample_id"])
        objects.write(storage.join(out, PNG_TREE, "images", name), r["image"])
        objects.write(storage.join(out, PNG_TREE, "instances", name), r["instance_mask"])
        objects.write(storage.join(out, PNG_TREE, "masks", name), r["color_mask"])
