"""Mask realism on held-out real images (issue 11): arrangement and shape KS, beside real-vs-real.

    rbcray annotate chula-rbc-12 --out chula && rbcray split chula --out chula-splits.json
    rbcray annotate bccd-txl-pbc --out bccd && rbcray split bccd --out bccd-splits.json
    python benchmarks/bench_mask_realism.py --set chula chula-splits.json --set bccd bccd-splits.json

Per real set (derived masks: not ground truth), everything that learns uses the ``train`` role:
the clean shape bank, the count and cell-size statistics, and the calibration (Ray Tune search,
:mod:`rbcray.distributed.calibrate`, scored on ``val`` for its choice). Realism is measured on the
``test`` role only, which nothing above saw:

* arrangement: two-sample KS distance of nearest-neighbour centre distance (pooled), Clark-Evans R,
  touching fraction and cells per image (per image) between ``--eval-masks`` synthetic masks and
  the test images, for the paper's uncalibrated setting (Eq. 3, kernel constant 0 inside its disc,
  n_init 20), the same with the kernel 1 - G inside ("reverted"), uniform placement, and the
  calibrated setting; each with a 95 % bootstrap interval (test images and masks resampled), and
  beside the real-vs-real floor: the KS between two random halves of the test images (median of
  ``--halves`` splits).
* shape: KS of area, perimeter² / area, eccentricity and solidity of the whole, isolated cells of
  the calibrated synthetic masks against those of the test images; floor: train vs test real cells.

Ends with ``ks_nn=… ks_touch=… ks_ce=… ks_count=… ks_nn_real_vs_real=…`` (first set, calibrated)
followed by the same for the other sets, prefixed by their names.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

from rbcray.data.dataset import Dataset  # noqa: E402
from rbcray.data.splits import load_splits  # noqa: E402
from rbcray.data.stats import dataset_stats  # noqa: E402
from rbcray.synth.calibrate import (  # noqa: E402
    STATS,
    arrangement,
    calibration_bank,
    config_for,
    ks_distances,
    real_arrangement,
)
from rbcray.synth.config import SynthConfig, resolve_config  # noqa: E402
from rbcray.synth.engine import synthesize  # noqa: E402
from rbcray.synth.shape_stats import FEATURES, cell_crops, feature_table, isolated_whole_cells, shape_ks  # noqa: E402
from rbcray.synth.shapes import ShapeBank, extract_shapes  # noqa: E402

SHORT = {"nn_distance": "nn", "touching_fraction": "touch", "clark_evans": "ce", "cells_per_image": "count"}


def subset(ds: Dataset, stems) -> Dataset:
    keep = set(stems)
    return Dataset(ds.root, {**ds.meta, "samples": [r for r in ds.samples if r["stem"] in keep]})


def bank_of(ds: Dataset) -> ShapeBank:
    from rbcray.io import decode_png

    rep: dict[str, int] = {}
    cols = extract_shapes(ds, 20, report=rep)
    print(f"  clean bank of {len(ds)} train images: {rep}", flush=True)
    crops = [decode_png(b) for b in cols["mask_png"]]
    return ShapeBank(crops, np.array(cols["category"]), np.array(cols["exemplar_id"]), {"filter": rep})


def per_image(a: dict[str, np.ndarray], counts: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Split pooled NN distances back per image (for resampling images)."""
    out, pos = [], 0
    for i, n in enumerate(counts.astype(int)):
        k = n if n >= 2 else 0
        out.append({"nn_distance": a["nn_distance"][pos : pos + k], "clark_evans": a["clark_evans"][i : i + 1],
                    "touching_fraction": a["touching_fraction"][i : i + 1], "cells_per_image": a["cells_per_image"][i : i + 1]})
        pos += k
    return out


def merge(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in STATS}


def bootstrap(real_imgs, syn_imgs, rng, n=200) -> dict[str, tuple[float, float]]:
    draws = {k: [] for k in STATS}
    for _ in range(n):
        r = merge([real_imgs[i] for i in rng.integers(0, len(real_imgs), len(real_imgs))])
        s = merge([syn_imgs[i] for i in rng.integers(0, len(syn_imgs), len(syn_imgs))])
        for k, v in ks_distances(r, s).items():
            draws[k].append(v)
    return {k: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) for k, v in draws.items()}


def floor(real_imgs, rng, halves: int) -> dict[str, float]:
    vals = {k: [] for k in STATS}
    for _ in range(halves):
        p = rng.permutation(len(real_imgs))
        a, b = p[: len(p) // 2], p[len(p) // 2 :]
        for k, v in ks_distances(merge([real_imgs[i] for i in a]), merge([real_imgs[i] for i in b])).items():
            vals[k].append(v)
    return {k: float(np.median(v)) for k, v in vals.items()}


def synth_maps(bank: ShapeBank, cfg: SynthConfig, n: int, seed: int) -> list[np.ndarray]:
    return [synthesize(bank, cfg, seed, i).instances for i in range(n)]


def run_set(name: str, root: str, splits_path: str, args: argparse.Namespace) -> dict[str, float]:
    from rbcray.distributed.calibrate import tune_search

    print(f"== {name}: {root}", flush=True)
    ds = Dataset.open(root)
    sp = load_splits(splits_path)
    train, val, test = (list(sp.stems(r)) for r in ("train", "val", "test"))
    tr = subset(ds, train)
    bank = bank_of(tr)
    base = resolve_config(dataset_stats(tr, with_color=False), where=root)
    print(f"  train: {len(train)} images, {base.cells_mean:.1f} ± {base.cells_std:.1f} cells of {base.cell_size:.1f} px; "
          f"val {len(val)}, test {len(test)}", flush=True)
    real_test = real_arrangement(ds, test)
    real_imgs = per_image(real_test, real_test["cells_per_image"])
    rng = np.random.default_rng(0)
    fl = floor(real_imgs, rng, args.halves)
    t0 = time.perf_counter()
    params, best, n_done = tune_search(calibration_bank(bank, seed=0), base.to_dict(), real_arrangement(ds, train),
                                       trials=args.trials, n_masks=args.masks, seed=0,
                                       work_dir=Path(args.work) / f"{name}-tune", concurrency=2, verbose=0)
    cal = config_for(base, params)
    print(f"  calibrated on train in {time.perf_counter() - t0:.0f} s ({n_done} trials): "
          + ", ".join(f"{k}={v:.3g}" for k, v in params.items()), flush=True)
    variants = {
        "paper (constant 0)": SynthConfig.from_dict({**base.to_dict(), "kernel_inside": "constant", "kernel_inner": 0.0}),
        "paper, 1 - G inside": SynthConfig.from_dict({**base.to_dict(), "kernel_inside": "reverted"}),
        "uniform": SynthConfig.from_dict({**base.to_dict(), "placement": "uniform"}),
        "calibrated": cal,
    }
    out: dict[str, dict[str, float]] = {}
    print("  held-out test images: KS D [95 % bootstrap interval]; real-vs-real floor (test halves): "
          + ", ".join(f"{SHORT[k]} {fl[k]:.3f}" for k in STATS), flush=True)
    print(f"  | variant | {' | '.join(SHORT[k] for k in STATS)} | mean |")
    maps_cal = None
    for vname, cfg in variants.items():
        maps = synth_maps(bank, cfg, args.eval_masks, seed=7)
        if vname == "calibrated":
            maps_cal = maps
        a = arrangement(maps)
        ks = ks_distances(real_test, a)
        ci = bootstrap(real_imgs, per_image(a, a["cells_per_image"]), rng, args.boot)
        out[vname] = ks
        print(f"  | {vname} | " + " | ".join(f"{ks[k]:.3f} [{ci[k][0]:.2f}, {ci[k][1]:.2f}]" for k in STATS)
              + f" | {np.mean([ks[k] for k in STATS]):.3f} |", flush=True)
    real_cells = feature_table(isolated_whole_cells(ds, test))
    train_cells = feature_table(isolated_whole_cells(ds, train[: max(len(test), 100)]))
    syn_cells = feature_table([c for m in maps_cal for _, c, _, _ in cell_crops(m)])
    sks, sfl = shape_ks(syn_cells, real_cells), shape_ks(train_cells, real_cells)
    print(f"  shape KS, whole isolated cells (calibrated masks {len(syn_cells['area'])} vs test {len(real_cells['area'])}): "
          + ", ".join(f"{k} {sks[k]:.3f} (floor train-vs-test {sfl[k]:.3f})" for k in FEATURES), flush=True)
    res = {f"ks_{SHORT[k]}": out["calibrated"][k] for k in STATS}
    res["ks_nn_real_vs_real"] = fl["nn_distance"]
    res.update({f"ks_{SHORT[k]}_paper": out["paper (constant 0)"][k] for k in STATS})
    res.update({f"shape_ks_{k}": sks[k] for k in FEATURES})
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", nargs=2, action="append", required=True, metavar=("DATASET_DIR", "SPLITS"),
                    help="annotated real set and its split file (repeat for more sets)")
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--masks", type=int, default=16, help="masks per calibration trial")
    ap.add_argument("--eval-masks", type=int, default=100)
    ap.add_argument("--halves", type=int, default=20)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--work", default="bench-mask-realism", help="folder for Tune's runs (resumed when present)")
    args = ap.parse_args()
    parts = []
    for i, (root, splits) in enumerate(args.set):
        name = Dataset.open(root).name.split("-")[0]
        r = run_set(name, root, splits, args)
        keys = ("ks_nn", "ks_touch", "ks_ce", "ks_count", "ks_nn_real_vs_real")
        prefix = "" if i == 0 else f"{name}_"
        parts.append(" ".join(f"{prefix}{k}={r[k]:.3f}" for k in keys))
    print(" ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
