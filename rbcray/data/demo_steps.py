"""Demo steps of the data stage: annotate a Chula subset, split it by image, then describe its
train split (paper Sec. 3, Table 1).

The split is made right after annotation (seeded, recorded in ``split/splits.json``): every later
step that learns from real data (statistics, shape bank, pix2pixHD) uses its train role only, and
evaluation holds out its val and test roles.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rbcray.demo import DemoContext
from rbcray.io import write_png

#: Chula images annotated by the demo (the first N in natural order).
DEMO_IMAGES = 40
#: the demo's split of those images: fractions and seed (40 images -> 22 train, 6 val, 12 test)
DEMO_SPLIT = {"val": 0.15, "test": 0.3, "seed": 0}


def annotated_dir(ctx: DemoContext):
    """Where the demo's annotated Chula subset lives (read by every later step)."""
    return ctx.out / "annotate" / "dataset"


def splits_json(ctx: DemoContext):
    """Where the demo's split file lives (train / val / test stems of the annotated subset)."""
    return ctx.out / "split" / "splits.json"


def train_split(ctx: DemoContext):
    """``(annotated dataset restricted to the train role, its provenance record)``."""
    from rbcray.data.dataset import Dataset
    from rbcray.data.provenance import select_dataset
    from rbcray.data.splits import load_splits

    return select_dataset(Dataset.open(annotated_dir(ctx)), load_splits(splits_json(ctx)), "train")


def stats_json(ctx: DemoContext):
    """Where the demo's statistics JSON lives (drives mask synthesis)."""
    return ctx.out / "stats" / "stats.json"


def preview(ds, stems: list[str], path) -> None:
    """A picture to look at: each image beside its colour-coded mask blended over it."""
    from rbcray.data.formats import encode_color_mask

    rows = []
    for s in stems:
        img = ds.load_image(s)
        col = encode_color_mask(ds.load_instances(s))
        over = np.where(col.any(-1, keepdims=True), (0.45 * img + 0.55 * col).astype(np.uint8), img)
        rows.append(np.concatenate([img, over], axis=1))
    write_png(path, np.concatenate(rows, axis=0))


def annotate_step(ctx: DemoContext) -> dict[str, Any]:
    from rbcray.data.annotate import annotate_source, config_for_source
    from rbcray.data.dataset import Dataset
    from rbcray.data.sources import open_source

    d = ctx.stage_dir("annotate")
    src = open_source("chula-rbc-12", ctx.data_dir)
    cfg = config_for_source(src.name)
    out = annotate_source(src, annotated_dir(ctx), cfg, limit=DEMO_IMAGES, workers=2)
    ds = Dataset.open(out)
    preview(ds, ds.stems[:3], d / "preview.png")
    return {
        "dataset": str(out),
        "images": len(ds),
        "cells": ds.meta["n_cells"],
        "preview": str(d / "preview.png"),
    }


def split_step(ctx: DemoContext) -> dict[str, Any]:
    from rbcray.data.dataset import Dataset
    from rbcray.data.splits import make_splits, save_splits

    ctx.stage_dir("split")
    ds = Dataset.open(annotated_dir(ctx))
    sp = make_splits(ds.stems, dataset=ds.name, val=DEMO_SPLIT["val"], test=DEMO_SPLIT["test"], seed=DEMO_SPLIT["seed"])
    save_splits(sp, splits_json(ctx))
    return {
        "splits": str(splits_json(ctx)),
        **{role: f"{len(sp.stems(role))} images" for role in ("train", "val", "test")},
        "seed": sp.seed,
    }


def stats_step(ctx: DemoContext) -> dict[str, Any]:
    from rbcray.data.stats import dataset_stats, to_markdown
    from rbcray.io import atomic_write_bytes, write_json

    d = ctx.stage_dir("stats")
    ds, prov = train_split(ctx)
    st = dataset_stats(ds, provenance=prov)
    write_json(stats_json(ctx), st)
    md = to_markdown(st)
    atomic_write_bytes(d / "stats.md", md.encode())
    ctx.log(md)
    syn = st["synthesis"]
    return {
        "json": str(stats_json(ctx)),
        "images": f"{st['n_images']} (train split)",
        "markdown": str(d / "stats.md"),
        "cells_per_image": f"{syn['cells_mean']:.1f} +- {syn['cells_std']:.1f}",
        "cell_size_px": f"{syn['cell_size']:.1f}",
    }
