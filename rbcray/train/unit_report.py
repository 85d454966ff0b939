"""What follows UNIT training on either path (in process or Ray Train): scores and figures on val.

:func:`report_unit` translates real normal cells of the **val** images (which neither UNIT nor the
classifier saw), scores them with the real-data morphology classifier next to real normal and
real class-c cells of the same images (the contrast an acceptance rate must be read against),
tabulates the pseudo-label filter's acceptance with bootstrap intervals, measures which mask a
translated cell should get, and renders one val smear before and after blending. It returns the
summary (for ``unit.json`` / ``scores.json``), a writer of the figures and the printed lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rbcray.data.cells import extract_cells
from rbcray.data.morphology import CLASSES
from rbcray.errors import DataError
from rbcray.io import write_json, write_png
from rbcray.models.unit.apply import translate_smear
from rbcray.models.unit.filter import DEFAULT_THRESHOLDS
from rbcray.models.unit.masks import compare_mask_options
from rbcray.models.unit.networks import UNIT
from rbcray.train.unit import acceptance_table, figure, score_translations, translate_crops


@dataclass(frozen=True)
class UNITReport:
    """The summary, ``write(folder)`` (figure.png, smear.png, scores.json) and the lines to print."""

    summary: dict[str, Any]
    write: Callable[[Path], None]
    lines: list[str]


def report_unit(
    model: UNIT, clf: Any, clf_cfg: Any, ds: Any, val_stems: list[str], target: int, history: list[dict[str, float]],
    n_train: dict[str, int], *, threshold: float = 0.9, max_eval: int = 1500, classifier: str = "", where: str = "",
) -> UNITReport:
    """Score ``model`` (normal -> ``target``) on ``val_stems`` of dataset ``ds`` with classifier ``clf``."""
    name = CLASSES[target]
    win = {"window": clf_cfg.window, "size": clf_cfg.size}
    rng = np.random.default_rng(0)
    v_normal = extract_cells(ds, val_stems, classes=[0], **win)
    v_rare = extract_cells(ds, val_stems, classes=[target], **win)
    if len(v_normal) == 0 or len(v_rare) == 0:
        raise DataError(f"{where}: the val images hold {len(v_normal)} normal and {len(v_rare)} {name} cells; need both")
    v_normal = v_normal.subset(np.sort(rng.permutation(len(v_normal))[:max_eval]))
    v_rare = v_rare.subset(np.sort(rng.permutation(len(v_rare))[:max_eval]))
    translated = translate_crops(model, v_normal.crops)
    scores = score_translations(clf, target, v_normal.crops, translated, v_rare.crops)
    table = acceptance_table(scores, DEFAULT_THRESHOLDS)
    mask_option = compare_mask_options(v_normal.crops, translated, v_rare.crops)
    summary: dict[str, Any] = {
        "target": name,
        "iterations": history[-1]["iteration"],
        "train_seconds": history[-1]["seconds"],
        "n_train": n_train,
        "n_val_scored": {"normal": len(v_normal), name: len(v_rare)},
        "mean_p_target": {k: float(v.mean()) for k, v in scores.items()},
        "acceptance": table,
        "mask_option": mask_option,
        "classifier": classifier,
    }
    # One val smear with its normal cells translated, filtered at t and blended in (before | after).
    counts = np.bincount(v_normal.image_index, minlength=len(v_normal.stems))
    host_stem = v_normal.stems[int(counts.argmax())]
    host_ids = v_normal.cell_id[v_normal.image_index == counts.argmax()]
    host_img, host_inst = ds.load_image(host_stem), ds.load_instances(host_stem)
    smear = translate_smear(model, clf, host_img, host_inst, host_ids, target, threshold, clf_cfg.window, clf_cfg.size)
    unfiltered = translate_smear(model, clf, host_img, host_inst, host_ids, target, 0.0, clf_cfg.window, clf_cfg.size)
    summary["example_smear"] = {"stem": host_stem, "t": threshold, "cells": int(len(smear.cell_ids)), "accepted": int(smear.accepted.sum())}
    gap = np.full((host_img.shape[0], 8, 3), 255, np.uint8)

    def write(folder: Path) -> None:
        figure(folder / "figure.png", v_normal.crops, translated, v_rare.crops, scores["translated"], name)
        # host | every chosen cell translated and blended (t = 0) | only those the filter keeps (t)
        write_png(folder / "smear.png", np.concatenate([host_img, gap, unfiltered.image, gap, smear.image], axis=1))
        write_json(folder / "scores.json", summary)

    return UNITReport(summary, write, report_lines(summary))


def report_lines(summary: dict[str, Any]) -> list[str]:
    """The acceptance table (Markdown), the mask-shape distances and one ``key=value`` result line."""
    name, table = summary["target"], summary["acceptance"]
    lines = ["| t | real normal | translated | real " + name + " |", "| ---: | ---: | ---: | ---: |"]
    for r in table:
        cells = [f"{r[k]:.3f} [{r[k + '_ci'][0]:.3f}, {r[k + '_ci'][1]:.3f}]" for k in ("real_normal", "translated", "real_target")]
        lines.append(f"| {r['t']:.2f} | " + " | ".join(cells) + " |")
    for k, v in summary["mask_option"].items():
        lines.append(f"mask shapes vs real {name} (derived masks), KS distance: {k}: area {v['area']:.3f}, elongation {v['elongation']:.3f}")
    at9 = next(r for r in table if r["t"] == 0.9)
    lines.append(
        f"target={name} iterations={summary['iterations']} train_s={summary['train_seconds']:.0f} "
        f"accept09_translated={at9['translated']:.3f} accept09_real_normal={at9['real_normal']:.3f} accept09_real_target={at9['real_target']:.3f}"
    )
    return lines
