"""Benchmark of the morphology pipeline on real Chula-RBC-12 (docs/morphology.md's figures).

Steps, each through the ``rbcray`` CLI in this process (skipped when its output exists in --work):
annotate (``--limit`` images, or all), split (seed 0), train the morphology classifier on the
train split, evaluate it on the test split (per-class AUC/F1, image-bootstrap intervals), and
train UNIT normal -> ``--target`` for ``--minutes``, scoring translations of val cells with the
classifier beside real normal and real target cells. Run it under the CPU lock on shared hosts::

    flock /tmp/rbcray-cpu.lock python benchmarks/bench_morphology.py --work /tmp/morph [--limit 200]

The last line is ``macro_auc=<f> target_auc=<f> teardrop_auc=<f> schistocyte_auc=<f>
accept09_translated=<f> accept09_real_normal=<f> accept09_real_target=<f> unit_iterations=<n>``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rbcray.cli import main


def run(argv: list[str]) -> None:
    code = main(argv)
    if code != 0:
        raise SystemExit(f"bench_morphology: 'rbcray {' '.join(argv)}' exited with {code}")


def bench(work: Path, limit: int | None, target: str, minutes: float, epochs: int | None, threads: int) -> dict[str, float]:
    work.mkdir(parents=True, exist_ok=True)
    ds, sp, clf, unit = work / "chula", work / "splits.json", work / "clf", work / f"unit-{target}"
    if not (ds / "dataset.json").exists():
        run(["annotate", "chula-rbc-12", "--out", str(ds), "--workers", "2", *(["--limit", str(limit)] if limit else [])])
    if not sp.exists():
        run(["split", str(ds), "--out", str(sp)])
    if not (clf / "model.json").exists():
        run(["morphology", "train", str(ds), "--splits", str(sp), "--split", "train", "--out", str(clf), "--threads", str(threads),
             *(["--epochs", str(epochs)] if epochs else [])])
    res_path = work / "clf_test.json"
    run(["morphology", "eval", str(ds), "--checkpoint", str(clf), "--splits", str(sp), "--json", str(res_path),
         "--markdown", str(work / "clf_test.md"), "--threads", str(threads)])
    res = json.loads(res_path.read_text())
    if not (unit / "unit.json").exists():
        run(["morphology", "unit", str(ds), "--classifier", str(clf), "--splits", str(sp), "--target", target,
             "--out", str(unit), "--minutes", str(minutes), "--threads", str(threads)])
    summ = json.loads((unit / "unit.json").read_text())["summary"]
    at9 = next(r for r in summ["acceptance"] if r["t"] == 0.9)
    by = {r["class"]: r for r in res["classes"]}
    return {
        "macro_auc": res["macro_auc"],
        "target_auc": by["target"]["auc"],
        "teardrop_auc": by["teardrop"]["auc"],
        "schistocyte_auc": by["schistocyte"]["auc"],
        "accept09_translated": at9["translated"],
        "accept09_real_normal": at9["real_normal"],
        "accept09_real_target": at9["real_target"],
        "unit_iterations": summ["iterations"],
    }


def common_args(doc: str, minutes: float) -> argparse.ArgumentParser:
    """The options the morphology benchmarks share: work folder, image limit, class, UNIT budget."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--work", required=True, help="working folder (outputs are reused when present)")
    ap.add_argument("--limit", type=int, help="annotate only the first N Chula images")
    ap.add_argument("--target", default="target", help="rare class for UNIT (default target)")
    ap.add_argument("--minutes", type=float, default=minutes, help=f"UNIT training budget (default {minutes:g})")
    return ap


def cli() -> None:
    ap = common_args(__doc__, 8.0)
    ap.add_argument("--epochs", type=int, help="classifier epochs (default: the config's)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    a = ap.parse_args()
    out = bench(Path(a.work), a.limit, a.target, a.minutes, a.epochs, a.threads)
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in out.items()))


if __name__ == "__main__":
    cli()
