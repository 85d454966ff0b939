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
from typing import Any

from rbcray.data.splits import HELD_OUT, Splits
from rbcray.errors import DataError


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
