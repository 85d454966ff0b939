"""Demo step of mask synthesis (paper Sec. 4.1): shape bank, adhesive and uniform masks, calibration, realism report.

Reads the demo's annotated Chula subset (``annotate/dataset``), its split (``split/splits.json``)
and the train split's statistics (``stats/stats.json``), and writes into ``masks/``: the clean shape
bank (cut from the train split's images only) and a page of its exemplars, dataset folders of
synthetic masks at the real images' size and density (the paper's adhesive setting, the same with
seeds per area, uniform, and the placement calibrated on the train split by a small Ray Tune
search and scored on the val split, ``params.json``, which the generate step then uses), and the
comparison with the real masks (Markdown table, JSON, Fig. 4-like figure).
"""

from __future__ import annotations

from typing import Any

from rbcray.demo import DemoContext
from rbcray.errors import RbcrayError

#: masks of each placement the demo synthesizes
DEMO_MASKS = 16
DEMO_SEED = 0


#: calibration in the demo: a small Ray Tune search on the train split of the demo's images
DEMO_TRIALS, DEMO_TRIAL_MASKS, DEMO_EVAL_MASKS = 8, 6, 16


def _calibrate(ctx: DemoContext, real, bank, base, d) -> dict[str, Any]:
    """``rbcray calibrate`` in small: fit placement on the demo's train split, score it on its val
    split, write ``params.json``; returns its content."""
    from rbcray.data.dataset import Dataset
    from rbcray.data.demo_steps import splits_json
    from rbcray.data.provenance import provenance_record
    from rbcray.data.splits import load_splits
    from rbcray.distributed.calibrate import tune_search
    from rbcray.io import write_json
    from rbcray.synth.calibrate import calibration_bank, config_for, params_record, real_arrangement, score

    ds = Dataset.open(real)
    sp = load_splits(splits_json(ctx))
    train, val = list(sp.stems("train")), list(sp.stems("val"))
    params, best, n = tune_search(calibration_bank(bank, seed=DEMO_SEED), base.to_dict(), real_arrangement(ds, train),
                                  trials=DEMO_TRIALS, n_masks=DEMO_TRIAL_MASKS, seed=DEMO_SEED, work_dir=d / "calibrate.tune",
                                  verbose=0)
    cfg = config_for(base, params)
    fit = score(bank, cfg, real_arrangement(ds, train), DEMO_SEED + 1, DEMO_EVAL_MASKS)
    held = score(bank, cfg, real_arrangement(ds, val), DEMO_SEED + 1, DEMO_EVAL_MASKS)
    held["role"] = "val"
    rec = params_record(cfg, params, fit, held, provenance_record(ds.name, train, root=str(ds.root), splits=sp, role="train"),
                        provenance_record(ds.name, val, root=str(ds.root), splits=sp, role="val"),
                        {"algorithm": "ray.tune BasicVariantGenerator (random search)", "trials": n,
                         "masks_per_trial": DEMO_TRIAL_MASKS, "eval_masks": DEMO_EVAL_MASKS, "seed": DEMO_SEED,
                         "best_search_objective": best["objective"]}, bank.sha256)
    write_json(d / "params.json", rec)
    ctx.log(f"calibrated placement on {len(train)} train images ({n} trials): mean KS {fit['objective']:.3f} on them, "
            f"{held['objective']:.3f} on {len(val)} held-out val images")
    return rec


def masks_step(ctx: DemoContext) -> dict[str, Any]:
    from rbcray.data.demo_steps import annotated_dir, splits_json, stats_json
    from rbcray.data.splits import load_splits
    from rbcray.io import atomic_write_bytes, read_json, write_json
    from rbcray.synth.compare import compare, figure, to_markdown
    from rbcray.synth.config import SynthConfig, area_scaled_n_init, resolve_config
    from rbcray.synth.shapes import ShapeBank, build_shape_bank
    from rbcray.synth.writer import write_masks

    real, stats_path = annotated_dir(ctx), stats_json(ctx)
    if not (real / "dataset.json").exists() or not stats_path.exists() or not splits_json(ctx).exists():
        raise RbcrayError(f"{ctx.out}: the masks step needs the annotate, split and stats steps' outputs; run them first")
    d = ctx.stage_dir("masks")
    meta = build_shape_bank(real, d / "shapes.parquet", min_area=20, splits=load_splits(splits_json(ctx)), role="train")
    bank = ShapeBank.load(d / "shapes.parquet")
    from rbcray.synth.shape_stats import exemplar_page

    exemplar_page(bank, d / "bank_exemplars.png")
    f = meta["filter"]
    ctx.log(f"shape bank: {f['kept']} clean cells of {f['seen']}; dropped " + ", ".join(f"{k} {v}" for k, v in f["dropped"].items()))
    stats = read_json(stats_path)
    # the paper's Eq. 3 parameters, the same with the paper's density of uniform seeds and a kernel
    # "low" (not zero) inside its disc (docs/masks.md: what brings adhesive masks closer to real
    # ones on Chula), and the uniform baseline
    base = resolve_config(stats, where=str(stats_path))
    variants = {
        "adhesive": {"placement": "adhesive"},
        "adhesive_seeded": {"placement": "adhesive", "n_init": area_scaled_n_init(base.width, base.height), "kernel_inner": 0.25},
        "uniform": {"placement": "uniform"},
    }
    outs = {}
    for name, ov in variants.items():
        cfg = resolve_config(stats, where=str(stats_path), **ov)
        outs[name] = d / name
        write_masks(outs[name], bank, cfg, DEMO_SEED, DEMO_MASKS, provenance={"stats": str(stats_path)},
                    stats_provenance=stats.get("provenance"))
    params = _calibrate(ctx, real, bank, base, d)
    outs["calibrated"] = d / "calibrated"
    write_masks(outs["calibrated"], bank, SynthConfig.from_dict(params["config"]), DEMO_SEED, DEMO_MASKS,
                provenance={"stats": str(stats_path), "params": str(d / "params.json")},
                stats_provenance=stats.get("provenance"), params_provenance=params["provenance"])
    res = compare(real, list(outs.values()))
    write_json(d / "compare.json", res)
    md = to_markdown(res)
    atomic_write_bytes(d / "compare.md", md.encode())
    ctx.log(md)
    figure(res, d / "fig4.png")
    ks = ", ".join(f"{r['label']} {r['mean_ks_spatial']:.3f}" for r in res["synthetic"])
    return {
        "shapes": f"{d / 'shapes.parquet'} ({meta['n_shapes']} cells of {meta['n_images']} train-split images)",
        "masks": ", ".join(str(p) for p in outs.values()),
        "figure": str(d / "fig4.png"),
        "bank exemplars": str(d / "bank_exemplars.png"),
        "calibrated placement": f"{d / 'params.json'} (mean KS on held-out val images "
                                f"{params['objective']['held_out']['objective']:.3f}, on the fitted train images "
                                f"{params['objective']['fit']['objective']:.3f})",
        "mean KS D to real (arrangement)": ks,
    }
