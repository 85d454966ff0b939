"""Sections of ``table.md`` beyond Table 2: paired contrasts, the learning curve (table and PNG),
splits and leakage; and :class:`Summary`, what :func:`rbcray.evaluate.report.summarise_all` returns."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rbcray.data.provenance import flatten
from rbcray.evaluate.config import METRIC_LABEL, SweepConfig
from rbcray.evaluate.contrasts import CONTRASTS, Contrast, Worth

if TYPE_CHECKING:
    from rbcray.evaluate.report import Row


@dataclass
class Summary:
    """Everything the reports say: table rows, paired contrasts, the learning curve."""

    rows: list[Row]
    contrasts: dict[str, list[Contrast]] = field(default_factory=dict)
    curve: list[Row] = field(default_factory=list)
    worth: list[Worth] = field(default_factory=list)
    #: downstream RD+SD rows per generator family (:mod:`rbcray.evaluate.family_rows`)
    families: list[dict[str, Any]] = field(default_factory=list)


def contrast_table(cfg: SweepConfig, summary: Summary) -> str:
    """Paired contrasts (rows) by model (columns)."""
    pairs = [p for p in CONTRASTS if any((c.a, c.b) == p for cs in summary.contrasts.values() for c in cs)]
    if not pairs:
        return ""
    head = ["Contrast"] + [m.label for m in cfg.models]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a, b in pairs:
        vals = []
        for m in cfg.models:
            c = next((c for c in summary.contrasts.get(m.label, []) if (c.a, c.b) == (a, b)), None)
            vals.append("—" if c is None else f"{c.diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]")
        lines.append(f"| {a} − {b} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def curve_table(cfg: SweepConfig, summary: Summary) -> str:
    """RD and RD+SD by RD size, with the synthetic data's worth in real images."""
    lc = cfg.learning_curve
    if lc is None or not summary.curve:
        return ""
    cell = {(r.regime, r.n_real): r for r in summary.curve}
    pct = round(cfg.ci * 100)
    lines = [f"| real images | RD | RD+SD (+{cfg.total - cfg.n_real} synthetic) | SD worth (real images, {pct}% interval) |",
             "|---|---|---|---|"]
    for n, w in zip(lc.sizes, summary.worth):
        a, b = cell[("RD", n)], cell[("RD+SD", n)]
        cens = {"above": " (RD+SD above the whole RD curve: at least this)",
                "below": " (RD+SD below RD at the smallest size: at most this)"}.get(w.censored or "", "")
        lines.append(f"| {n} | {a.mean:.3f} [{a.ci_low:.3f}, {a.ci_high:.3f}] | {b.mean:.3f} [{b.ci_low:.3f}, {b.ci_high:.3f}] "
                     f"| {w.worth:+.0f} [{w.ci_low:+.0f}, {w.ci_high:+.0f}]{cens}; {w.censored_share:.0%} of resamples censored |")
    return "\n".join(lines)


def leakage_lines(plan_info: dict[str, Any]) -> list[str]:
    """One line per dataset: what the synthetic inputs were built from and what the check found."""
    out = []
    for name, info in plan_info.items():
        syn = (info.get("provenance") or {}).get("synthetic")
        sp = info.get("splits") or {}
        roles = sp.get("split_file", {}).get("roles")
        role_txt = ", ".join(f"{r} {len(v)}" for r, v in roles.items()) if roles else "no split file"
        used = f"test {len(sp.get('test', []))}, val {len(sp.get('val', []))}"
        line = f"- **{name}**: split {role_txt}; used {used}, RD drawn from train by subset seeds {list(sp.get('rd_subsets', {}))}."
        if syn:
            inputs = "; ".join(f"{w}: {r.get('split', '?')} {r.get('n_images', len(r.get('stems', [])))} images"
                               for w, r in flatten(syn["inputs"]))
            if syn["allow_overlap"]:
                line += (" **--allow-overlap: the leakage check was OFF (ablation)**"
                         + (f"; it would have refused: {'; '.join(syn['overlaps'])}" if syn["overlaps"] else "; nothing overlapped"))
            else:
                line += f" Synthetic inputs checked against {syn['checked_against']}: no overlap."
            line += f" Synthetic inputs learned from: {inputs or 'nothing recorded'}."
        out.append(line)
    return out


def curve_png(cfg: SweepConfig, summary: Summary) -> bytes | None:
    """The learning curve: RD and RD+SD against the number of real images (log axis), intervals shaded."""
    if not summary.curve:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.0), dpi=120)
    for reg in ("RD", "RD+SD"):
        pts = sorted((r.n_real, r.mean, r.ci_low, r.ci_high) for r in summary.curve if r.regime == reg)
        n, y, lo, hi = (np.array(v) for v in zip(*pts))
        ax.plot(n, y, "o-", label=reg if reg == "RD" else f"RD+SD (+{cfg.total - cfg.n_real} synthetic)")
        ax.fill_between(n, lo, hi, alpha=0.2)
    ax.set_xscale("log")
    ax.set_xticks(sorted({r.n_real for r in summary.curve}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("real training images")
    m = summary.curve[0]
    ax.set_ylabel(f"{m.model} {METRIC_LABEL[m.metric]} (real test set)")
    ax.set_title(f"{cfg.name}: learning curve, {round(cfg.ci * 100)}% intervals")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


