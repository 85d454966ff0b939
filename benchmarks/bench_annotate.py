"""Benchmark of ``rbcray annotate``: quality of the derived instance masks per split, and speed.

Measures the masks the classical segmentation (:mod:`rbcray.data.segment`) derives, against the
partial labels of the public sources (the segmentation never reads them), separately on each
split of the source images (:func:`rbcray.data.annotate_eval.source_splits`: BCCD-TXL's own
train/val/test folders; Chula-RBC-12 seeded by image, val 0.15, test 0.15, seed 0 — the
``rbcray split`` defaults). The presets were chosen on train and val images only
(``benchmarks/select_annotate_presets.py``), so the test figures are held out.

- Chula-RBC-12, images with a non-empty ``Label/N.txt``: of the labelled points (one per
  labelled cell), the fraction inside a derived cell holding no other labelled point (in one),
  the fraction on background, and the fraction with another cell within 0.2 cell diameters
  (points mark cell centres, so this flags over-splitting);
- BCCD-TXL: recall of the labelled RBC boxes (class 1) by the boxes of derived RBC cells at
  IoU >= 0.5, one-to-one greedy matching by IoU (COCO style), and the precision of the derived
  RBC boxes.

Each figure has a 95% bootstrap interval over images. Speed is single-process wall time of the
segmentation alone (decoding excluded). Usage::

    python benchmarks/bench_annotate.py [--limit N] [--data-dir D]

The last line is ``chula_in_one_train=<f> chula_background_train=<f> bccd_recall_train=<f>
bccd_precision_train=<f> chula_in_one_test=<f> chula_background_test=<f> bccd_recall_test=<f>
bccd_precision_test=<f>``.
"""

from __future__ import annotations

import argparse

from rbcray.data.annotate import config_for_source
from rbcray.data.annotate_eval import ratio_interval, score_boxes, score_points, split_images
from rbcray.data.sources import open_source

ROLES = ("train", "val", "test")


def _ci(per: list, num: int, den: int) -> str:
    lo, hi = ratio_interval(per, num, den)
    return f"[{lo:.3f}, {hi:.3f}]"


def bench_chula(limit: int | None, data_dir: str | None) -> dict[str, dict[str, float]]:
    src = open_source("chula-rbc-12", data_dir)
    cfg = config_for_source("chula-rbc-12")
    out = {}
    for role in ROLES:
        s = score_points(split_images(src, role, limit), cfg)
        per = s["per_image"]
        print(f"chula-rbc-12 {role}: {s['n_images']} labelled images, {s['n_points']} points, {s['n_cells']} derived cells")
        print(f"  points in exactly one cell  {s['in_one']:.4f} {_ci(per, 1, 0)}")
        print(f"  points on background        {s['background']:.4f} {_ci(per, 2, 0)}")
        print(f"  points in some cell / near a cut (over-split)  {s['in_cell']:.4f} / {s['near_cut']:.4f}")
        print(f"  speed {1000 * s['seconds'] / max(s['n_images'], 1):.0f} ms/image (640x480, 1 process)")
        out[role] = s
    return out


def bench_bccd(limit: int | None, data_dir: str | None) -> dict[str, dict[str, float]]:
    src = open_source("bccd-txl-pbc", data_dir)
    cfg = config_for_source("bccd-txl-pbc")
    out = {}
    for role in ROLES:
        s = score_boxes(split_images(src, role, limit), cfg)
        per = s["per_image"]
        print(f"bccd-txl-pbc {role}: {s['n_images']} images, {s['n_boxes']} labelled RBC boxes, {s['n_derived']} derived RBCs")
        print(f"  RBC box recall @IoU0.5      {s['recall']:.4f} {_ci(per, 0, 1)}")
        print(f"  RBC box precision @IoU0.5   {s['precision']:.4f} {_ci(per, 0, 2)}")
        print(f"  speed {1000 * s['seconds'] / max(s['n_images'], 1):.0f} ms/image (640x480, 1 process)")
        out[role] = s
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="first N labelled images of each split (default: all)")
    ap.add_argument("--data-dir", default=None, help="folder holding the datasets (default: registry lookup)")
    args = ap.parse_args(argv)
    if args.limit is not None and args.limit <= 0:
        ap.error(f"--limit {args.limit}: must be a positive number of images")
    chula = bench_chula(args.limit, args.data_dir)
    bccd = bench_bccd(args.limit, args.data_dir)
    parts = []
    for role in ("train", "test"):
        parts += [f"chula_in_one_{role}={chula[role]['in_one']:.4f}", f"chula_background_{role}={chula[role]['background']:.4f}",
                  f"bccd_recall_{role}={bccd[role]['recall']:.4f}", f"bccd_precision_{role}={bccd[role]['precision']:.4f}"]
    print(" ".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
