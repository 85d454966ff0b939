"""``rbcray evaluate``: the downstream evaluation sweep (Bailo et al. Table 2) from a YAML config.

    rbcray evaluate --config sweep.yaml --out URI [--check]

writes ``table.md``, ``table.csv``, ``table.png`` (and ``realism.md``, ``results.json``,
``report.json``) under URI, a local folder or ``s3://…``. The config is checked against the data
before Ray starts; ``--check`` stops there.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rbcray.config import replace
from rbcray.errors import ConfigError


def with_splits(cfg: Any, specs: list[str]) -> Any:
    """The config with ``--splits [DATASET=]FILE`` applied to its datasets."""
    names = [d.name for d in cfg.datasets]
    given: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            if len(names) != 1:
                raise ConfigError(f"--splits {spec}: the config has {len(names)} datasets; write DATASET=FILE "
                                  f"(datasets: {', '.join(names)})")
            name, path = names[0], spec
        if name not in names:
            raise ConfigError(f"--splits {spec}: unknown dataset {name!r}; datasets: {', '.join(names)}")
        given[name] = path
    import dataclasses

    return dataclasses.replace(
        cfg, datasets=tuple(dataclasses.replace(d, splits=given.get(d.name, d.splits)) for d in cfg.datasets))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="downstream evaluation sweep on Ray Tune (FCN-8s Dice, Faster R-CNN / DCAN AP; Table 2)",
        description="Train FCN-8s, Faster R-CNN and DCAN on RD / SD / RD+aug / RD+SD / RD+SD+aug with a "
        "Ray Tune trial per (model, regime, seed); write a Table-2-shaped table with bootstrap intervals.",
    )
    p.add_argument("--config", required=True, help="sweep YAML/JSON (see rbcray/configs/sweep-demo.yaml)")
    p.add_argument("--out", required=True, help="output folder or s3:// URI for table.md / table.csv / table.png")
    p.add_argument("--storage", help="Ray Tune results and checkpoints (default: OUT/tune); re-run to resume")
    p.add_argument("--seeds", type=int, nargs="+", help="override the config's seeds")
    p.add_argument("--object-store-gb", type=float, default=1.5,
                   help="object store of a locally started Ray (default 1.5; ignored when joining a cluster)")
    p.add_argument("--splits", nargs="+", metavar="[DATASET=]FILE",
                   help="split file(s) from 'rbcray split' (overrides the config's 'splits:'); a bare FILE needs a "
                   "config with one dataset")
    p.add_argument("--allow-overlap", action="store_true",
                   help="ablations only: run although a synthetic input was built from val/test images (or records "
                   "none); every report says so")
    p.add_argument("--check", action="store_true", help="validate the config against the data and stop")
    p.add_argument("--partial", action="store_true",
                   help="write the reports from the trials finished so far (while or after a sweep runs; "
                   "local storage), marked partial; trains nothing")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rbcray.evaluate.config import load_sweep
    from rbcray.evaluate.plan import plan_sweep

    cfg = load_sweep(args.config)
    cfg = replace(cfg, storage=args.storage, seeds=args.seeds, allow_overlap=True if args.allow_overlap else None)
    if args.splits:
        cfg = with_splits(cfg, args.splits)
    if cfg.allow_overlap:
        print("rbcray evaluate: --allow-overlap: synthetic inputs are not checked against the held-out images "
              "(ablation only; every report says so)", file=sys.stderr)
    if args.check and cfg.morphology is not None:
        from rbcray.evaluate.morphology_aug_report import check_morphology

        line = check_morphology(cfg)
        if line:
            print(line)
    if args.check and not cfg.models:
        print("config OK: a morphology-only sweep")
        return 0
    if args.check:
        plan = plan_sweep(cfg)
        for name, d in plan.datasets.items():
            syn = f", {d.n_synthetic} of {d.synthetic.count} synthetic" if d.synthetic else ""
            print(f"{name}: {len(d.test_idx)} test + {len(d.val_idx)} val + {len(d.train_idx)} train real of "
                  f"{len(d.real)} ({len(d.draws)} RD subset(s)){syn}")
        print(f"config OK: {len(cfg.trials())} trials")
        return 0
    from rbcray import storage
    from rbcray.distributed.sweep import partial_report, run_sweep

    if args.partial and not cfg.models:
        raise ConfigError("--partial: a morphology-only sweep has no trials to report on; run it without --partial")
    if args.partial:
        paths = partial_report(cfg, args.out)
    else:
        paths = run_sweep(cfg, args.out, object_store_memory=int(args.object_store_gb * 1e9))
    print(storage.read_bytes(paths["table.md"]).decode().split("\n## How")[0])
    for name in ("table.md", "table.csv", "table.png", "morphology.md"):
        if name in paths:
            print(f"wrote {paths[name]}")
    return 0
