"""``rbcray calibrate``: fit the mask placement parameters to a real set (Ray Tune), write params.json."""

from __future__ import annotations

import argparse

from rbcray.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit mask placement (Eq. 3, contact, counts) to real masks by simulation (Ray Tune)")
    p.add_argument("real", metavar="REAL_DIR", help="dataset folder of real (derived) masks, e.g. from 'rbcray annotate'")
    p.add_argument("--shapes", required=True, metavar="FILE", help="shape bank from 'rbcray shapes' (built on the same split)")
    p.add_argument("--out", required=True, metavar="params.json", help="parameters file to write")
    p.add_argument("--splits", metavar="FILE", help="split file from 'rbcray split' (default: fit on the whole folder)")
    p.add_argument("--split", metavar="ROLE", help="the role to fit on (train)")
    p.add_argument("--held-out", default="val", metavar="ROLE", help="role the fitted parameters are scored on (default val)")
    p.add_argument("--trials", type=int, default=32, metavar="N", help="parameter sets tried (default 32)")
    p.add_argument("--masks", type=int, default=24, metavar="N", help="synthetic masks per trial (default 24)")
    p.add_argument("--eval-masks", type=int, default=100, metavar="N",
                   help="masks the best set is re-scored with, on fresh seeds (default 100)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="search and synthesis seed (default 0)")
    p.add_argument("--concurrency", type=int, default=2, metavar="N", help="trials at once, one CPU each (default 2)")
    p.add_argument("--work", metavar="DIR", help="Tune's folder (default OUT.tune); an unfinished search there is resumed")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rbcray.data.dataset import Dataset
    from rbcray.data.provenance import provenance_record
    from rbcray.data.splits import load_splits, select
    from rbcray.data.stats import dataset_stats
    from rbcray.distributed.calibrate import tune_search
    from rbcray.io import write_json
    from rbcray.synth.calibrate import (
        STATS,
        calibration_bank,
        config_for,
        params_record,
        real_arrangement,
        score,
    )
    from rbcray.synth.config import resolve_config
    from rbcray.synth.shapes import ShapeBank

    for k in ("trials", "masks", "eval_masks", "concurrency"):
        if getattr(args, k) < 1:
            raise ConfigError(f"--{k.replace('_', '-')} {getattr(args, k)} must be >= 1")
    if args.seed < 0:
        raise ConfigError(f"--seed {args.seed} must be >= 0")
    ds = Dataset.open(args.real)
    splits = load_splits(args.splits) if args.splits else None
    stems = select(ds.stems, splits, args.split, where=str(args.real))
    if not stems:
        raise ConfigError(f"{args.real}: no images to fit on")
    bank = ShapeBank.load(args.shapes)
    chosen = set(stems)
    fit_ds = Dataset(ds.root, {**ds.meta, "samples": [r for r in ds.samples if r["stem"] in chosen]})
    base = resolve_config(dataset_stats(fit_ds, with_color=False), where=str(args.real))
    print(f"calibrating on {len(stems)} image(s) of {ds.name} ({args.split or 'all'}): {base.width}x{base.height}, "
          f"{base.cells_mean:.1f} ± {base.cells_std:.1f} cells of {base.cell_size:.1f} px; {args.trials} trials x {args.masks} masks",
          flush=True)
    real = real_arrangement(ds, stems)
    work = Path(args.work) if args.work else Path(str(args.out) + ".tune")
    params, best, n_done = tune_search(calibration_bank(bank, seed=args.seed), base.to_dict(), real, trials=args.trials, n_masks=args.masks,
                                       seed=args.seed, work_dir=work, concurrency=args.concurrency)
    cfg = config_for(base, params)
    fresh = args.seed + 1_000_003  # other masks than the search saw
    fit = score(bank, cfg, real, fresh, args.eval_masks)
    held = held_prov = None
    if splits is not None and args.held_out:
        ho = [s for s in splits.stems(args.held_out) if s in set(ds.stems)]
        if set(ho) & chosen:
            raise ConfigError(f"--held-out {args.held_out}: overlaps the fitted role {args.split}")
        if ho:
            held = score(bank, cfg, real_arrangement(ds, ho), fresh, args.eval_masks)
            held["role"] = args.held_out
            held_prov = provenance_record(ds.name, ho, root=str(ds.root), splits=splits, role=args.held_out)
    rec = params_record(
        cfg, params, fit, held, provenance_record(ds.name, stems, root=str(ds.root), splits=splits, role=args.split),
        held_prov, {"algorithm": "ray.tune BasicVariantGenerator (random search)", "trials": n_done, "masks_per_trial": args.masks,
                    "eval_masks": args.eval_masks, "seed": args.seed, "best_search_objective": best["objective"]},
        bank.sha256,
    )
    write_json(args.out, rec)
    line = lambda r: f"{r['objective']:.3f} (" + ", ".join(f"{k} {r['ks'][k]:.3f}" for k in STATS) + ")"  # noqa: E731
    print(f"{args.out}: best of {n_done} trials: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()))
    print(f"  mean KS on the fitted images: {line(fit)}")
    if held:
        print(f"  mean KS on held-out {args.held_out} images: {line(held)}")
    return 0
