"""Metrics of Bailo et al. Table 2 and their paired-bootstrap confidence intervals.

- **Dice** (the paper's Eq. 8): ``2 |P ∩ G| / (|P| + |G|)`` between the predicted and true
  foreground of one test image (1 when both are empty); a model's score is the mean over images.
- **AP at IoU 0.5** of cell boxes, from pycocotools' ``COCOeval`` (one class, all areas, up to
  ``max_dets`` detections per image). ``COCOeval.evaluate`` matches detections to cells once per
  image; the per-image match records are kept, so ``COCOeval.accumulate`` can recompute AP on
  any multiset of test images — which is what the bootstrap needs.
- **Paired bootstrap**: one table of resampled test-image indices (and seed indices) per test
  set, shared by every regime evaluated on it, so regime differences are paired comparisons.
"""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

IOU = 0.5


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice coefficient of two binary masks (Eq. 8); 1.0 when both are empty."""
    p, g = pred.astype(bool), gt.astype(bool)
    denom = int(p.sum()) + int(g.sum())
    if denom == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, g).sum()) / denom


def _params(max_dets: int) -> Any:
    ev = COCOeval(iouType="bbox")
    p = ev.params
    p.iouThrs = np.array([IOU])
    p.areaRng = [[0, 1e10]]
    p.areaRngLbl = ["all"]
    p.maxDets = [max_dets]
    p.catIds = [1]
    return p


def coco_match_records(
    gt_boxes: list[np.ndarray], det_boxes: list[np.ndarray], det_scores: list[np.ndarray], max_dets: int = 300
) -> list[dict[str, Any]]:
    """COCOeval's per-image match records at IoU 0.5 (JSON-ready), one per image.

    Boxes are (N, 4) x0, y0, x1, y1 in pixels; every box is one cell class.
    """
    images, anns, dets = [], [], []
    for i, (g, d, s) in enumerate(zip(gt_boxes, det_boxes, det_scores)):
        images.append({"id": i + 1})
        for b in np.asarray(g, float).reshape(-1, 4):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "bbox": [b[0], b[1], w, h],
                         "area": float(w * h), "iscrowd": 0})
        for b, sc in zip(np.asarray(d, float).reshape(-1, 4), np.asarray(s, float).reshape(-1)):
            dets.append({"image_id": i + 1, "category_id": 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                         "score": float(sc)})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cell"}]}
        gt.createIndex()
        dt = gt.loadRes(dets) if dets else COCO()
        if not dets:
            dt.dataset = {"images": images, "annotations": [], "categories": gt.dataset["categories"]}
            dt.createIndex()
        ev = COCOeval(gt, dt, iouType="bbox")
        p = _params(max_dets)
        p.imgIds = [im["id"] for im in images]
        ev.params = p
        ev.evaluate()
    out = []
    for e in ev.evalImgs:
        if e is None:  # neither cells nor detections in this image
            out.append({"dtScores": [], "dtMatched": [], "dtIgnore": [], "gtIgnore": []})
            continue
        out.append({
            "dtScores": [float(x) for x in e["dtScores"]],
            "dtMatched": [bool(x) for x in np.asarray(e["dtMatches"])[0] > 0],
            "dtIgnore": [bool(x) for x in np.asarray(e["dtIgnore"])[0]],
            "gtIgnore": [bool(x) for x in np.asarray(e["gtIgnore"])],
        })
    return out


def ap_from_records(records: list[dict[str, Any]], indices: np.ndarray | list[int] | None = None, max_dets: int = 300) -> float:
    """AP at IoU 0.5 over the images ``indices`` (repeats allowed) via ``COCOeval.accumulate``.

    0.0 when the selected images hold no cells (COCO's -1 "undefined" is reported as 0 so a
    bootstrap replicate without cells counts as a miss, not as a gap).
    """
    idx = range(len(records)) if indices is None else [int(i) for i in indices]
    ev = COCOeval(iouType="bbox")
    p = _params(max_dets)
    p.imgIds = list(range(len(idx)))
    ev.params = p
    ev._paramsEval = copy.deepcopy(p)
    evimgs = []
    for i in idx:
        r = records[i]
        if not r["dtScores"] and not r["gtIgnore"]:
            evimgs.append(None)
            continue
        evimgs.append({
            "dtScores": r["dtScores"],
            "dtMatches": np.asarray(r["dtMatched"], dtype=float).reshape(1, -1),
            "dtIgnore": np.asarray(r["dtIgnore"], dtype=bool).reshape(1, -1),
            "gtIgnore": np.asarray(r["gtIgnore"], dtype=bool),
        })
    ev.evalImgs = evimgs
    with contextlib.redirect_stdout(io.StringIO()):
        ev.accumulate()
    prec = ev.eval["precision"][0, :, 0, 0, 0]
    valid = prec[prec > -1]
    return float(valid.mean()) if valid.size else 0.0


def coco_ap50(gt_boxes: list[np.ndarray], det_boxes: list[np.ndarray], det_scores: list[np.ndarray], max_dets: int = 300) -> float:
    """AP at IoU 0.5 of detections over a set of images (pycocotools)."""
    return ap_from_records(coco_match_records(gt_boxes, det_boxes, det_scores, max_dets), max_dets=max_dets)


# ----------------------------------------------------------------------------- bootstrap
def bootstrap_indices(n_items: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_items) indices resampled with replacement."""
    return rng.integers(0, n_items, size=(n_boot, n_items))


def metric_value(kind: str, records: list[dict[str, Any]], indices: np.ndarray | None = None, max_dets: int = 300) -> float:
    """Dice (mean of per-image values) or AP50 (COCO accumulate) of one trial's test records."""
    if kind == "dice":
        vals = np.array([r["dice"] for r in records], dtype=float)
        return float(vals.mean() if indices is None else vals[np.asarray(indices)].mean())
    if kind == "ap50":
        return ap_from_records(records, indices, max_dets)
    raise ValueError(f"unknown metric kind {kind!r}")


def paired_bootstrap(
    kind: str,
    records_by_seed: list[list[dict[str, Any]]],
    image_idx: np.ndarray,
    seed_idx: np.ndarray,
    ci: float = 0.95,
    max_dets: int = 300,
) -> tuple[float, float, float, np.ndarray]:
    """(mean, ci_low, ci_high, replicates) of a cell trained with several seeds.

    The point estimate is the mean over seeds of the metric on the whole test set. Replicate b
    averages, over the seeds ``seed_idx[b]``, the metric on the test images ``image_idx[b]``;
    passing the same index tables for every regime makes the intervals paired.
    """
    point = float(np.mean([metric_value(kind, r, None, max_dets) for r in records_by_seed]))
    reps = np.empty(len(image_idx))
    for b in range(len(image_idx)):
        reps[b] = np.mean([metric_value(kind, records_by_seed[s], image_idx[b], max_dets) for s in seed_idx[b]])
    lo, hi = np.quantile(reps, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return point, float(lo), float(hi), reps
