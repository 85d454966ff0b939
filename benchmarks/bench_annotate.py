"""Benchmark of ``rbcray annotate``: quality of the derived instance masks and their speed.

Measures the masks the classical segmentation (:mod:`rbcray.data.segment`) derives, against the
partial labels of the public sources (the segmentation never reads them):

- Chula-RBC-12, every image with a non-empty ``Label/N.txt``: of the labelled points (one per
  labelled cell, border-cut cells included), the fraction inside a derived cell, the fraction
  inside a derived cell holding no other labelled point (one-to-one: touching cells were split),
  the fraction on background, and the fraction with another cell within 0.2 cell diameters
  (points mark cell centres, so this flags over-splitting, which the others cannot see);
- BCCD-TXL, all 220 images: recall of the labelled RBC boxes (class 1) by the boxes of derived
  RBC cells, IoU >= 0.5, one-to-one greedy matching by IoU (COCO style); also the precision (the
  labels are close to complete, so unmatched derived cells are mostly over-/under-splits).

Speed is single-process wall time of the segmentation alone (decoding excluded). Usage::

    python benchmarks/bench_annotate.py [--limit N] [--data-dir D]

The last line is ``chula_points_in_one=<f> chula_points_background=<f> bccd_box_recall=<f>``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rbcray.data.annotate import annotate_image, config_for_source
from rbcray.data.quality import box_recall, median_cell_diameter, point_quality
from rbcray.data.sources import open_source
from rbcray.io import read_image


def bench_chula(limit: int | None, data_dir: str | None) -> dict[str, float]:
    src = open_source("chula-rbc-12", data_dir)
    cfg = config_for_source("chula-rbc-12")
    images = [s for s in src.images if s.points is not None and len(s.points)][:limit]
    n = inside = alone = bg = cut = 0.0
    cells, secs, worst = 0, 0.0, []
    for s in images:
        rgb = read_image(s.path)
        t0 = time.perf_counter()
        inst, _ = annotate_image(rgb, cfg)
        secs += time.perf_counter() - t0
        q = point_quality(inst, s.points, cut_radius=0.2 * median_cell_diameter(inst))
        k = q["n_points"]
        n += k
        inside += q["in_cell"] * k
        alone += q["one_to_one"] * k
        bg += q["background"] * k
        cut += q["near_cut"] * k
        cells += q["n_cells"]
        worst.append((q["one_to_one"], s.stem))
    worst.sort()
    print(f"chula-rbc-12: {len(images)} images, {int(n)} labelled points, {cells} derived cells "
          f"({cells / max(len(images), 1):.1f}/image)")
    print(f"  points inside a cell        {inside / n:.4f}")
    print(f"  points one-to-one           {alone / n:.4f}")
    print(f"  points on background        {bg / n:.4f}")
    print(f"  points sharing a cell       {(inside - alone) / n:.4f}  (under-split)")
    print(f"  points near a cut           {cut / n:.4f}  (another cell within 0.2 diameters: over-split)")
    print(f"  worst images (one-to-one)   {', '.join(f'{st}:{v:.2f}' for v, st in worst[:5])}")
    print(f"  speed {len(images) / secs:.1f} images/s ({1000 * secs / len(images):.0f} ms/image, 640x480, 1 process)")
    return {"in_one": alone / n, "background": bg / n}


def bench_bccd(limit: int | None, data_dir: str | None) -> float:
    src = open_source("bccd-txl-pbc", data_dir)
    cfg = config_for_source("bccd-txl-pbc")
    images = list(src.images)[:limit]
    matched = total = n_rbc = n_wbc = n_plt = gt_wbc = 0
    secs, worst = 0.0, []
    for s in images:
        rgb = read_image(s.path)
        t0 = time.perf_counter()
        inst, cats = annotate_image(rgb, cfg)
        secs += time.perf_counter() - t0
        h, w = inst.shape
        boxes = s.boxes_px(w, h)
        rbc = [i for i, c in cats.items() if c == 1]
        m, t = box_recall(inst, boxes[boxes[:, 0] == 1][:, 1:], 0.5, np.array(rbc, dtype=np.int64))
        matched += m
        total += t
        n_rbc += len(rbc)
        n_wbc += sum(c == 2 for c in cats.values())
        n_plt += sum(c == 3 for c in cats.values())
        gt_wbc += int((boxes[:, 0] == 0).sum())
        worst.append((m / max(t, 1), s.stem))
    worst.sort()
    print(f"bccd-txl-pbc: {len(images)} images, {total} labelled RBC boxes, {n_rbc} derived RBCs, "
          f"{n_wbc} WBCs (labelled {gt_wbc}), {n_plt} platelets")
    print(f"  RBC box recall @IoU0.5      {matched / total:.4f}  (greedy one-to-one)")
    print(f"  RBC box precision @IoU0.5   {matched / max(n_rbc, 1):.4f}")
    print(f"  worst images (recall)       {', '.join(f'{st[:8]}:{v:.2f}' for v, st in worst[:5])}")
    print(f"  speed {len(images) / secs:.1f} images/s ({1000 * secs / len(images):.0f} ms/image, 640x480, 1 process)")
    return matched / total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="first N images of each dataset (default: all)")
    ap.add_argument("--data-dir", default=None, help="folder holding the datasets (default: registry lookup)")
    args = ap.parse_args(argv)
    if args.limit is not None and args.limit <= 0:
        ap.error(f"--limit {args.limit}: must be a positive number of images")
    chula = bench_chula(args.limit, args.data_dir)
    recall = bench_bccd(args.limit, args.data_dir)
    print(f"chula_points_in_one={chula['in_one']:.4f} chula_points_background={chula['background']:.4f} "
          f"bccd_box_recall={recall:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
