"""Benchmark of Gupta et al.'s evaluation on real Chula-RBC-12 (docs/morphology.md's AUC table).

Builds (or reuses, in --work) what ``benchmarks/bench_morphology.py`` builds — annotated Chula, the
seed-0 split, the pseudo-labeller, UNIT normal -> ``--target`` — then runs ``rbcray evaluate`` on a
morphology-only sweep: the classifier trained on real vs real + synthetic ``--target`` cells
(unfiltered, and filtered at each t of the grid; t* on val), per-class test AUC with paired
image-bootstrap intervals. Run it under the CPU lock on shared hosts::

    flock /tmp/rbcray-cpu.lock python benchmarks/bench_morphology_aug.py --work /tmp/morph [--epochs 3]

Prints the section (morphology.md) and ends with one line
``auc_real=<f> auc_unfiltered=<f> auc_filtered=<f> t_star=<t> targets=<names>`` (test AUC of the
target class(es), mean over them).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from bench_morphology import bench, common_args, run


def cli() -> None:
    ap = common_args(__doc__, 6.0)
    ap.add_argument("--clf-epochs", type=int, default=4, help="pseudo-labeller epochs (default 4)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of every regime's classifier (default 3)")
    ap.add_argument("--thresholds", default="0.5,0.7,0.8,0.9,0.95", help="grid of t (default 0.5,0.7,0.8,0.9,0.95)")
    ap.add_argument("--n-boot", type=int, default=1000, help="test-image bootstrap replicates (default 1000)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    work = Path(a.work).resolve()
    bench(work, a.limit, a.target, a.minutes, a.clf_epochs, a.threads)
    sweep = {
        "name": "bench-morphology-aug",
        "datasets": [{"name": "chula", "real": str(work / "chula"), "splits": str(work / "splits.json")}],
        "models": [],
        "morphology": {"classifier": str(work / "clf"), "units": [str(work / f"unit-{a.target}")],
                       "thresholds": [float(t) for t in a.thresholds.split(",")], "train": {"epochs": a.epochs},
                       "n_boot": a.n_boot},
    }
    cfg = work / "sweep-morphology.yaml"
    cfg.write_text(yaml.safe_dump(sweep, sort_keys=False))
    out = work / "evaluate-morphology"
    run(["evaluate", "--config", str(cfg), "--out", str(out)])
    md = (out / "morphology.md").read_text()
    print(md, file=sys.stderr)
    print(md.strip().splitlines()[-1])


if __name__ == "__main__":
    cli()
