"""Gupta et al.'s evaluation: the morphology classifier trained on real cells vs real + synthetic
rare cells (unfiltered, and filtered by the pseudo-labeller at t), t grid-searched on val.

Pure library (no Ray); the regimes' classifiers are trained one after another in this process.

1. **Synthetic cells.** For each UNIT (normal -> class c): ``n_c`` real *train* normal cells
   (default: as many as class c has real train cells) drawn with a NumPy ``SeedSequence`` of
   (seed, c) — the same draw for the same seed — are translated by that UNIT. A translated crop is
   RGB from UNIT and keeps the **source cell's mask** as its fourth channel (the host shape kept, as
   everywhere in rbcray; :func:`rbcray.train.unit.translate_crops`). Each gets p(c) from the
   pseudo-labeller.
2. **Regimes.** ``real`` (the train crops), ``unfiltered`` (real + every synthetic cell labelled
   c) and ``t=<t>`` for each t of the grid (real + the synthetic cells with p(c) >= t). Each trains
   one classifier with the same :class:`~rbcray.train.morphology.MorphologyTrainConfig` and seed.
   Two regimes with the *same* training cells (e.g. a t that keeps no synthetic cell is ``real``)
   give the same model (seeded, one process), so it is trained once and shared — said in the result.
3. **Val.** Each regime's mean one-vs-rest AUC over the target classes on the val cells; t* is the
   best t (:func:`~rbcray.models.unit.filter.grid_search_threshold`: ties to the smaller t).
4. **Test.** ``real`` vs ``unfiltered`` vs ``t*``: per-class AUC with image-bootstrap percentile
   intervals and **paired** differences to ``real`` — every replicate draws one resample of test
   images and scores all models on it (:func:`paired_image_bootstrap`).

Provenance: the pseudo-labeller, every UNIT and the real training cells must come from images
outside the split's val and test roles (:func:`rbcray.data.provenance.check_no_overlap`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rbcray.config import to_dict
from rbcray.data.cells import CellCrops, extract_cells
from rbcray.data.dataset import Dataset
from rbcray.data.morphology import CLASSES
from rbcray.data.provenance import check_no_overlap, provenance_record
from rbcray.data.splits import Splits, load_splits, select
from rbcray.errors import ConfigError, DataError
from rbcray.evaluate.morphology import auc
from rbcray.evaluate.morphology_aug_config import MorphologyAugConfig
from rbcray.models.morphology import MorphologyNet, predict_proba
from rbcray.models.unit.filter import grid_search_threshold, pseudo_label_filter

Log = Callable[[str], None]


def regime_key(t: float | None) -> str:
    """``unfiltered`` for t None, else ``t=<t>`` (the key of a filtered regime)."""
    return "unfiltered" if t is None else f"t={t:g}"


def draw_sources(n_normal: int, n: int, seed: int, target: int) -> np.ndarray:
    """Indices of the ``n`` source normal cells for class ``target``: without replacement while
    there are enough, else with. A function of (n_normal, n, seed, target) only."""
    if n_normal < 1:
        raise DataError("no real train normal cells to translate")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(target)]))
    if n <= n_normal:
        return np.sort(rng.permutation(n_normal)[:n])
    return np.sort(rng.integers(0, n_normal, n))


def synthesize(unit: Any, normal: CellCrops, n: int, seed: int, target: int) -> CellCrops:
    """``n`` real normal cells (drawn by :func:`draw_sources`) translated into class ``target``:
    RGB from UNIT, the **source cell's mask** as fourth channel, labelled ``target``."""
    from rbcray.train.unit import translate_crops

    src = normal.subset(draw_sources(len(normal), n, seed, target))
    return CellCrops(translate_crops(unit, src.crops), np.full(n, target, np.int64), src.image_index, src.cell_id, src.stems)


def select_threshold(val_score: Mapping[str, float], thresholds: tuple[float, ...]) -> float:
    """t* = the grid's t whose regime has the best val score (ties to the smaller t)."""
    return grid_search_threshold(lambda t: val_score[regime_key(t)], thresholds)[0]


def per_class_auc(probs: np.ndarray, labels: np.ndarray, classes: list[int]) -> np.ndarray:
    """One-vs-rest AUC of each class in ``classes`` (NaN where a kind is missing)."""
    return np.array([auc(probs[:, c], labels == c) for c in classes])


def paired_image_bootstrap(
    probs: Mapping[str, np.ndarray],
    labels: np.ndarray,
    image_index: np.ndarray,
    classes: list[int],
    reference: str,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict[str, Any]:
    """Per-class AUC of several models on the same cells, with image-bootstrap intervals, and the
    **paired** difference of each model to ``reference``: every replicate resamples test images once
    and scores every model on that resample, so shared test-set luck cancels in the difference.

    Returns ``{"models": {name: {"auc": [...], "auc_ci": [[lo, hi]...], "macro", "macro_ci"}},
    "diff": {name: {"auc": [...], "auc_ci": [...], "macro", "macro_ci"}}, "classes", "n_test",
    "n_images", "n_cells", "n_boot", "ci"}``; macro = mean over ``classes`` with both kinds of cells.
    """
    if reference not in probs:
        raise ConfigError(f"paired bootstrap: reference {reference!r} is not one of {sorted(probs)}")
    names = list(probs)
    groups = [np.flatnonzero(image_index == i) for i in np.unique(image_index)]
    rng = np.random.default_rng(seed)
    point = {m: per_class_auc(p, labels, classes) for m, p in probs.items()}
    reps = {m: np.empty((n_boot, len(classes))) for m in names}
    for b in range(n_boot):
        pick = rng.integers(0, len(groups), len(groups))
        idx = np.concatenate([groups[i] for i in pick])
        for m in names:
            reps[m][b] = per_class_auc(probs[m][idx], labels[idx], classes)
    q = [(1 - ci) / 2, 1 - (1 - ci) / 2]

    def interval(r: np.ndarray) -> list[float]:
        r = r[np.isfinite(r)]
        return [float(v) for v in np.quantile(r, q)] if len(r) else [float("nan")] * 2

    present = np.isfinite(point[reference])

    def summary(pt: np.ndarray, rep: np.ndarray) -> dict[str, Any]:
        with np.errstate(all="ignore"):
            macro_rep = np.nanmean(np.where(present, rep, np.nan), axis=1) if present.any() else np.full(len(rep), np.nan)
        return {
            "auc": [float(v) for v in pt],
            "auc_ci": [interval(rep[:, j]) for j in range(len(classes))],
            "macro": float(np.mean(pt[present])) if present.any() else float("nan"),
            "macro_ci": interval(macro_rep),
        }

    return {
        "classes": [CLASSES[c] for c in classes],
        "n_test": [int((labels == c).sum()) for c in classes],
        "models": {m: summary(point[m], reps[m]) for m in names},
        "diff": {m: summary(point[m] - point[reference], reps[m] - reps[reference]) for m in names if m != reference},
        "reference": reference,
        "n_images": len(groups),
        "n_cells": int(len(labels)),
        "n_boot": int(n_boot),
        "ci": float(ci),
    }


def _combine(real: CellCrops, syn: list[tuple[CellCrops, np.ndarray]]) -> CellCrops:
    """Real crops plus the kept synthetic crops of every class (stems kept: image_index stays valid)."""
    parts = [real] + [s.subset(keep) for s, keep in syn]
    return CellCrops(
        np.concatenate([p.crops for p in parts]),
        np.concatenate([p.labels for p in parts]),
        np.concatenate([p.image_index for p in parts]),
        np.concatenate([p.cell_id for p in parts]),
        real.stems,
    )


def load_inputs(cfg: MorphologyAugConfig, splits: Splits) -> tuple[MorphologyNet, Any, dict[str, Any], list[tuple[int, Any, dict[str, Any]]]]:
    """The pseudo-labeller and the UNITs, each checked: no held-out image in its provenance, one
    UNIT per class, crops alike. Returns (classifier, its config, its meta, [(class, unit, meta)])."""
    from rbcray.train.morphology import load_classifier
    from rbcray.train.unit import load_unit

    clf, clf_cfg, clf_meta = load_classifier(cfg.classifier)
    check_no_overlap({"classifier": clf_meta.get("provenance")}, splits)
    if (cfg.train.window, cfg.train.size) != (clf_cfg.window, clf_cfg.size):
        raise ConfigError(f"morphology.train: crop window/size {cfg.train.window}/{cfg.train.size} differ from the pseudo-labeller's "
                          f"{clf_cfg.window}/{clf_cfg.size} ({cfg.classifier}); UNIT and the filter work on that crop")
    units = []
    for path in cfg.units:
        model, ucfg, meta = load_unit(path)
        check_no_overlap({f"unit {path}": meta.get("provenance")}, splits)
        crop = meta.get("crop") or {}
        if crop and (crop.get("window"), crop.get("size")) != (clf_cfg.window, clf_cfg.size):
            raise ConfigError(f"{path}: UNIT was trained on {crop.get('window')}/{crop.get('size')} crops, the pseudo-labeller uses "
                              f"{clf_cfg.window}/{clf_cfg.size}")
        if any(c == ucfg.target for c, _, _ in units):
            raise ConfigError(f"morphology.units: two UNITs translate into {CLASSES[ucfg.target]} ({path}); give one per class")
        units.append((ucfg.target, model, meta))
    return clf, clf_cfg, clf_meta, units


def evaluate_augmentation(root: str | Path, splits_path: str | Path, cfg: MorphologyAugConfig, log: Log = print) -> dict[str, Any]:
    """Run the whole evaluation on an annotated dataset with morphology labels; returns the result
    dict (see :func:`rbcray.evaluate.morphology_aug_report.to_markdown` for its table)."""
    from rbcray.train.morphology import train_classifier

    t0 = time.perf_counter()
    splits = load_splits(splits_path)
    clf, clf_cfg, clf_meta, units = load_inputs(cfg, splits)
    ds = Dataset.open(root)
    win = {"window": clf_cfg.window, "size": clf_cfg.size}
    stems = {r: select(ds.stems, splits, r, where=str(root)) for r in ("train", "val", "test")}
    crops = {r: extract_cells(ds, s, **win) for r, s in stems.items()}
    train = crops["train"]
    used = sorted({train.stems[i] for i in train.image_index.tolist()})
    train_prov = provenance_record(ds.name, used, root=str(Path(root).resolve()), splits=splits, role="train")
    check_no_overlap({"real training cells": train_prov}, splits)
    for r in ("val", "test"):
        if len(crops[r]) == 0:
            raise DataError(f"{root}: no labelled cells in the {r} images")
    log(f"morphology: {len(train)} real train, {len(crops['val'])} val, {len(crops['test'])} test labelled cells")

    normal = train.subset(train.labels == 0)
    targets = [c for c, _, _ in units]
    syn: dict[int, CellCrops] = {}
    p_syn: dict[int, np.ndarray] = {}
    for c, model, _ in units:
        n = cfg.n_synthetic or int((train.labels == c).sum())
        if n == 0:
            raise DataError(f"{root}: no real train cells of class {CLASSES[c]}; set morphology.n_synthetic")
        syn[c] = synthesize(model, normal, n, cfg.seed, c)
        p_syn[c] = predict_proba(clf, syn[c].crops)[:, c]
        log(f"morphology: {n} normal train cells translated to {CLASSES[c]}; mean p({CLASSES[c]}) {p_syn[c].mean():.3f}")

    def keep_masks(t: float | None) -> dict[int, np.ndarray]:
        return {c: np.ones(len(syn[c]), bool) if t is None else pseudo_label_filter(p_syn[c][:, None], 0, t) for c in targets}

    regimes: dict[str, dict[int, np.ndarray] | None] = {"real": None, "unfiltered": keep_masks(None)}
    regimes.update({regime_key(t): keep_masks(t) for t in cfg.thresholds})
    models: dict[bytes, MorphologyNet] = {}
    shared_with: dict[str, str] = {}
    first_of: dict[bytes, str] = {}
    probs: dict[str, dict[str, np.ndarray]] = {}
    n_train: dict[str, dict[str, int]] = {}
    for name, keep in regimes.items():
        keep = keep or {c: np.zeros(len(syn[c]), bool) for c in targets}
        key = b"".join(np.packbits(keep[c]).tobytes() + b"|" for c in targets)
        n_train[name] = {"real": len(train), **{CLASSES[c]: int(keep[c].sum()) for c in targets}}
        if key in models:
            shared_with[name] = first_of[key]
            log(f"morphology: regime {name}: the same training cells as {first_of[key]}; same model")
        else:
            t1 = time.perf_counter()
            data = _combine(train, [(syn[c], keep[c]) for c in targets])
            models[key], _ = train_classifier(data, cfg.train)
            first_of[key] = name
            log(f"morphology: regime {name}: trained on {len(data)} cells in {time.perf_counter() - t1:.0f} s")
        probs[name] = {r: predict_proba(models[key], crops[r].crops) for r in ("val", "test")}

    val_labels = crops["val"].labels
    val = {name: per_class_auc(p["val"], val_labels, targets) for name, p in probs.items()}
    val_score = {name: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for name, v in val.items()}
    t_star = select_threshold(val_score, cfg.thresholds)
    star = regime_key(t_star)
    log(f"morphology: t* = {t_star:g} (val mean target AUC {val_score[star]:.4f}; real {val_score['real']:.4f}, unfiltered {val_score['unfiltered']:.4f})")

    test = crops["test"]
    present = [c for c in range(len(CLASSES)) if (test.labels == c).any() and (test.labels != c).any()]
    order = targets + [c for c in present if c not in targets]
    compare = {"real": probs["real"]["test"], "unfiltered": probs["unfiltered"]["test"], star: probs[star]["test"]}
    boot = paired_image_bootstrap(compare, test.labels, test.image_index, order, "real", cfg.n_boot, cfg.seed, cfg.ci)

    acceptance = []
    for c in targets:
        rows = [{"t": float(t), "accepted": int((p_syn[c] >= t).sum())} for t in cfg.thresholds]
        acceptance.append({"class": CLASSES[c], "translated": int(len(p_syn[c])), "mean_p": float(p_syn[c].mean()),
                           "max_p": float(p_syn[c].max()) if len(p_syn[c]) else float("nan"), "by_t": rows})
    return {
        "targets": [CLASSES[c] for c in targets],
        "t_star": float(t_star),
        "regime_star": star,
        "val": {name: {"target_auc": [float(x) for x in v], "mean": val_score[name]} for name, v in val.items()},
        "test": boot,
        "acceptance": acceptance,
        "n_train": n_train,
        "shared_models": shared_with,
        "n_trained": len(models),
        "cells": {r: int(len(crops[r])) for r in crops},
        "images": {r: int(len({crops[r].stems[i] for i in crops[r].image_index.tolist()})) for r in crops},
        "config": to_dict(cfg),
        "provenance": {"classifier": clf_meta.get("provenance"), "units": {p: m.get("provenance") for p, (_, _, m) in zip(cfg.units, units)},
                       "real_train": train_prov},
        "seconds": time.perf_counter() - t0,
    }
