"""Demo step of mask synthesis (paper Sec. 4.1): shape bank, adhesive and uniform masks, realism report.

Reads the demo's annotated Chula subset (``annotate/dataset``) and its statistics
(``stats/stats.json``), and writes into ``masks/``: the shape bank, a dataset folder of adhesive
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
    from rbcray.io import atomic_write_bytes, read_json, write_json
    from rbcray.synth.compare import compare, figure, to_markdown
    from rbcray.synth.config import area_scaled_n_init, resolve_config
    from rbcray.synth.shapes import ShapeBank, build_shape_bank
    from rbcray.synth.writer import write_masks

    real = ctx.out / "annotate" / "dataset"
    stats_path = ctx.out / "stats" / "stats.json"
    if not (real / "dataset.json").exists() or not stats_path.exists():
        raise RbcrayError(f"{ctx.out}: the masks step needs the annotate and stats steps' outputs; run them first")
    d = ctx.stage_dir("masks")
    meta = build_shape_bank(real, d / "shapes.parquet", min_area=20)
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
        write_masks(outs[name], bank, cfg, DEMO_SEED, DEMO_MASKS, provenance={"stats": str(stats_path)})
    res = compare(real, list(outs.values()))
    write_json(d / "compare.json", res)
    md = to_markdown(res)
    atomic_write_bytes(d / "compare.md", md.encode())
    ctx.log(md)
    figure(res, d / "fig4.png")
    ks = ", ".join(f"{r['label']} {r['mean_ks_spatial']:.3f}" for r in res["synthetic"])
    return {
        "shapes": f"{d / 'shapes.parquet'} ({meta['n_shapes']} cells)",
        "masks": ", ".join(str(p) for p in outs.values()),
        "figure": str(d / "fig4.png"),
        "bank exemplars": str(d / "bank_exemplars.png"),
        "mean KS D to real (arrangement)": ks,
    }
