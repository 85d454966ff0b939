"""Dataset statistics: the paper's Table 1 plus the spatial statistics that judge synthetic masks.

Table 1 of Bailo et al. (Sec. 3) describes their data by RBCs per image, cell shape (bounding box
height x width) and colour inside cells; rbcray computes the same for any dataset folder. Mask
synthesis (Sec. 4.1) is driven by these numbers: the cell count n ~ Norm(mu, sigma) and the cell
size of the placement kernel come from the ``synthesis`` block of ``rbcray stats``' JSON.

The spatial statistics say how cells sit relative to each other, which is what adhesive placement
(Eq. 3) is meant to reproduce:

- cell area distribution (cells not cut by the border);
- nearest-neighbour centre distance distribution;
- Clark-Evans aggregation index R = mean NN distance / expected NN distance under complete spatial
  randomness at the same density, with Donnelly's (1978) edge correction for a rectangular window:
  R < 1 clustered, R = 1 random, R > 1 regular;
- fraction of cells touching another cell (8-connectivity).

Counts and colours use RBCs (category 1); cell shapes and areas use RBCs not cut by the border.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from rbcray.data.dataset import Dataset
from rbcray.data.formats import adjacency_pairs
from rbcray.data.morphology import dataset_counts

RBC = 1
#: white cells and platelets (COCO ids 2, 3): their per-image counts drive rbcray.synth.others
OTHER = {2: "WBC", 3: "Platelet"}
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def cell_table(inst: np.ndarray, categories: dict[int, int] | None = None) -> dict[str, np.ndarray]:
    """Per-cell measurements of an instance map, as equal-length arrays.

    Keys: ``id``, ``category``, ``area``, ``height``, ``width`` (bbox), ``cx``, ``cy`` (centroid),
    ``border`` (touches the image edge), ``touching`` (touches another cell).
    """
    h, w = inst.shape
    ids = np.unique(inst)
    ids = ids[ids > 0].astype(np.int64)
    n = len(ids)
    out: dict[str, np.ndarray] = {"id": ids}
    if n == 0:
        for k in ("area", "height", "width", "cx", "cy"):
            out[k] = np.zeros(0)
        out["category"] = np.zeros(0, np.int64)
        out["border"] = out["touching"] = np.zeros(0, bool)
        return out
    lab = inst.astype(np.int64)
    size = int(lab.max()) + 1
    area = np.bincount(lab.ravel(), minlength=size).astype(np.float64)
    ys, xs = np.indices(inst.shape)
    sx = np.bincount(lab.ravel(), weights=xs.ravel(), minlength=size)
    sy = np.bincount(lab.ravel(), weights=ys.ravel(), minlength=size)
    slices = ndimage.find_objects(lab)
    bb = np.array([(s[0].start, s[0].stop, s[1].start, s[1].stop) for s in (slices[i - 1] for i in ids)])
    touching = np.zeros(size, bool)
    pairs = adjacency_pairs(inst)
    touching[pairs.ravel()] = True
    cats = categories or {}
    out.update(
        category=np.array([cats.get(int(i), RBC) for i in ids], dtype=np.int64),
        area=area[ids],
        height=(bb[:, 1] - bb[:, 0]).astype(np.float64),
        width=(bb[:, 3] - bb[:, 2]).astype(np.float64),
        cx=sx[ids] / area[ids],
        cy=sy[ids] / area[ids],
        border=(bb[:, 0] == 0) | (bb[:, 2] == 0) | (bb[:, 1] == h) | (bb[:, 3] == w),
        touching=touching[ids],
    )
    return out


def nn_distances(cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """Distance from each centre to its nearest other centre (empty for fewer than 2 points)."""
    if len(cx) < 2:
        return np.zeros(0)
    pts = np.stack([cx, cy], axis=1)
    d, _ = cKDTree(pts).query(pts, k=2)
    return d[:, 1]


def clark_evans(cx: np.ndarray, cy: np.ndarray, width: int, height: int) -> float:
    """Clark-Evans index with Donnelly's edge correction (NaN for fewer than 2 cells)."""
    n = len(cx)
    if n < 2:
        return float("nan")
    area = float(width * height)
    perimeter = 2.0 * (width + height)
    expected = 0.5 * np.sqrt(area / n) + (0.0514 + 0.041 / np.sqrt(n)) * perimeter / n
    return float(nn_distances(cx, cy).mean() / expected)


def image_spatial(inst: np.ndarray, categories: dict[int, int] | None = None) -> dict[str, Any]:
    """Spatial statistics of one instance map (RBCs only): arrays and per-image scalars."""
    t = cell_table(inst, categories)
    rbc = t["category"] == RBC
    cx, cy = t["cx"][rbc], t["cy"][rbc]
    whole = rbc & ~t["border"]
    n = int(rbc.sum())
    return {
        "n_cells": n,
        # white cells and platelets (whole or cut by the border, like the red-cell count)
        "n_other": {c: int((t["category"] == c).sum()) for c in OTHER},
        "areas": t["area"][whole],
        "heights": t["height"][whole],
        "widths": t["width"][whole],
        "nn_distances": nn_distances(cx, cy),
        "clark_evans": clark_evans(cx, cy, inst.shape[1], inst.shape[0]),
        "touching_fraction": float(t["touching"][rbc].mean()) if n else float("nan"),
    }


def summary(values: np.ndarray | list[float]) -> dict[str, float]:
    """Mean, std, count and quantiles of a sample (NaNs dropped)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"n": 0, "mean": float("nan"), "std": float("nan")}
    out = {"n": int(len(v)), "mean": float(v.mean()), "std": float(v.std())}
    for q, val in zip(QUANTILES, np.quantile(v, QUANTILES)):
        out[f"q{int(q * 100):02d}"] = float(val)
    return out


def collect(ds: Dataset, with_color: bool = True) -> dict[str, Any]:
    """Per-image and pooled raw samples of a dataset (used by :func:`dataset_stats` and compare)."""
    per_image: list[dict[str, Any]] = []
    rgb_sum = np.zeros(3)
    rgb_sq = np.zeros(3)
    rgb_n = 0
    with_color = with_color and ds.has_images
    for rec in ds.samples:
        stem = rec["stem"]
        inst = ds.load_instances(stem)
        cats = ds.load_categories(stem)
        s = image_spatial(inst, cats)
        s["stem"], s["width"], s["height"] = stem, inst.shape[1], inst.shape[0]
        per_image.append(s)
        if with_color:
            img = ds.load_image(stem)
            rbc_ids = np.array([i for i, c in cats.items() if c == RBC], dtype=np.int64)
            m = np.isin(inst, rbc_ids) if len(rbc_ids) else np.zeros(inst.shape, bool)
            px = img[m].astype(np.float64)
            rgb_sum += px.sum(0)
            rgb_sq += (px**2).sum(0)
            rgb_n += len(px)
    pooled = {k: np.concatenate([p[k] for p in per_image]) if per_image else np.zeros(0) for k in ("areas", "heights", "widths", "nn_distances")}
    color = None
    if with_color and rgb_n:
        mean = rgb_sum / rgb_n
        color = {"mean": mean.tolist(), "std": np.sqrt(np.maximum(rgb_sq / rgb_n - mean**2, 0)).tolist(), "n_pixels": rgb_n}
    return {"per_image": per_image, "pooled": pooled, "color": color}


def dataset_stats(ds: Dataset, with_color: bool = True, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON-ready statistics of a dataset folder (Table 1, spatial, synthesis parameters).

    ``provenance`` is the record of the images ``ds`` holds (from
    :func:`rbcray.data.provenance.select_dataset`); without it the whole folder is recorded
    (``split: all``).
    """
    from rbcray.data.provenance import provenance_record

    if provenance is None:
        provenance = provenance_record(ds.name, ds.stems, root=str(ds.root.resolve()))
    c = collect(ds, with_color)
    per = c["per_image"]
    counts = np.array([p["n_cells"] for p in per], dtype=np.float64)
    h, w = c["pooled"]["heights"], c["pooled"]["widths"]
    sizes = [(p["width"], p["height"]) for p in per]
    (cw, ch) = max(set(sizes), key=sizes.count) if sizes else (0, 0)
    mpx = np.array([p["width"] * p["height"] / 1e6 for p in per])
    cell_size = float(np.mean((h + w) / 2)) if len(h) else float("nan")
    return {
        "dataset": ds.name,
        "path": str(ds.root),
        "kind": ds.meta.get("kind"),
        "n_images": len(per),
        "n_cells": int(counts.sum()),
        "table1": {
            "cells_per_image": summary(counts),
            "cell_height": summary(h),
            "cell_width": summary(w),
            "rgb_inside_cells": c["color"],
        },
        "spatial": {
            "cell_area": summary(c["pooled"]["areas"]),
            "nn_distance": summary(c["pooled"]["nn_distances"]),
            "clark_evans": summary([p["clark_evans"] for p in per]),
            "touching_fraction": summary([p["touching_fraction"] for p in per]),
        },
        "synthesis": {
            "cells_mean": float(counts.mean()) if len(counts) else float("nan"),
            "cells_std": float(counts.std()) if len(counts) else float("nan"),
            "density_per_mpx": float((counts / mpx).mean()) if len(counts) else float("nan"),
            "cell_size": cell_size,
            "cell_size_std": float(np.std((h + w) / 2)) if len(h) else float("nan"),
            "width": int(cw),
            "height": int(ch),
            "other_cells": other_cell_rates(per),
        },
        "provenance": provenance,
        # Red-cell morphology classes (issue 14), None for datasets without point labels.
        "morphology": dataset_counts(ds.root, ds.stems),
    }


def other_cell_rates(per_image: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per category (2 WBC, 3 Platelet): mean and std of the count per image, the share of images
    holding any, the total and the count histogram (what ``rbcray masks --other-cells stats`` uses)."""
    out = {}
    for c, name in OTHER.items():
        k = np.array([p.get("n_other", {}).get(c, 0) for p in per_image], dtype=np.int64)
        out[str(c)] = {
            "name": name,
            "mean": float(k.mean()) if len(k) else 0.0,
            "std": float(k.std()) if len(k) else 0.0,
            "share_with_any": float((k > 0).mean()) if len(k) else 0.0,
            "total": int(k.sum()),
            "histogram": np.bincount(k).tolist() if len(k) else [],
        }
    return out


def _fmt(s: dict[str, float], digits: int = 1) -> tuple[str, str]:
    if not s or s.get("n", 0) == 0:
        return "n/a", "n/a"
    return f"{s['mean']:.{digits}f}", f"{s['std']:.{digits}f}"


def to_markdown(st: dict[str, Any]) -> str:
    """Table 1 and the spatial statistics as Markdown tables."""
    t1, sp, syn = st["table1"], st["spatial"], st["synthesis"]
    lines = [
        f"# Statistics of `{st['dataset']}` ({st['n_images']} images, {st['n_cells']} RBCs)",
        "",
        "## Table 1 (Bailo et al. 2019, Sec. 3)",
        "",
        "| statistic | mean | std |",
        "| --- | ---: | ---: |",
    ]
    for label, key in (("RBCs per image", "cells_per_image"), ("cell height, bbox (px)", "cell_height"), ("cell width, bbox (px)", "cell_width")):
        m, s = _fmt(t1[key])
        lines.append(f"| {label} | {m} | {s} |")
    col = t1.get("rgb_inside_cells")
    for i, ch in enumerate("RGB"):
        if col:
            lines.append(f"| {ch} inside cells | {col['mean'][i]:.1f} | {col['std'][i]:.1f} |")
        else:
            lines.append(f"| {ch} inside cells | n/a | n/a |")
    lines += ["", "## Spatial statistics", "", "| statistic | mean | std | median | 5% | 95% |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for label, key, d in (
        ("cell area (px)", "cell_area", 1),
        ("nearest-neighbour centre distance (px)", "nn_distance", 1),
        ("Clark-Evans index R (per image)", "clark_evans", 3),
        ("fraction of cells touching another", "touching_fraction", 3),
    ):
        s = sp[key]
        if s.get("n", 0) == 0:
            lines.append(f"| {label} | n/a | n/a | n/a | n/a | n/a |")
        else:
            lines.append(f"| {label} | {s['mean']:.{d}f} | {s['std']:.{d}f} | {s['q50']:.{d}f} | {s['q05']:.{d}f} | {s['q95']:.{d}f} |")
    lines += [
        "",
        "## Synthesis parameters (drive `rbcray masks`)",
        "",
        f"- cells per image: mu = {syn['cells_mean']:.1f}, sigma = {syn['cells_std']:.1f} "
        f"({syn['density_per_mpx']:.1f} per megapixel) at {syn['width']}x{syn['height']}",
        f"- cell size: {syn['cell_size']:.1f} +- {syn['cell_size_std']:.1f} px",
        "",
    ]
    other = syn.get("other_cells")
    if other:  # rbcray masks --other-cells stats draws these (rbcray.synth.others: moments matched)
        def count_law(m: float, sd: float) -> str:
            return ("none" if m <= 0 else f"Gamma-Poisson(mean {m:.2f}, k {m * m / (sd * sd - m):.2f})" if sd * sd > m
                    else f"Poisson({m:.2f})" if sd * sd == m else f"Poisson({m:.2f}) mixed with the least-variance law")

        lines += ["## White cells and platelets per image (derived masks)", "",
                  "| category | mean | std | images with any | total | count law of `--other-cells stats` |",
                  "| --- | ---: | ---: | ---: | ---: | --- |"]
        lines += [f"| {r['name']} | {r['mean']:.3f} | {r['std']:.3f} | {r['share_with_any']:.3f} | {r['total']} | "
                  f"{count_law(r['mean'], r['std'])} |" for r in other.values()] + [""]
    morph = st.get("morphology")
    if morph:
        # Classes rest on derived instance masks (a point labels the outline it falls in).
        lines += ["## Red-cell morphology (point labels on derived instances)", "", "| class | cells |", "| --- | ---: |"]
        lines += [f"| {name} | {n} |" for name, n in morph.items()] + [""]
    return "\n".join(lines)
