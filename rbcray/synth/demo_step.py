"""Demo step of mask synthesis (paper Sec. 4.1): shape bank, adhesive and uniform masks, realism report.

Reads the demo's annotated Chula subset (``annotate/dataset``), its split (``split/splits.json``)
and the train split's statistics (``stats/stats.json``), and writes into ``masks/``: the shape
bank (cut from the train split's images only), a dataset folder of adhesive
and one of uniform synthetic masks at the real images' size and density, and the comparison with
the real masks (Markdown table, JSON, Fig. 4-like figure).
"""

from __future__ import annotations

from typing import Any

from rbcray.demo import DemoContext
from rbcray.errors import RbcrayError

#: masks of each placement the demo synthesizes
DEMO_MASKS = 16
DEMO_SEED = 0


def masks_step(ctx: DemoContext) -> dict[str, Any]:
    from rbcray.data.demo_steps import annotated_dir, splits_json, stats_json
    from rbcray.data.splits import load_splits
    from rbcray.io import atomic_write_bytes, read_json, write_json
    from rbcray.synth.compare import compare, figure, to_markdown
    from rbcray.synth.config import area_scaled_n_init, resolve_config
    from rbcray.synth.shapes import ShapeBank, build_shape_bank
    from rbcray.synth.writer import write_masks

    real, stats_path = annotated_dir(ctx), stats_json(ctx)
    if not (real / "dataset.json").exists() or not stats_path.exists() or not splits_json(ctx).exists():
        raise RbcrayError(f"{ctx.out}: the masks step needs the annotate, split and stats steps' outputs; run them first")
    d = ctx.stage_dir("masks")
    meta = build_shape_bank(real, d / "shapes.parquet", min_area=20, splits=load_splits(splits_json(ctx)), role="train")
    bank = ShapeBank.load(d / "shapes.parquet")
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
        "mean KS D to real (arrangement)": ks,
    }
