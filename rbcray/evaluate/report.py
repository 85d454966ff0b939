"""Table 2 of Bailo et al. with confidence intervals: summarise trials, write md / csv / png.

Each cell (model, regime) is the mean over seeds of the metric on the whole real test set, with
a paired-bootstrap interval: test images (and seeds, when there are several) are resampled with
one index table per test set, shared by every regime and model on that set, so the difference
between two regimes gets an interval too ("vs RD" in ``table.md``).

Outputs under the ``--out`` URI (a local folder or ``s3://…``): ``table.csv`` (columns exactly
``model,regime,metric,mean,ci_low,ci_high,n_test``), ``table.png``, ``realism.md`` and
``results.json`` (per-trial results and per-image records), then ``table.md``, then ``report.json``
last: a folder with ``report.json`` is complete.
"""

from __future__ import annotations

import csv
import io
import json
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from rbcray import storage
from rbcray.config import to_dict
from rbcray.errors import RbcrayError
from rbcray.evaluate.config import METRIC_LABEL, ModelEntry, SweepConfig
from rbcray.evaluate.contrasts import (
    CONTRASTS,
    BootTables,
    Contrast,
    Worth,
    boot_tables,
    contrast,
    hierarchical,
    interval,
    synthetic_worth,
    unit_replicates,
)
from rbcray.evaluate.family_rows import attach_to_realism, data_key, family_markdown, family_rows
from rbcray.evaluate.metrics import metric_value
from rbcray.evaluate.regimes import regime_counts
from rbcray.evaluate.report_sections import Summary, contrast_table, curve_png, curve_table, leakage_lines
from rbcray.evaluate.train import TrialResult

CSV_COLUMNS = ("model", "regime", "metric", "mean", "ci_low", "ci_high", "n_test")


@dataclass(frozen=True)
class Row:
    """One cell of the table."""

    model: str
    regime: str
    metric: str
    mean: float
    ci_low: float
    ci_high: float
    n_test: int
    n_seeds: int
    #: paired difference to RD of the same model (None for RD itself or without RD)
    delta: tuple[float, float, float] | None = None
    n_subsets: int = 1
    n_real: int = 0


class _Cells:
    """Estimates and bootstrap replicates of cells, one shared draw table per test set."""

    def __init__(self, cfg: SweepConfig, results: list[TrialResult]) -> None:
        self.cfg = cfg
        self.by = {(r.model, r.regime, r.n_real or cfg.n_real, r.subset, r.seed): r for r in results}
        self.tables: dict[str, BootTables] = {}
        self.cache: dict[tuple[str, str, int], tuple[float, np.ndarray, int]] = {}

    def get(self, m: ModelEntry, regime: str, n: int) -> tuple[float, np.ndarray, int]:
        key = (m.label, regime, n)
        if key in self.cache:
            return self.cache[key]
        cfg = self.cfg
        grid = []
        for k in cfg.rd_subsets:
            row = []
            for s in cfg.seeds:
                t = self.by.get((m.label, regime, n, k, s))
                if t is None:
                    raise RbcrayError(f"no result for trial {m.label} / {regime} / {n} real / subset {k} / seed {s}")
                row.append(t)
            grid.append(row)
        n_test = len(grid[0][0].records)
        # datasets over the same real data share one draw table, so cross-dataset differences pair
        key = data_key(cfg, m.dataset)
        if key not in self.tables:
            rng = np.random.default_rng([cfg.bootstrap_seed, zlib.crc32(key.encode())])
            self.tables[key] = boot_tables(n_test, len(cfg.rd_subsets), len(cfg.seeds), cfg.bootstrap, rng)
        tab = self.tables[key]
        points = np.empty((len(grid), len(grid[0])))
        unit = np.empty((*points.shape, tab.n_boot))
        for i, row in enumerate(grid):
            for j, t in enumerate(row):
                points[i, j], unit[i, j] = unit_replicates(
                    lambda idx, rec=t.records: metric_value(m.metric, rec, idx, cfg.max_dets), tab)
        est, reps = hierarchical(points, unit, tab)
        self.cache[key] = (est, reps, n_test)
        return self.cache[key]


def summarise_all(cfg: SweepConfig, results: list[TrialResult]) -> Summary:
    """Rows (models, then regimes) with hierarchical-bootstrap intervals, the paired contrasts
    of every model, and the learning curve with the synthetic data's worth in real images."""
    cells = _Cells(cfg, results)
    rows: list[Row] = []
    contrasts: dict[str, list[Contrast]] = {}
    n_sub, n_seed = len(cfg.rd_subsets), len(cfg.seeds)
    for m in cfg.models:
        got = {r: cells.get(m, r, cfg.n_real) for r in cfg.model_regimes(m)}
        for regime, (mean, reps, n_test) in got.items():
            lo, hi = interval(reps, cfg.ci)
            delta = None
            if "RD" in got and regime != "RD":
                c = contrast(regime, mean, reps, "RD", got["RD"][0], got["RD"][1], cfg.ci)
                delta = (c.diff, c.ci_low, c.ci_high)
            rows.append(Row(m.label, regime, m.metric, mean, lo, hi, n_test, n_seed, delta, n_sub, cfg.n_real))
        contrasts[m.label] = [contrast(a, got[a][0], got[a][1], b, got[b][0], got[b][1], cfg.ci)
                              for a, b in CONTRASTS if a in got and b in got]
    curve: list[Row] = []
    worth: list[Worth] = []
    lc = cfg.learning_curve
    if lc is not None:
        m = cfg.model(lc.model)
        pts: dict[str, list[tuple[float, np.ndarray]]] = {}
        for r in lc.regimes:
            for n in lc.sizes:
                mean, reps, n_test = cells.get(m, r, n)
                lo, hi = interval(reps, cfg.ci)
                curve.append(Row(m.label, r, m.metric, mean, lo, hi, n_test, n_seed, None, n_sub, n))
                pts.setdefault(r, []).append((mean, reps))
        worth = synthetic_worth(
            lc.sizes, [p for p, _ in pts["RD"]], np.stack([r for _, r in pts["RD"]]),
            [p for p, _ in pts["RD+SD"]], np.stack([r for _, r in pts["RD+SD"]]), cfg.ci)
    from rbcray.evaluate.realism import source_family

    families = family_rows(cfg, cells.get, source_family)
    return Summary(rows, contrasts, curve, worth, families)


def summarise(cfg: SweepConfig, results: list[TrialResult]) -> list[Row]:
    """The table's rows (see :func:`summarise_all`)."""
    return summarise_all(cfg, results).rows


def csv_text(rows: list[Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow([r.model, r.regime, r.metric, f"{r.mean:.4f}", f"{r.ci_low:.4f}", f"{r.ci_high:.4f}", r.n_test])
    return buf.getvalue()


def markdown_table(cfg: SweepConfig, rows: list[Row]) -> str:
    """Table 2's shape: one row per regime, one column per model."""
    models = [m.label for m in cfg.models]
    regimes = [r for r in cfg.regimes if any(x.regime == r for x in rows)]
    regimes += sorted({x.regime for x in rows} - set(regimes))
    cell = {(r.model, r.regime): r for r in rows}
    head = ["Training data"] + [f"{m.label} ({METRIC_LABEL[m.metric]})" for m in cfg.models]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for reg in regimes:
        vals = []
        for m in models:
            r = cell.get((m, reg))
            vals.append("—" if r is None else f"{r.mean:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]")
        lines.append(f"| {reg} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def delta_table(cfg: SweepConfig, rows: list[Row]) -> str:
    cell = {(r.model, r.regime): r for r in rows}
    regimes = [r for r in cfg.regimes if r != "RD" and any(x.regime == r and x.delta for x in rows)]
    if not regimes:
        return ""
    head = ["Training data"] + [m.label for m in cfg.models]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for reg in regimes:
        vals = []
        for m in cfg.models:
            r = cell.get((m.label, reg))
            vals.append("—" if r is None or r.delta is None else f"{r.delta[0]:+.3f} [{r.delta[1]:+.3f}, {r.delta[2]:+.3f}]")
        lines.append(f"| {reg} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def report_markdown(
    cfg: SweepConfig, rows: list[Row] | Summary, provenance: dict[str, str], realism_md: str | None,
    plan_info: dict[str, Any] | None = None, partial: str | None = None,
) -> str:
    """The whole ``table.md``: table, paired contrasts, learning curve, how it was made, data."""
    summary = rows if isinstance(rows, Summary) else Summary(rows)
    rows = summary.rows
    pct = round(cfg.ci * 100)
    counts = {r: regime_counts(r, cfg.n_real, cfg.total, cfg.synthetic_share) for r in cfg.regimes}
    count_txt = "; ".join(f"{r}: {c.real} real + {c.synthetic} synthetic + {c.augmented} augmented" for r, c in counts.items())
    n_tests = sorted({(r.model, r.n_test) for r in rows})
    levels = "test images" + (f", {len(cfg.rd_subsets)} RD subsets" if len(cfg.rd_subsets) > 1 else "") + (
        f", {len(cfg.seeds)} seeds" if len(cfg.seeds) > 1 else "")
    parts = [
        f"# {cfg.name}: downstream evaluation (Bailo et al. 2019, Table 2)",
        "",
    ]
    if partial:
        parts += [f"**Partial: {partial}**", ""]
    if cfg.allow_overlap:
        parts += ["**--allow-overlap: synthetic inputs were NOT checked against the held-out images (ablation only).**", ""]
    parts += [
        f"Mean over {len(cfg.rd_subsets)} RD subset(s) x {len(cfg.seeds)} seed(s) on the real test set, with "
        f"{pct}% hierarchical-bootstrap intervals ({cfg.bootstrap} resamples of {levels}).",
        "",
        markdown_table(cfg, rows),
        "",
    ]
    dt = contrast_table(cfg, summary) if summary.contrasts else delta_table(cfg, rows)
    if dt:
        parts += [f"Paired differences (same test images, same resamples; {pct}% interval):", "", dt, ""]
    ct = curve_table(cfg, summary)
    if ct:
        lc = cfg.learning_curve
        assert lc is not None
        parts += [f"Learning curve of {lc.model} (RD vs RD+SD by the number of real images; '+N' = the synthetic "
                  "images do what N more real images do, read off the RD curve interpolated in log size):", "", ct, ""]
    sel = {m.label: m.train.val_every for m in cfg.models}
    sel_txt = ", ".join(f"{k} every {v} epochs" if v else f"{k} last epoch" for k, v in sel.items())
    parts += [
        "## How",
        "",
        f"- Training items per regime: {count_txt}.",
        "- Test images per model: " + ", ".join(f"{m} {n}" for m, n in n_tests) + "; real only, fixed by the split.",
        f"- Checkpoint selection on the validation images: {sel_txt}; every regime the same step budget.",
        "- Metrics: Dice (Eq. 8) of FCN-8s foreground; AP at IoU 0.5 (pycocotools COCOeval) of cell boxes for "
        "Faster R-CNN and DCAN (cells = components of objectness minus contour).",
        "",
        "## Data",
        "",
    ]
    parts += [f"- **{name}**: {text}" for name, text in provenance.items()]
    if plan_info:
        parts += ["", "## Splits and leakage", ""] + leakage_lines(plan_info)
    if realism_md:
        parts += ["", realism_md]
    return "\n".join(parts) + "\n"


def bar_chart_png(cfg: SweepConfig, rows: list[Row]) -> bytes:
    """Grouped bars (model groups, one bar per regime) with interval whiskers, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m.label for m in cfg.models]
    regimes = list(dict.fromkeys(r.regime for r in rows))
    cell = {(r.model, r.regime): r for r in rows}
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * len(models)), 4.0), dpi=120)
    width = 0.8 / max(1, len(regimes))
    for j, reg in enumerate(regimes):
        xs, ys, lo, hi = [], [], [], []
        for i, m in enumerate(models):
            r = cell.get((m, reg))
            if r is None:
                continue
            xs.append(i + (j - (len(regimes) - 1) / 2) * width)
            ys.append(r.mean)
            lo.append(max(0.0, r.mean - r.ci_low))
            hi.append(max(0.0, r.ci_high - r.mean))
        ax.bar(xs, ys, width * 0.95, yerr=[lo, hi], capsize=3, label=reg)
    ax.set_xticks(range(len(models)))
    ax.set_xticklabels([f"{m.label}\n{METRIC_LABEL[m.metric]}" for m in cfg.models])
    ax.set_ylim(0, 1)
    ax.set_ylabel("score (real test set)")
    ax.set_title(f"{cfg.name}: {round(cfg.ci * 100)}% paired-bootstrap intervals")
    ax.legend(fontsize=8, ncol=min(5, len(regimes)), loc="upper center", bbox_to_anchor=(0.5, -0.15))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


class OutputWriter:
    """Write named files under a local folder or an object-store URI, each atomically."""

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/") or uri

    def put(self, name: str, data: bytes) -> str:
        path = storage.join(self.uri, name)
        try:
            storage.write_bytes(path, data)
        except RbcrayError:
            raise
        except Exception as e:  # noqa: BLE001 - backends raise many types
            raise RbcrayError(f"{path}: cannot write ({type(e).__name__}: {storage._brief(e)})") from None
        return path

    def check_writable(self) -> None:
        """Fail before any training when the output location cannot be written."""
        storage.check_writable(self.uri)


def write_reports(
    out: OutputWriter, cfg: SweepConfig, results: list[TrialResult], provenance: dict[str, str],
    realism: dict[str, Any] | None = None, realism_md: str | None = None, plan_info: dict[str, Any] | None = None,
    partial: str | None = None, morphology: dict[str, Any] | None = None, morphology_md: str | None = None,
) -> dict[str, str]:
    """Write every output file; ``report.json`` last. Returns name -> written path.

    ``plan_info`` (per dataset: ``splits`` — the stems of every role and RD subset — and
    ``provenance`` — what the synthetic inputs were learned from) goes into report.json as
    ``splits`` and ``provenance``.
    """
    summary = summarise_all(cfg, results)
    rows = summary.rows
    fam_md = family_markdown(summary.families, cfg.ci)
    if fam_md:
        attach_to_realism(realism, summary.families)
        realism_md = (realism_md + "\n" + fam_md) if realism_md else fam_md
    paths = {
        "table.csv": out.put("table.csv", csv_text(rows).encode()),
        "table.png": out.put("table.png", bar_chart_png(cfg, rows)),
    }
    png = curve_png(cfg, summary)
    if png is not None:
        paths["curve.png"] = out.put("curve.png", png)
    if realism_md:
        paths["realism.md"] = out.put("realism.md", realism_md.encode())
    paths["results.json"] = out.put("results.json", (json.dumps([r.to_dict() for r in results]) + "\n").encode())
    if morphology_md:
        paths["morphology.md"] = out.put("morphology.md", morphology_md.encode())
    table_md = report_markdown(cfg, summary, provenance, realism_md, plan_info, partial)
    paths["table.md"] = out.put("table.md", (table_md + ("\n" + morphology_md if morphology_md else "")).encode())
    info = plan_info or {}
    report = {
        "config": to_dict(cfg),
        "allow_overlap": cfg.allow_overlap,
        "partial": partial,
        "splits": {k: v.get("splits") for k, v in info.items()},
        "provenance": {k: {"text": provenance.get(k), **(v.get("provenance") or {})} for k, v in info.items()}
        or provenance,
        "rows": [r.__dict__ for r in rows],
        "contrasts": {k: [c.to_dict() for c in v] for k, v in summary.contrasts.items()},
        "learning_curve": {"rows": [r.__dict__ for r in summary.curve], "worth": [w.to_dict() for w in summary.worth]}
        if summary.curve else None,
        "families": summary.families or None, "realism": realism, "morphology": morphology, "files": sorted(paths),
    }
    paths["report.json"] = out.put("report.json", (json.dumps(report, indent=2, default=float) + "\n").encode())
    return paths
