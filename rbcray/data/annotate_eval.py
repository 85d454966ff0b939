"""Scoring ``rbcray annotate`` per split, and choosing its presets on train/val only.

The derived masks are judged against the sources' partial labels (:mod:`rbcray.data.quality`):
Chula-RBC-12 points (fraction inside exactly one derived cell, fraction on background) and
BCCD-TXL RBC boxes (recall and precision of derived RBC boxes at IoU >= 0.5). Scores are computed
per split of the *source images* (:func:`source_splits`) so that presets can be chosen on train
and val (:func:`select_preset`) and reported on a test split they never saw
(``benchmarks/bench_annotate.py``). The labels never reach the segmentation itself.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from rbcray.data.annotate import AnnotateConfig, annotate_image
from rbcray.data.quality import box_recall, median_cell_diameter, point_quality
from rbcray.data.sources import Source, SourceImage
from rbcray.data.splits import Splits, make_splits
from rbcray.errors import ConfigError
from rbcray.io import read_image

#: How a source without its own split is split (the defaults of ``rbcray split``, so the same
#: assignment results from ``rbcray annotate chula-rbc-12 --out D && rbcray split D``).
SPLIT_VAL, SPLIT_TEST, SPLIT_SEED = 0.15, 0.15, 0


def source_splits(source: Source) -> Splits:
    """Train / val / test of a source's images: its own (BCCD-TXL's folders) or a seeded one."""
    given = {s.stem: s.split for s in source.images}
    return make_splits(
        [s.stem for s in source.images], dataset=source.name, val=SPLIT_VAL, test=SPLIT_TEST, seed=SPLIT_SEED, given=given
    )


def split_images(source: Source, role: str, limit: int | None = None) -> list[SourceImage]:
    """The labelled images of one split role in source order (first ``limit`` of them)."""
    want = set(source_splits(source).stems(role))
    out = [s for s in source.images if s.stem in want and _labelled(s)]
    return out[:limit] if limit is not None else out


def _labelled(s: SourceImage) -> bool:
    return (s.points is not None and len(s.points) > 0) or (s.boxes_yolo is not None and len(s.boxes_yolo) > 0)


def score_points(images: Iterable[SourceImage], cfg: AnnotateConfig, cache: dict | None = None) -> dict[str, float]:
    """Point-label quality (Chula) summed over ``images``: ``in_one`` (points inside a derived cell
    holding no other point), ``background``, ``in_cell``, ``near_cut`` (another cell within 0.2
    diameters of the point: over-splitting), plus counts and segmentation seconds."""
    n = alone = bg = inside = cut = 0.0
    cells = n_img = 0
    secs = 0.0
    per: list[tuple[float, float, float]] = []
    for s in images:
        rgb = _read(s, cache)
        t0 = time.perf_counter()
        inst, _ = annotate_image(rgb, cfg)
        secs += time.perf_counter() - t0
        q = point_quality(inst, s.points, cut_radius=0.2 * median_cell_diameter(inst))
        k = q["n_points"]
        n += k
        alone += q["one_to_one"] * k
        bg += q["background"] * k
        inside += q["in_cell"] * k
        cut += q["near_cut"] * k
        cells += q["n_cells"]
        n_img += 1
        per.append((k, q["one_to_one"] * k, q["background"] * k))
    n = max(n, 1.0)
    return {"in_one": alone / n, "background": bg / n, "in_cell": inside / n, "near_cut": cut / n,
            "n_points": int(n), "n_cells": cells, "n_images": n_img, "seconds": secs, "per_image": per}


def score_boxes(images: Iterable[SourceImage], cfg: AnnotateConfig, cache: dict | None = None) -> dict[str, float]:
    """RBC box quality (BCCD-TXL, class 1 = RBC) summed over ``images``: ``recall`` and
    ``precision`` of derived RBC boxes at IoU >= 0.5 (one-to-one, greedy by IoU), plus counts and
    segmentation seconds."""
    matched = total = n_rbc = n_img = 0
    secs = 0.0
    per: list[tuple[int, int, int]] = []
    for s in images:
        rgb = _read(s, cache)
        t0 = time.perf_counter()
        inst, cats = annotate_image(rgb, cfg)
        secs += time.perf_counter() - t0
        h, w = inst.shape
        boxes = s.boxes_px(w, h)
        rbc = np.array([i for i, c in cats.items() if c == 1], dtype=np.int64)
        m, t = box_recall(inst, boxes[boxes[:, 0] == 1][:, 1:], 0.5, rbc)
        matched += m
        total += t
        n_rbc += len(rbc)
        n_img += 1
        per.append((m, t, len(rbc)))
    return {"recall": matched / max(total, 1), "precision": matched / max(n_rbc, 1), "n_boxes": total,
            "n_derived": n_rbc, "n_images": n_img, "seconds": secs, "per_image": per}


def ratio_interval(per_image: Sequence[Sequence[float]], num: int, den: int, n_boot: int = 2000,
                   seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval (resampling images) of sum(num column) / sum(den column) of the
    ``per_image`` rows of a score (images, not cells, are the independent units)."""
    if len(per_image) == 0:
        return (float("nan"), float("nan"))
    a = np.asarray(per_image, dtype=np.float64).reshape(len(per_image), -1)
    idx = np.random.default_rng(seed).integers(0, len(a), (n_boot, len(a)))
    r = a[idx, num].sum(1) / np.maximum(a[idx, den].sum(1), 1e-12)
    lo, hi = np.percentile(r, [2.5, 97.5])
    return float(lo), float(hi)


def _read(s: SourceImage, cache: dict | None) -> np.ndarray:
    if cache is None:
        return read_image(s.path)
    if s.path not in cache:
        cache[s.path] = read_image(s.path)
    return cache[s.path]


def objective(kind: str, score: dict[str, float]) -> float:
    """One number to maximise. Points: in-one minus twice the background share (a point on
    background is a lost cell). Boxes: F1 of recall and precision (recall alone rewards
    over-splitting)."""
    if kind == "points":
        return score["in_one"] - 2.0 * score["background"]
    if kind == "boxes":
        r, p = score["recall"], score["precision"]
        return 2 * r * p / max(r + p, 1e-9)
    raise ConfigError(f"objective kind {kind!r}: use points or boxes")


def grid(space: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the values in ``space`` (keys in sorted order: reproducible)."""
    keys = sorted(space)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(space[k] for k in keys))]


def select_preset(
    base: AnnotateConfig,
    space: dict[str, Sequence[Any]],
    kind: str,
    train: Sequence[SourceImage],
    val: Sequence[SourceImage],
    top: int = 3,
    log: Callable[[str], None] | None = None,
) -> tuple[AnnotateConfig, list[dict[str, Any]]]:
    """Grid search of ``space`` around ``base``: every candidate is scored on ``train``, the
    ``top`` best (and ``base``) are re-scored on ``val``, and the best on val is chosen.

    Train ranks, val decides: a setting that only fits the train images does not win. Returns
    (chosen config, one record per candidate scored on val). No test image is ever passed in.
    """
    score = score_points if kind == "points" else score_boxes
    cache: dict = {}
    rows = []
    candidates = [(change, replace(base, **change)) for change in grid(space)]  # invalid values fail here, before any work
    for k, (change, cfg) in enumerate(candidates):
        s = score(train, cfg, cache)
        rows.append((objective(kind, s), change, s))
        if log:
            log(f"  [{k + 1}] train {objective(kind, s):.4f} {change} {_fmt(s)}")
    rows.sort(key=lambda r: -r[0])
    finalists = [{}] + [r[1] for r in rows[:top]]
    records = []
    best: tuple[float, AnnotateConfig] | None = None
    for change in finalists:
        cfg = replace(base, **change)
        s = score(val, cfg, cache)
        obj = objective(kind, s)
        records.append({"change": change, "val": s, "val_objective": obj})
        if log:
            log(f"  val {obj:.4f} {change or '(base)'} {_fmt(s)}")
        if best is None or obj > best[0] + 1e-9:
            best = (obj, cfg)
    assert best is not None
    return best[1], records


def _fmt(s: dict[str, float]) -> str:
    keys = ("in_one", "background") if "in_one" in s else ("recall", "precision")
    return " ".join(f"{k}={s[k]:.4f}" for k in keys)
