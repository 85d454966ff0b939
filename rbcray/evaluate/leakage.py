"""Which real images the synthetic data was learned from, and the refusal when that touches val/test.

The synthetic shards' ``manifest.json`` names the generator checkpoint, the shape bank and the
statistics it used; each of those records the image stems it learned from
(:func:`rbcray.data.provenance.provenance_record`): the checkpoint's ``model.json``, the shape
bank's Parquet metadata key ``rbcray_provenance``, ``stats.json``; the manifest may also carry
them under ``provenance``. A synthetic dataset folder carries them in ``dataset.json``.

:func:`synthetic_provenance` gathers every record it can find (nesting does not matter: records
are found by shape, :func:`rbcray.data.provenance.flatten`) and names the inputs that record
none. :func:`check_leakage` then refuses — one line naming the input and the images — when any
record used an image of the evaluation's val or test role, or when an input records nothing
(it could have seen anything), unless ``allow_overlap`` (ablations), which every report prints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rbcray import storage
from rbcray.data.provenance import check_no_overlap, flatten, overlaps
from rbcray.data.splits import Splits
from rbcray.errors import DataError

#: manifest key -> the name the records of that input go under
INPUTS: dict[str, str] = {"checkpoint": "generator", "shapes": "shapes", "stats": "stats"}
PARQUET_KEY = b"rbcray_provenance"


def _read_json(uri: str) -> Any | None:
    try:
        if not storage.exists(uri):
            return None
        return json.loads(storage.read_bytes(uri))
    except (ValueError, OSError):
        return None


def _artefact_records(kind: str, uri: str) -> Any | None:
    """The provenance an artefact records about itself (None when it records none or is gone)."""
    if kind == "checkpoint":
        for rel in ("model/model.json", "model.json"):
            d = _read_json(storage.join(uri, rel))
            if d is not None:
                return d.get("provenance", d)
        return None
    if kind == "stats":
        d = _read_json(uri)
        return None if d is None else d.get("provenance")
    if kind == "shapes":
        try:
            import pyarrow.parquet as pq

            if storage.is_remote(uri):
                fs, path = storage.pyarrow_filesystem(uri)
                meta = pq.read_schema(path, filesystem=fs).metadata or {}
            elif Path(uri).is_file():
                meta = pq.read_schema(uri).metadata or {}
            else:
                return None
        except Exception:  # noqa: BLE001 - an unreadable bank simply records nothing here
            return None
        raw = meta.get(PARQUET_KEY)
        return json.loads(raw) if raw else None
    return None


def synthetic_provenance(uri: str, kind: str = "parquet") -> tuple[dict[str, Any], list[str]]:
    """(records by input, names of inputs that record nothing) of a synthetic source."""
    if kind == "folder":
        d = _read_json(storage.join(uri, "dataset.json")) or {}
        prov = d.get("provenance")
        return ({"dataset": prov}, []) if flatten(prov) else ({}, [f"{uri} (dataset.json has no provenance)"])
    manifest = _read_json(storage.join(uri, "manifest.json")) or {}
    found: dict[str, Any] = {}
    if flatten(manifest.get("provenance")):
        found["manifest"] = manifest["provenance"]
    # key names on the way to the manifest's own records ("generator", "shapes.train", ...)
    in_manifest = {part.split("[")[0] for p, _ in flatten(manifest.get("provenance")) for part in p.split(".")}
    unrecorded = []
    for key, name in INPUTS.items():
        ref = manifest.get(key)
        rec = _artefact_records(key, str(ref)) if ref else None
        if flatten(rec):
            found[name] = rec
        elif name not in in_manifest and key not in in_manifest:
            unrecorded.append(f"{name} {ref}" if ref else f"{name} (not named in {uri}/manifest.json)")
    return found, unrecorded


def check_leakage(
    dataset: str, synthetic_uri: str, records: dict[str, Any], unrecorded: list[str], held_out: Splits,
    allow_overlap: bool = False,
) -> list[str]:
    """Refuse (:class:`DataError`, one line) synthetic inputs that saw held-out images or record
    nothing; with ``allow_overlap`` return what would have been refused, for the reports."""
    notes = [f"{where} was built from {role} image(s) {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}"
             for where, role, bad in overlaps(records, held_out)]
    notes += [f"{u}: records no source images (cannot be checked)" for u in unrecorded]
    if allow_overlap:
        return notes
    try:
        check_no_overlap(records, held_out)
    except DataError as e:
        raise DataError(f"dataset {dataset!r}, synthetic {synthetic_uri}: {e}") from None
    if unrecorded:
        raise DataError(
            f"dataset {dataset!r}, synthetic {synthetic_uri}: {unrecorded[0]} records no source images, so it "
            "cannot be checked against the val/test split; rebuild it with this rbcray (or --allow-overlap for ablations)"
        )
    return []
