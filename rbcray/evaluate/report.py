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
from rbcray.evaluate.config import METRIC_LABEL, SweepConfig
from rbcray.evaluate.metrics import bootstrap_indices, paired_bootstrap
from rbcray.evaluate.regimes import regime_counts
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


def summarise(cfg: SweepConfig, results: list[TrialResult]) -> list[Row]:
    """Rows in table order (models, then regimes) with paired-bootstrap intervals."""
    by = {(r.model, r.regime, r.seed): r for r in results}
    tables: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    rows: list[Row] = []
    for m in cfg.models:
        cells: dict[str, tuple[float, float, float, np.ndarray, int]] = {}
        for regime in cfg.model_regimes(m):
            missing = [s for s in cfg.seeds if (m.label, regime, s) not in by]
            if missing:
                raise RbcrayError(f"no result for trial {m.label} / {regime} / seed {missing[0]}")
            trials = [by[(m.label, regime, s)] for s in cfg.seeds]
            n_test = len(trials[0].records)
            if m.dataset not in tables:
                # one index table per test set: every regime and model on it is paired
                rng = np.random.default_rng([cfg.bootstrap_seed, zlib.crc32(m.dataset.encode())])
                tables[m.dataset] = (bootstrap_indices(n_test, cfg.bootstrap, rng),
                                     bootstrap_indices(len(cfg.seeds), cfg.bootstrap, rng))
            img_idx, seed_idx = tables[m.dataset]
            mean, lo, hi, reps = paired_bootstrap(m.metric, [t.records for t in trials], img_idx, seed_idx, cfg.ci, cfg.max_dets)
            cells[regime] = (mean, lo, hi, reps, n_test)
        rd = cells.get("RD")
        for regime, (mean, lo, hi, reps, n_test) in cells.items():
            delta = None
            if rd is not None and regime != "RD":
                q = np.quantile(reps - rd[3], [(1 - cfg.ci) / 2, 1 - (1 - cfg.ci) / 2])
                delta = (mean - rd[0], float(q[0]), float(q[1]))
            rows.append(Row(m.label, regime, m.metric, mean, lo, hi, n_test, len(cfg.seeds), delta))
    return rows


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


def report_markdown(cfg: SweepConfig, rows: list[Row], provenance: dict[str, str], realism_md: str | None) -> str:
    """The whole ``table.md``: table, paired differences, how it was made, data provenance."""
    pct = round(cfg.ci * 100)
    counts = {r: regime_counts(r, cfg.n_real, cfg.total, cfg.synthetic_share) for r in cfg.regimes}
    count_txt = "; ".join(f"{r}: {c.real} real + {c.synthetic} synthetic + {c.augmented} augmented" for r, c in counts.items())
    n_tests = sorted({(r.model, r.n_test) for r in rows})
    parts = [
        f"# {cfg.name}: downstream evaluation (Bailo et al. 2019, Table 2)",
        "",
        f"Mean over {len(cfg.seeds)} seed(s) on the real test set, with paired-bootstrap {pct}% intervals "
        f"({cfg.bootstrap} resamples of the test images{' and seeds' if len(cfg.seeds) > 1 else ''}).",
        "",
        markdown_table(cfg, rows),
        "",
    ]
    dt = delta_table(cfg, rows)
    if dt:
        parts += [f"Difference from RD (same model, same test images; paired {pct}% interval):", "", dt, ""]
    parts += [
        "## How",
        "",
        f"- Training items per regime: {count_txt}.",
        "- Test images per model: " + ", ".join(f"{m} {n}" for m, n in n_tests) + "; real only, fixed by the split seed.",
        "- Metrics: Dice (Eq. 8) of FCN-8s foreground; AP at IoU 0.5 (pycocotools COCOeval) of cell boxes for "
        "Faster R-CNN and DCAN (cells = components of objectness minus contour).",
        "",
        "## Data",
        "",
    ]
    parts += [f"- **{name}**: {text}" for name, text in provenance.items()]
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
    realism: dict[str, Any] | None = None, realism_md: str | None = None,
) -> dict[str, str]:
    """Write every output file; ``report.json`` last. Returns name -> written path."""
    rows = summarise(cfg, results)
    paths = {
        "table.csv": out.put("table.csv", csv_text(rows).encode()),
        "table.png": out.put("table.png", bar_chart_png(cfg, rows)),
    }
    if realism_md:
        paths["realism.md"] = out.put("realism.md", realism_md.encode())
    paths["results.json"] = out.put("results.json", (json.dumps([r.to_dict() for r in results]) + "\n").encode())
    paths["table.md"] = out.put("table.md", report_markdown(cfg, rows, provenance, realism_md).encode())
    report = {
        "config": to_dict(cfg), "provenance": provenance, "rows": [r.__dict__ for r in rows],
        "realism": realism, "files": sorted(paths),
    }
    paths["report.json"] = out.put("report.json", (json.dumps(report, indent=2, default=float) + "\n").encode())
    return paths
