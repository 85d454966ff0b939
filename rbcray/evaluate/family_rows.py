"""Downstream rows per generator family: RD+SD of one model under each synthetic source.

A sweep compares generator families downstream by listing one dataset entry per synthetic source
over the *same* real data (same ``real``, ``splits``, ``scale``, ``n_test``, ``n_val``,
``split_seed``) and one model entry per (model, source) with the ``RD+SD`` regime::

    datasets:
      - {name: chula, real: ds, splits: s.json, synthetic: p2p-shards}
      - {name: chula-unet, real: ds, splits: s.json, synthetic: unet-shards}
    models:
      - {label: FCN-8s, model: fcn8s, dataset: chula}
      - {label: FCN-8s (unet), model: fcn8s, dataset: chula-unet, regimes: [RD+SD]}

Datasets over the same real data share one bootstrap draw table (:func:`data_key`), so every
difference here is paired: the same resampled test images, RD subsets and seeds. Each row gives
the model's RD+SD under one family, its difference to the first family's RD+SD, and its
differences to RD and RD+aug (the real-only and augmentation contrasts, taken from whichever
entry of that model on the same data runs those regimes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rbcray.evaluate.config import METRIC_LABEL, DataConfig, SweepConfig
from rbcray.evaluate.contrasts import contrast, interval

#: cells(model_entry, regime, n_real) -> (point, bootstrap replicates, n_test)
CellGetter = Callable[[Any, str, int], tuple[float, np.ndarray, int]]


def _same_data(d: DataConfig) -> tuple[Any, ...]:
    return (d.real, d.splits, d.scale, d.n_test, d.n_val, d.split_seed)


def data_key(cfg: SweepConfig, name: str) -> str:
    """The first dataset over the same real data and test images as ``name`` (its draw table)."""
    me = _same_data(cfg.dataset(name))
    return next(d.name for d in cfg.datasets if _same_data(d) == me)


def family_rows(cfg: SweepConfig, cells: CellGetter, family_of: Callable[[str], str | None]) -> list[dict[str, Any]]:
    """One row per (model kind, synthetic source) where a model kind runs RD+SD on one set of test
    images with two or more sources; ``family_of(uri)`` names a source's generator family."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for m in cfg.models:
        if cfg.dataset(m.dataset).synthetic is not None and "RD+SD" in cfg.model_regimes(m):
            groups.setdefault((m.model, data_key(cfg, m.dataset)), []).append(m)
    rows: list[dict[str, Any]] = []
    for (kind, key), entries in groups.items():
        if len({cfg.dataset(m.dataset).synthetic for m in entries}) < 2:
            continue
        peers = [m for m in cfg.models if m.model == kind and data_key(cfg, m.dataset) == key]
        refs = {r: next((m for m in peers if r in cfg.model_regimes(m)), None) for r in ("RD", "RD+aug")}
        base = cells(entries[0], "RD+SD", cfg.n_real)
        for m in entries:
            mean, reps, n_test = cells(m, "RD+SD", cfg.n_real)
            lo, hi = interval(reps, cfg.ci)
            uri = str(cfg.dataset(m.dataset).synthetic)
            row: dict[str, Any] = {
                "model": kind, "label": m.label, "metric": m.metric, "source": uri,
                "family": family_of(uri) or m.dataset, "n_test": n_test,
                "rd_sd": {"mean": mean, "ci": [lo, hi]}, "vs": {},
            }
            if m is not entries[0]:
                c = contrast("RD+SD", mean, reps, "RD+SD", base[0], base[1], cfg.ci)
                row["vs"][f"first family ({entries[0].label})"] = c.to_dict()
            for r, ref in refs.items():
                if ref is not None:
                    p, rr, _ = cells(ref, r, cfg.n_real)
                    row["vs"][r] = contrast("RD+SD", mean, reps, r, p, rr, cfg.ci).to_dict()
            rows.append(row)
    return rows


def family_markdown(rows: list[dict[str, Any]], ci: float) -> str:
    """The "downstream per family" section of ``table.md`` and ``realism.md`` ('' without rows)."""
    if not rows:
        return ""

    def fmt(c: dict[str, Any] | None) -> str:
        return "—" if c is None else f"{c['diff']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]"

    pct = round(ci * 100)
    lines = [
        "## Downstream, per generator family (RD+SD)",
        "",
        f"The same model, real images and test images; only the synthetic source differs. {pct}% intervals; "
        "differences are paired (same resampled test images, RD subsets and seeds).",
        "",
        "| model | metric | family | RD+SD | − first family | − RD | − RD+aug |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        first = next((v for k, v in r["vs"].items() if k.startswith("first family")), None)
        v = r["rd_sd"]
        lines.append(
            f"| {r['label']} | {METRIC_LABEL.get(r['metric'], r['metric'])} | {r['family']} | "
            f"{v['mean']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}] | {fmt(first)} | {fmt(r['vs'].get('RD'))} | "
            f"{fmt(r['vs'].get('RD+aug'))} |"
        )
    return "\n".join(lines + [""])


def attach_to_realism(realism: dict[str, Any] | None, rows: list[dict[str, Any]]) -> None:
    """Put each row under the realism block of the same source (``block["downstream"][label]``)."""
    if not realism:
        return
    for block in realism.values():
        if isinstance(block, dict) and block.get("source"):
            got = {r["label"]: r for r in rows if r["source"] == block["source"]}
            if got:
                block["downstream"] = got
