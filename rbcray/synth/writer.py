"""Synthetic masks to a dataset folder (``rbcray masks``): the foundation layout, without images.

``DIR/instances/<stem>.png`` (uint16), ``DIR/masks/<stem>.png`` (colour-coded, the synthesis'
own colouring), ``DIR/coco.json``, ``DIR/cells.parquet`` (the per-cell table of every mask: the
columns of :data:`rbcray.synth.engine.CELL_COLUMNS` plus ``stem`` and ``sample_id``) and, last,
``DIR/dataset.json`` whose ``config`` holds the :class:`SynthConfig`, the seed and the shape
bank's path and SHA-256. Sample ``i`` is named ``%06d`` and is ``synthesize(bank, cfg, seed, i)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rbcray.data.dataset import DatasetWriter
from rbcray.synth.config import SynthConfig
from rbcray.synth.engine import CELL_COLUMNS, MaskSample, synthesize
from rbcray.synth.shapes import ShapeBank


def cells_table(samples: list[tuple[str, MaskSample]]):
    """One pyarrow Table with the per-cell rows of several masks (``stem``, ``sample_id`` first)."""
    import pyarrow as pa

    cols: dict[str, Any] = {"stem": [], "sample_id": []}
    for c in CELL_COLUMNS:
        cols[c] = []
    for stem, s in samples:
        n = s.n_cells
        cols["stem"].append(np.array([stem] * n, dtype=object))
        cols["sample_id"].append(np.full(n, s.index, dtype=np.int64))
        for c in CELL_COLUMNS:
            cols[c].append(s.cells[c])
    return pa.table({k: pa.array(np.concatenate(v)) if v else pa.array([]) for k, v in cols.items()})


def write_masks(
    out: str | Path,
    bank: ShapeBank,
    cfg: SynthConfig,
    seed: int,
    num: int,
    *,
    start: int = 0,
    overwrite: bool = False,
    provenance: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    stats_provenance: dict[str, Any] | None = None,
    params_provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Synthesize samples ``start .. start + num - 1`` into a dataset folder; returns a summary.

    ``provenance`` adds entries to the saved config (e.g. the statistics file's path);
    ``dataset.json``'s ``provenance`` holds the image records of the shape bank and of the
    statistics (``stats_provenance``, the ``provenance`` of the stats JSON) and, for calibrated
    placement, of the images calibration was fitted on (``params_provenance``).
    """
    import pyarrow.parquet as pq

    config = {"synth": cfg.to_dict(), "seed": int(seed), "start": int(start), "num": int(num)}
    config.update(provenance or {})
    made: list[tuple[str, MaskSample]] = []
    with DatasetWriter(out, name=f"synthetic-masks-{cfg.placement}", kind="synthetic-masks", config=config,
                       source={"shapes": bank.path, "shapes_sha256": bank.sha256}, overwrite=overwrite,
                       provenance={"shapes": bank.meta.get("provenance"), "stats": stats_provenance,
                                   **({"params": params_provenance} if params_provenance else {})}) as w:
        for k in range(num):
            i = start + k
            s = synthesize(bank, cfg, seed, i)
            stem = f"{i:06d}"
            w.add(stem, s.instances, categories=s.categories, colors=s.colors,
                  extra={"sample_id": i, "seed": int(seed), "n_requested": s.n_requested, "n_unplaced": s.n_unplaced})
            made.append((stem, s))
            if progress:
                progress(k + 1, num)
        assert w.root is not None
        pq.write_table(cells_table(made), w.root / "cells.parquet")
    counts = np.array([s.n_cells for _, s in made], dtype=np.float64)
    return {
        "out": str(out),
        "n_masks": num,
        "cells_mean": float(counts.mean()) if num else 0.0,
        "cells_std": float(counts.std()) if num else 0.0,
        "n_unplaced": int(sum(s.n_unplaced for _, s in made)),
        "n_requested": int(sum(s.n_requested for _, s in made)),
    }
