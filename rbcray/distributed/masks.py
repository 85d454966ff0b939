"""Ray adapter of mask synthesis (paper Sec. 4.1): a CPU actor for ``Dataset.map_batches``.

:class:`MaskActor` loads the shape bank once per actor and turns a batch of sample ids into
masks. It is only a wrapper: sample ``i`` is ``rbcray.synth.engine.synthesize(bank, cfg, seed, i)``,
so outputs do not depend on actor count, batch size or which actor ran a sample::

    ds = ray.data.range(n).rename_columns({"id": "sample_id"})
    ds = ds.map_batches(MaskActor, fn_constructor_kwargs=dict(shapes=..., config=cfg.to_dict(), seed=s),
                        compute=ray.data.ActorPoolStrategy(size=k), num_cpus=1, batch_size=8)

Output columns (one row per input ``sample_id``):

- always: ``sample_id``, ``seed`` (int64), ``width``, ``height``, ``n_cells``, ``n_requested``,
  ``n_unplaced`` (int32), ``boxes`` (list of struct ``x0, y0, x1, y1`` (x1/y1 exclusive, visible
  part), ``instance_id``, ``class`` (COCO category id)), ``colors`` (list of int: palette index of
  instance k + 1 at position k);
- ``outputs`` picks the rest: ``"instances"`` -> ``instances`` uint16 (H, W); ``"color_mask"`` ->
  ``color_mask`` uint8 (H, W, 3) RGB; ``"png"`` -> ``instance_png`` (uint16 PNG bytes) and
  ``color_png`` (RGB PNG bytes), encoded here, in the stage that made the pixels; ``"cells"`` ->
  ``cells``, the full per-cell table (list of struct, :data:`~rbcray.synth.engine.CELL_COLUMNS`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

OUTPUTS = ("instances", "color_mask", "png", "cells")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def single_thread() -> None:
    """One thread for OpenCV and BLAS in this process, so k actors really use k cores."""
    for v in THREAD_VARS:
        os.environ[v] = "1"
    import cv2

    cv2.setNumThreads(1)


class MaskActor:
    """Synthesizes the masks of a batch of sample ids (see the module docstring)."""

    def __init__(
        self,
        shapes: str,
        config: dict[str, Any],
        seed: int,
        outputs: Sequence[str] = ("instances", "color_mask", "png"),
        png_compression: int = 1,
    ) -> None:
        single_thread()
        from rbcray.errors import ConfigError
        from rbcray.synth.config import SynthConfig
        from rbcray.synth.engine import _bank_pool
        from rbcray.synth.others import check_bank
        from rbcray.synth.shapes import ShapeBank

        bad = [o for o in outputs if o not in OUTPUTS]
        if bad:
            raise ConfigError(f"MaskActor outputs {bad} unknown; choose from {list(OUTPUTS)}")
        self.cfg = SynthConfig.from_dict(dict(config), where="MaskActor config")
        self.bank = ShapeBank.load(shapes)
        _bank_pool(self.bank, self.cfg.categories)  # fail now, not on the first batch
        check_bank(self.bank, self.cfg)  # ... nor on a white cell or platelet drawn later
        self.seed = int(seed)
        self.outputs = tuple(outputs)
        self.png_compression = int(png_compression)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from rbcray.io import encode_png
        from rbcray.synth.engine import CELL_COLUMNS, synthesize

        ids = np.asarray(batch["sample_id"], dtype=np.int64)
        cols: dict[str, list] = {k: [] for k in ("sample_id", "seed", "width", "height", "n_cells", "n_requested", "n_unplaced", "boxes", "colors")}
        extra: dict[str, list] = {k: [] for k in ("instances", "color_mask", "instance_png", "color_png", "cells")}
        for i in ids.tolist():
            s = synthesize(self.bank, self.cfg, self.seed, i)
            cols["sample_id"].append(i)
            cols["seed"].append(self.seed)
            cols["width"].append(self.cfg.width)
            cols["height"].append(self.cfg.height)
            cols["n_cells"].append(s.n_cells)
            cols["n_requested"].append(s.n_requested)
            cols["n_unplaced"].append(s.n_unplaced)
            cols["boxes"].append(s.box_records())
            cols["colors"].append(s.colors[1:].tolist())
            rgb = s.color_mask() if ("color_mask" in self.outputs or "png" in self.outputs) else None
            if "instances" in self.outputs:
                extra["instances"].append(s.instances)
            if "color_mask" in self.outputs:
                extra["color_mask"].append(rgb)
            if "png" in self.outputs:
                extra["instance_png"].append(encode_png(s.instances, self.png_compression))
                extra["color_png"].append(encode_png(rgb, self.png_compression))
            if "cells" in self.outputs:
                keys = list(CELL_COLUMNS)
                vals = [s.cells[k].tolist() for k in keys]
                extra["cells"].append([dict(zip(keys, row)) for row in zip(*vals)])
        out: dict[str, Any] = {
            "sample_id": np.asarray(cols["sample_id"], dtype=np.int64),
            "seed": np.asarray(cols["seed"], dtype=np.int64),
        }
        for k in ("width", "height", "n_cells", "n_requested", "n_unplaced"):
            out[k] = np.asarray(cols[k], dtype=np.int32)
        out["boxes"] = _objects(cols["boxes"])
        out["colors"] = _objects(cols["colors"])
        for k, v in extra.items():
            if not v:
                continue
            if k in ("instances", "color_mask"):
                out[k] = np.stack(v)
            else:
                out[k] = _objects(v)
        return out


def _objects(items: list) -> np.ndarray:
    """A 1-D object array holding each item as is (lists / bytes / arrays of varying length)."""
    a = np.empty(len(items), dtype=object)
    for k, v in enumerate(items):
        a[k] = v
    return a


def mask_stage(
    ds,
    shapes: str,
    config: dict[str, Any],
    seed: int,
    *,
    actors: int = 1,
    num_cpus: float = 1.0,
    batch_size: int = 8,
    outputs: Sequence[str] = ("instances", "color_mask", "png"),
    max_tasks_in_flight_per_actor: int = 2,
):
    """``ds`` (a Ray Dataset with a ``sample_id`` column) mapped through a pool of :class:`MaskActor`.

    Two tasks in flight per actor let the next batch reach an actor while it works on the current
    one, so actors do not wait for the scheduler between batches.
    """
    import ray

    return ds.map_batches(
        MaskActor,
        fn_constructor_kwargs={"shapes": shapes, "config": dict(config), "seed": int(seed), "outputs": tuple(outputs)},
        compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=max_tasks_in_flight_per_actor),
        num_cpus=num_cpus,
        batch_size=batch_size,
        batch_format="numpy",
    )


def mask_dataset(
    num_samples: int,
    shapes: str,
    config: dict[str, Any],
    seed: int,
    *,
    actors: int = 1,
    num_cpus: float = 1.0,
    batch_size: int = 8,
    start: int = 0,
    outputs: Sequence[str] = ("instances", "color_mask", "png"),
):
    """A Ray Dataset of masks for sample ids ``start .. start + num_samples - 1`` (lazy).

    The ids come from ``ray.data.range`` (read tasks need a CPU each: keep ``num_cpus * actors``
    below the cluster's CPUs, or pass your own id dataset to :func:`mask_stage`).
    """
    import ray

    # one input block per batch, so that every actor of the pool has work from the start
    ds = ray.data.range(num_samples, override_num_blocks=max(1, -(-num_samples // batch_size)))
    if start:
        ds = ds.map_batches(lambda b: {"id": b["id"] + start}, batch_format="numpy")
    ds = ds.rename_columns({"id": "sample_id"})
    return mask_stage(ds, shapes, config, seed, actors=actors, num_cpus=num_cpus, batch_size=batch_size, outputs=outputs)
