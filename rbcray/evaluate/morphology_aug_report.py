"""The morphology section of the evaluation sweep: run :mod:`rbcray.evaluate.morphology_aug` from a
:class:`~rbcray.evaluate.config.SweepConfig`, its Markdown (``morphology.md`` and a section of
``table.md``), its key=value line, and the reports of a sweep with no image models.

Pure library (no Ray): the sweep runs it in the driver process after the trials.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from rbcray.config import to_dict
from rbcray.errors import ConfigError
from rbcray.evaluate.morphology import FEW


def _ci(v: float, c: list[float], sign: bool = False) -> str:
    if not np.isfinite(v):
        return "n/a"
    f = "{:+.3f}" if sign else "{:.3f}"
    return f"{f.format(v)} [{f.format(c[0])}, {f.format(c[1])}]"


def to_markdown(res: dict[str, Any]) -> str:
    """The section: test table (AUC and paired differences to real), val grid, acceptance, how."""
    b = res["test"]
    star = res["regime_star"]
    pct = round(b["ci"] * 100)
    targets = set(res["targets"])
    lines = [
        "## Morphology: real vs real + synthetic rare cells (Gupta et al.)",
        "",
        f"Morphology classifier trained on real train cells (**real**), on real + every translated cell "
        f"(**unfiltered**), and on real + the translated cells the pseudo-labeller scores p(c) >= t (**t\\* = {res['t_star']:g}**, "
        f"chosen on val). One-vs-rest AUC on the real **test** split ({b['n_cells']} cells in {b['n_images']} images); "
        f"{pct}% percentile intervals of {b['n_boot']} image-bootstrap replicates; differences are **paired** "
        f"(each replicate scores every model on the same resampled test images). Target classes first (*).",
        "",
        f"| class | test cells | real | unfiltered | t* = {res['t_star']:g} | unfiltered - real | t* - real |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    m, d = b["models"], b["diff"]
    few = False
    for j, name in enumerate(b["classes"]):
        mark = " *" if name in targets else ""
        if b["n_test"][j] < FEW:
            mark, few = mark + " †", True
        lines.append(
            f"| {name}{mark} | {b['n_test'][j]} | {_ci(m['real']['auc'][j], m['real']['auc_ci'][j])} | "
            f"{_ci(m['unfiltered']['auc'][j], m['unfiltered']['auc_ci'][j])} | {_ci(m[star]['auc'][j], m[star]['auc_ci'][j])} | "
            f"{_ci(d['unfiltered']['auc'][j], d['unfiltered']['auc_ci'][j], True)} | {_ci(d[star]['auc'][j], d[star]['auc_ci'][j], True)} |"
        )
    lines.append(
        f"| **macro** | {b['n_cells']} | {_ci(m['real']['macro'], m['real']['macro_ci'])} | {_ci(m['unfiltered']['macro'], m['unfiltered']['macro_ci'])} | "
        f"{_ci(m[star]['macro'], m[star]['macro_ci'])} | {_ci(d['unfiltered']['macro'], d['unfiltered']['macro_ci'], True)} | "
        f"{_ci(d[star]['macro'], d[star]['macro_ci'], True)} |"
    )
    if few:
        lines += ["", f"† fewer than {FEW} test cells: the figure and its interval say little."]
    if star in res["shared_models"]:
        lines += ["", f"t* = {res['t_star']:g} kept the same training cells as {res['shared_models'][star]}: the same model, "
                  "so its difference is exactly 0."]
    lines += ["", "Validation (t search): mean AUC over the target classes, and the synthetic cells each regime adds:", "",
              "| regime | val mean target AUC | synthetic cells added |", "| --- | ---: | ---: |"]
    for name, v in res["val"].items():
        added = sum(n for k, n in res["n_train"][name].items() if k != "real")
        same = f" (= {res['shared_models'][name]})" if name in res["shared_models"] else ""
        lines.append(f"| {name}{same} | {v['mean']:.4f} | {added} |")
    lines += ["", "Pseudo-label filter on the translated train normal cells (accepted / translated):", ""]
    ts = [r["t"] for r in res["acceptance"][0]["by_t"]] if res["acceptance"] else []
    lines += ["| class | translated | mean p(c) | max p(c) | " + " | ".join(f"t = {t:g}" for t in ts) + " |",
              "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in ts) + " |"]
    for a in res["acceptance"]:
        cells = " | ".join(f"{r['accepted']} ({r['accepted'] / max(a['translated'], 1):.3f})" for r in a["by_t"])
        lines.append(f"| {a['class']} | {a['translated']} | {a['mean_p']:.3f} | {a['max_p']:.3f} | {cells} |")
    tc = res["config"]["train"]
    lines += [
        "",
        f"How: {res['n_trained']} classifier(s) trained one after another in one process ({tc['epochs']} epochs, seed {tc['seed']}; "
        f"regimes with identical training cells share one model); {res['cells']['train']} real train cells of "
        f"{res['images']['train']} images, val {res['cells']['val']} cells / {res['images']['val']} images. Synthetic cells: real train "
        "normal cells translated by each class's UNIT, mask channel = the source cell's derived mask (host shape kept). "
        "Labels and masks are derived, not ground truth. "
        f"{res['seconds']:.0f} s.",
        "",
        key_line(res),
    ]
    return "\n".join(lines) + "\n"


def key_line(res: dict[str, Any]) -> str:
    """One key=value line: macro-over-target-classes test AUC of the three models and t*."""
    b = res["test"]
    k = len(res["targets"])

    def mean_t(name: str) -> float:
        return float(np.nanmean(b["models"][name]["auc"][:k]))

    return (f"auc_real={mean_t('real'):.4f} auc_unfiltered={mean_t('unfiltered'):.4f} auc_filtered={mean_t(res['regime_star']):.4f} "
            f"t_star={res['t_star']:g} targets={','.join(res['targets'])}")


def check_morphology(cfg: Any) -> str | None:
    """Check the sweep's ``morphology:`` inputs before anything trains: a split file, the
    pseudo-labeller and every UNIT readable, none learned from a val/test image. Returns a line
    saying what was checked (None when there is no enabled section)."""
    from rbcray.data.splits import load_splits
    from rbcray.evaluate.morphology_aug import load_inputs

    m = cfg.morphology
    if m is None or not m.enabled:
        return None
    d = cfg.morphology_dataset()
    if d.splits is None:
        raise ConfigError(f"morphology: dataset {d.name!r} has no 'splits' file (train / val / test roles are needed; rbcray split)")
    _, _, _, units = load_inputs(m, load_splits(d.splits))
    from rbcray.data.morphology import CLASSES

    return f"morphology: pseudo-labeller and UNIT(s) for {', '.join(CLASSES[c] for c, _, _ in units)} OK, none learned from val/test images"


def sweep_morphology(cfg: Any, log: Callable[[str], None] = print) -> tuple[dict[str, Any] | None, str | None]:
    """Run the sweep's ``morphology:`` section (None, None when absent or disabled)."""
    from rbcray.evaluate.morphology_aug import evaluate_augmentation

    if check_morphology(cfg) is None:
        return None, None
    d = cfg.morphology_dataset()
    res = evaluate_augmentation(d.real, d.splits, cfg.morphology, log=log)
    res["dataset"] = d.name
    return res, to_markdown(res)


def write_morphology_only(out: Any, cfg: Any, res: dict[str, Any], md: str) -> dict[str, str]:
    """Reports of a sweep with only a morphology section: morphology.md, table.md, report.json (last)."""
    paths = {"morphology.md": out.put("morphology.md", md.encode())}
    paths["table.md"] = out.put("table.md", f"# {cfg.name}: morphology evaluation\n\n{md}".encode())
    report = {"config": to_dict(cfg), "morphology": res, "files": sorted([*paths, "report.json"])}
    paths["report.json"] = out.put("report.json", (json.dumps(report, indent=2, default=float) + "\n").encode())
    return paths
