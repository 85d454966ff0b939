"""Provenance: which real images a learned artefact was built from, and the overlap check.

Every stage that learns from real data writes one provenance record beside its output (shape-bank
Parquet metadata, ``stats.json``, a checkpoint's ``model.json``, ``params.json`` of calibration)::

    {"dataset": "chula-rbc-12", "root": "/abs/annotated", "split": "train" | "all",
     "splits_sha256": "..." | None, "n_images": 28, "stems": ["1", "10", ...]}

Records nest: a generation run's manifest carries the records of its checkpoint, shape bank and
statistics under ``provenance``; :func:`check_no_overlap` flattens them and refuses any stem that
is in a held-out role of the evaluation's split.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rbcray.data.splits import HELD_OUT, Splits
from rbcray.errors import DataError, RbcrayError


def provenance_record(
    dataset: str,
    stems: Iterable[str],
    *,
    root: str | None = None,
    splits: Splits | None = None,
    role: str | None = None,
) -> dict[str, Any]:
    """The record a learning stage saves: dataset name, split role (``all`` without a split
    file), the split file's hash, and the exact sorted stems it learned from."""
    stems = sorted(set(stems))
    return {
        "dataset": dataset,
        "root": root,
        "split": role if splits is not None else "all",
        "splits_sha256": splits.sha256() if splits is not None else None,
        "n_images": len(stems),
        "stems": stems,
    }


def is_record(d: Any) -> bool:
    return isinstance(d, Mapping) and "dataset" in d and isinstance(d.get("stems"), list)


def flatten(prov: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """All provenance records inside a nested structure, each with the key path that leads to it
    (e.g. ``generator``, ``inputs.shapes``)."""
    out: list[tuple[str, dict[str, Any]]] = []
    if is_record(prov):
        out.append((path or "input", dict(prov)))
    elif isinstance(prov, Mapping):
        for k, v in prov.items():
            out.extend(flatten(v, f"{path}.{k}" if path else str(k)))
    elif isinstance(prov, (list, tuple)):
        for i, v in enumerate(prov):
            out.extend(flatten(v, f"{path}[{i}]"))
    return out


def overlaps(prov: Any, splits: Splits, roles: Iterable[str] = HELD_OUT) -> list[tuple[str, str, list[str]]]:
    """``(input path, role, stems)`` for every record of ``prov`` that used a stem of ``roles``.

    Records of another dataset than the split's are skipped (stems are only comparable within a
    dataset); a record with no dataset name is compared anyway, to fail safe.
    """
    held = {r: set(splits.stems(r)) for r in roles}
    found = []
    for where, rec in flatten(prov):
        ds = rec.get("dataset")
        if ds and splits.dataset and ds != splits.dataset:
            continue
        used = set(rec.get("stems") or ())
        for role, stems in held.items():
            bad = sorted(used & stems)
            if bad:
                found.append((where, role, bad))
    return found


def check_no_overlap(prov: Any, splits: Splits, roles: Iterable[str] = HELD_OUT) -> None:
    """Raise :class:`DataError` (one line naming the input and the images) when ``prov`` learned
    from any image that ``splits`` holds out."""
    found = overlaps(prov, splits, roles)
    if found:
        where, role, bad = found[0]
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        extra = f"; {len(found) - 1} more input(s) overlap too" if len(found) > 1 else ""
        raise DataError(
            f"leak: {where} was built from {role} image(s) {', '.join(bad[:3])}{more} of {splits.dataset}{extra} "
            "(use --allow-overlap only for ablations)"
        )


def select_dataset(ds: Any, splits: Splits | None, role: str | None) -> tuple[Any, dict[str, Any]]:
    """``(dataset restricted to the role's images, its provenance record)`` for a learning stage.

    ``ds`` is an opened :class:`rbcray.data.dataset.Dataset`. Without a split file the whole
    folder is used and the record says ``split: all``.
    """
    from rbcray.data.splits import select

    stems = select(ds.stems, splits, role, where=str(ds.root))
    sub = ds.subset(stems) if splits is not None else ds
    if len(sub) == 0:
        raise DataError(f"{ds.root}: split {role!r} holds no images of this folder")
    rec = provenance_record(ds.name, stems, root=str(ds.root.resolve()), splits=splits, role=role)
    return sub, rec


def load_selection(splits_path: str | None, role: str | None) -> tuple[Splits | None, str | None]:
    """The CLI's ``--splits FILE --split ROLE`` pair, checked: both or neither."""
    from rbcray.data.splits import ROLES, load_splits
    from rbcray.errors import ConfigError

    if splits_path is None:
        if role is not None:
            raise ConfigError(f"--split {role}: needs --splits FILE (a split file from 'rbcray split')")
        return None, None
    if role is None:
        raise ConfigError(f"--splits {splits_path}: say which role to use with --split ({', '.join(ROLES)})")
    sp = load_splits(splits_path)
    sp.stems(role)  # ConfigError for an unknown role
    return sp, role


#: key of the provenance record in a shape bank's Parquet key-value metadata (JSON)
PARQUET_KEY = b"rbcray_provenance"


def read_provenance(path: str | Path) -> Any:
    """The provenance stored in an rbcray artefact, whatever its kind:

    - a shape bank ``.parquet`` (key-value metadata ``rbcray_provenance``);
    - a JSON file with a top-level ``provenance`` (``stats.json``, a model's ``model.json``, a
      dataset's ``dataset.json``, a generation run's ``manifest.json``);
    - a folder: a ``rbcray train --out`` run or its ``model/`` folder (-> ``model.json``), a
      generation output (-> ``manifest.json``) or a dataset folder (-> ``dataset.json``).

    Returns a record or a nested dict of records (see :func:`flatten`); ``None`` when the
    artefact records none (made before provenance existed). Local paths and storage URIs.
    """
    import json

    from rbcray import storage

    p = str(path).rstrip("/")
    if p.lower().endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            meta = pq.read_schema(pa.BufferReader(storage.read_bytes(p))).metadata or {}
        except RbcrayError:
            raise
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise DataError(f"{p}: not a readable Parquet file ({type(e).__name__})") from None
        raw = meta.get(PARQUET_KEY)
        return json.loads(raw) if raw else None
    if not p.lower().endswith(".json"):
        for name in ("model.json", "model/model.json", "manifest.json", "dataset.json"):
            if storage.exists(storage.join(p, name)):
                p = storage.join(p, name)
                break
        else:
            raise DataError(f"{p}: no provenance here (not a .parquet shape bank, a .json file, a model, run or dataset folder)")
    try:
        doc = json.loads(storage.read_bytes(p))
    except (ValueError, UnicodeDecodeError):
        raise DataError(f"{p}: not valid JSON") from None
    return doc.get("provenance") if isinstance(doc, dict) else None
