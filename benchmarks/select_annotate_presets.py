"""Choose ``rbcray annotate``'s per-source presets on train and val images only.

For each public source, a grid of the segmentation parameters around the generic default
(:class:`~rbcray.data.annotate.AnnotateConfig` plus the source's fixed facts: its cell-size range)
is scored on the first ``--train`` (BCCD: ``--bccd-train``) labelled images of the source's train
split; the ``--top`` best and the base are re-scored on the first ``--val`` (``--bccd-val``) of its
val split, which decides
(:func:`rbcray.data.annotate_eval.select_preset`). Test images are never read. Splits: BCCD-TXL's
own folders; Chula-RBC-12 seeded by image (:func:`rbcray.data.annotate_eval.source_splits`).
Objective: Chula in-one minus twice background share; BCCD F1 of RBC box recall and precision at
IoU 0.5. Deterministic. Usage::

    python benchmarks/select_annotate_presets.py [--dataset chula-rbc-12|bccd-txl-pbc] [--train 40] [--val 20] [--bccd-train 16] [--bccd-val 10]

Prints every candidate's score and ends with ``<dataset>: chosen {...}`` per dataset; the chosen
values are what :data:`rbcray.data.annotate.PRESETS` holds.
"""

from __future__ import annotations

import argparse

from rbcray.config import to_dict
from rbcray.data.annotate import AnnotateConfig
from rbcray.data.annotate_eval import select_preset, split_images
from rbcray.data.sources import open_source

#: Per source: fixed facts (not searched) and the grid searched.
SEARCH = {
    "chula-rbc-12": {
        "kind": "points",
        # 640x480 at 1000x: cells ~35-70 px across, varying between smears: estimated per image.
        "fixed": {"cell_size": None, "cell_size_range": (28.0, 90.0)},
        "space": {
            "threshold_scale": [0.9, 1.0, 1.1],
            "h_maxima": [0.08, 0.12, 0.18],
        },
    },
    "bccd-txl-pbc": {
        "kind": "boxes",
        # 640x480 BCCD frames: RBCs ~100 px; pale centres almost at background level (low
        # hysteresis floor keeps them); clumps of overlapping cells (pallor markers on).
        "fixed": {"cell_size": None, "cell_size_range": (70.0, 140.0), "hysteresis": 0.3},
        "space": {
            "pallor": [0.05, 0.1],
            "split_area": [0.7, 0.85],
            "min_area_border": [0.1, 0.2],
        },
    },
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=sorted(SEARCH), action="append", help="source(s) to search (default: both)")
    ap.add_argument("--train", type=int, default=40, help="train-split images scored per candidate (default 40)")
    ap.add_argument("--val", type=int, default=20, help="val-split images deciding among the finalists (default 20)")
    ap.add_argument("--bccd-train", type=int, default=16, help="the same for BCCD-TXL (slower frames; default 16)")
    ap.add_argument("--bccd-val", type=int, default=10, help="the same for BCCD-TXL (default 10)")
    ap.add_argument("--top", type=int, default=3, help="finalists re-scored on val (default 3)")
    ap.add_argument("--data-dir", default=None, help="folder holding the datasets (default: registry lookup)")
    args = ap.parse_args(argv)
    if min(args.train, args.val, args.bccd_train, args.bccd_val, args.top) <= 0:
        ap.error("--train, --val, --bccd-train, --bccd-val and --top must be positive")
    chosen = {}
    for name in args.dataset or sorted(SEARCH):
        ntrain, nval = (args.train, args.val) if name == "chula-rbc-12" else (args.bccd_train, args.bccd_val)
        spec = SEARCH[name]
        src = open_source(name, args.data_dir)
        train = split_images(src, "train", ntrain)
        val = split_images(src, "val", nval)
        print(f"{name}: {len(train)} train images ({train[0].stem}..), {len(val)} val images; "
              f"grid {spec['space']}", flush=True)
        base = AnnotateConfig(**spec["fixed"])
        cfg, _ = select_preset(base, spec["space"], spec["kind"], train, val, top=args.top,
                               log=lambda m: print(m, flush=True))
        default = to_dict(AnnotateConfig())
        chosen[name] = {k: v for k, v in to_dict(cfg).items() if v != default[k]}
    for name, c in chosen.items():
        print(f"{name}: chosen {c}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
