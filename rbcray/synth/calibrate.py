"""Calibrating mask placement to a real set by simulation (``rbcray calibrate``; no Ray here).

The placement parameters (``n_init``, kernel width, what the kernel is inside its disc, contact
share and depth, and the count distribution) are fitted so that synthetic masks arrange cells as
the real train images do. The objective of one parameter set is the mean two-sample KS distance
over four arrangement statistics between synthetic masks made with it and the real images:

* ``nn_distance``: nearest-neighbour centre distance (pooled over cells),
* ``clark_evans``: Clark-Evans index R (per image, Donnelly's edge correction),
* ``touching_fraction``: fraction of cells touching another, 8-connected (per image),
* ``cells_per_image``: visible cells per image,

all from :mod:`rbcray.data.stats` (RBCs; derived real masks are not ground truth). The search
(random, over :data:`SPACE`) runs on Ray Tune in :mod:`rbcray.distributed.calibrate`; this module
holds what a trial computes, so it is the same with or without Ray. A failed trial (a density that
cannot be placed) scores 1, the worst KS distance.

``params.json`` (:func:`params_record`) holds the fitted :class:`SynthConfig` fields (``config``),
the objective on the images it was fitted on and on held-out images (another split role, never
seen by the search), the provenance records of both, the shape bank's hash and the search's
settings. ``rbcray masks --params params.json`` synthesizes with them (flags still override).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from rbcray.errors import ConfigError, DataError
from rbcray.synth.config import SynthConfig

FORMAT = "rbcray-mask-params"
#: the four statistics of the objective
STATS = ("nn_distance", "clark_evans", "touching_fraction", "cells_per_image")
#: the searched parameters: name -> (kind, low, high); counts are relative to the real set's
#: mean and std of cells per image (masks lose cells where placement jams, so the requested
#: count is fitted too)
SPACE: dict[str, tuple[str, float, float]] = {
    "n_init": ("int", 1, 40),
    "kernel_scale": ("float", 0.6, 2.0),
    "kernel_inside": ("choice", 0, 1),  # 0 'constant', 1 'reverted'
    "kernel_inner": ("float", 0.0, 0.5),
    "contact_prob": ("float", 0.0, 1.0),
    "contact_overlap": ("float", 0.0, 0.4),
    "count_scale": ("float", 0.9, 1.4),
    "spread_scale": ("float", 0.5, 1.5),
}
INSIDE = ("constant", "reverted")


def arrangement(maps: Iterable[np.ndarray], categories: Iterable[dict[int, int] | None] | None = None) -> dict[str, np.ndarray]:
    """The samples of the four :data:`STATS` over instance maps (RBCs of each map)."""
    from rbcray.data.stats import image_spatial

    nn, ce, touch, count = [], [], [], []
    cats = iter(categories) if categories is not None else None
    for inst in maps:
        s = image_spatial(inst, next(cats) if cats is not None else None)
        nn.append(s["nn_distances"])
        ce.append(s["clark_evans"])
        touch.append(s["touching_fraction"])
        count.append(s["n_cells"])
    return {
        "nn_distance": np.concatenate(nn) if nn else np.zeros(0),
        "clark_evans": np.asarray(ce, np.float64),
        "touching_fraction": np.asarray(touch, np.float64),
        "cells_per_image": np.asarray(count, np.float64),
    }


def real_arrangement(ds, stems: Iterable[str]) -> dict[str, np.ndarray]:
    """:func:`arrangement` of the given samples of a real dataset folder."""
    stems = list(stems)
    if not stems:
        raise DataError(f"{ds.root}: no images to calibrate on")
    return arrangement((ds.load_instances(s) for s in stems), (ds.load_categories(s) for s in stems))


def ks_distances(real: dict[str, np.ndarray], syn: dict[str, np.ndarray]) -> dict[str, float]:
    """KS distance per statistic (1 where a side has no finite sample)."""
    from scipy.stats import ks_2samp

    out = {}
    for k in STATS:
        a, b = real[k][np.isfinite(real[k])], syn[k][np.isfinite(syn[k])]
        out[k] = float(ks_2samp(a, b).statistic) if len(a) and len(b) else 1.0
    return out


def config_for(base: SynthConfig, params: dict[str, Any]) -> SynthConfig:
    """``base`` (real size, count and cell size) with a searched parameter set applied."""
    d = base.to_dict()
    d.update(
        placement="adhesive",
        n_init=int(params["n_init"]),
        kernel_scale=float(params["kernel_scale"]),
        kernel_inside=INSIDE[int(params["kernel_inside"])],
        kernel_inner=float(params["kernel_inner"]) if INSIDE[int(params["kernel_inside"])] == "constant" else 0.0,
        contact_prob=float(params["contact_prob"]),
        contact_overlap=float(params["contact_overlap"]),
        cells_mean=float(base.cells_mean * params["count_scale"]),
        cells_std=float(base.cells_std * params["spread_scale"]),
    )
    return SynthConfig.from_dict(d, where="calibration trial")


def synth_arrangement(bank, cfg: SynthConfig, seed: int, n_masks: int) -> dict[str, np.ndarray]:
    """:func:`arrangement` of ``n_masks`` synthetic masks (samples 0..n-1 of ``seed``)."""
    from rbcray.synth.engine import synthesize

    return arrangement(synthesize(bank, cfg, seed, i).instances for i in range(n_masks))


def score(bank, cfg: SynthConfig, real: dict[str, np.ndarray], seed: int, n_masks: int) -> dict[str, Any]:
    """Objective (mean KS over :data:`STATS`) and per-statistic KS of one config; 1 if it fails."""
    try:
        ks = ks_distances(real, synth_arrangement(bank, cfg, seed, n_masks))
    except DataError as e:  # the density cannot be placed with these parameters
        return {"objective": 1.0, "ks": dict.fromkeys(STATS, 1.0), "error": str(e)}
    return {"objective": float(np.mean([ks[k] for k in STATS])), "ks": ks}


def calibration_bank(bank, max_shapes: int = 2000, seed: int = 0):
    """A seeded random subset of at most ``max_shapes`` exemplars of ``bank`` (placement statistics do
    not need every shape; trials then load and ship a small bank)."""
    from rbcray.synth.shapes import ShapeBank

    if len(bank) <= max_shapes:
        return bank
    idx = np.sort(np.random.default_rng(seed).choice(len(bank), max_shapes, replace=False))
    sub = ShapeBank([bank.crops[i] for i in idx], bank.category[idx], bank.exemplar_id[idx], bank.meta, bank.path,
                    None if bank.morphology is None else bank.morphology[idx])
    sub.sha256 = bank.sha256
    return sub


def sample_params(rng: np.random.Generator) -> dict[str, Any]:
    """One uniform draw from :data:`SPACE` (the local search; Ray Tune draws its own)."""
    out: dict[str, Any] = {}
    for k, (kind, lo, hi) in SPACE.items():
        if kind == "int":
            out[k] = int(rng.integers(int(lo), int(hi) + 1))
        elif kind == "choice":
            out[k] = int(rng.integers(int(lo), int(hi) + 1))
        else:
            out[k] = float(rng.uniform(lo, hi))
    return out


def params_record(config: SynthConfig, params: dict[str, Any], fit: dict[str, Any], held_out: dict[str, Any] | None,
                  provenance: dict[str, Any], held_out_provenance: dict[str, Any] | None, search: dict[str, Any],
                  bank_sha256: str | None) -> dict[str, Any]:
    """The JSON-ready content of ``params.json``."""
    from rbcray import __version__
    from rbcray.data.dataset import utc_now

    keys = ("placement", "n_init", "kernel_inside", "kernel_inner", "kernel_scale", "contact_prob", "contact_overlap",
            "cells_mean", "cells_std", "cell_size", "width", "height")
    return {
        "format": FORMAT, "format_version": 1,
        "config": {k: getattr(config, k) for k in keys},
        "search_params": params,
        "objective": {"fit": fit, "held_out": held_out},
        "provenance": provenance,
        "held_out_provenance": held_out_provenance,
        "shape_bank_sha256": bank_sha256,
        "search": search,
        "created": utc_now(), "rbcray_version": __version__,
    }


def load_params(path: str | Path) -> dict[str, Any]:
    """The :class:`SynthConfig` fields of a ``params.json`` (checked)."""
    from rbcray.io import read_json

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: params file not found (make it with 'rbcray calibrate')")
    d = read_json(p)
    if not isinstance(d, dict) or d.get("format") != FORMAT or not isinstance(d.get("config"), dict):
        raise ConfigError(f"{p}: not an rbcray calibration params file (format {FORMAT!r})")
    cfg = dict(d["config"])
    SynthConfig.from_dict(cfg, where=str(p))  # validated as a whole
    return cfg
