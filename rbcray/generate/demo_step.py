"""Demo step of the generation engine: a few dozen samples from the demo model, verified.

Uses what earlier steps wrote: the trained pix2pixHD (``train/run``), the shape bank
(``masks/shapes.parquet``) and the statistics (``stats/stats.json``). Writes Parquet shards plus a
PNG tree and per-shard COCO fragments to ``generate/shards`` through the Ray Data pipeline, runs
``rbcray verify`` on them and saves a picture of a few samples (image | colour mask).

A few samples of the second family's model (``train/unet``, unet-wgangp) go to
``generate/unet-shards`` from the same bank, statistics and placement: the evaluation compares
both families' realism with them (the downstream table trains on the pix2pixHD shards only); so
few are written in this process (``run_local``) rather than on Ray.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rbcray.config import from_dict
from rbcray.demo import DemoContext
from rbcray.errors import DataError

DEMO_SAMPLES = 32
DEMO_SHARD = 8
#: unet-wgangp samples: the realism comparison's baseline half of the held-out images, and the
#: synthetic items of the evaluation's RD+SD rows for this family (sweep-demo.yaml: total - n_real)
UNET_SAMPLES = 16
#: white cells and platelets at the train split's per-image rates (rbcray/synth/others.py)
OTHER_CELLS = "stats"


def demo_morphology(ctx: DemoContext) -> dict[str, Any]:
    """``--morphology`` options from the morphology step's classifier and UNIT (none without them)."""
    from rbcray.train.demo_morphology import SHARE, TARGET, THRESHOLD, morphology_dirs

    dirs = morphology_dirs(ctx)
    if not all((p / "model.json").is_file() or (p / "unit.json").is_file() for p in dirs.values()):
        ctx.log(f"generate: no morphology step outputs at {ctx.out / 'morphology'}; no rare cells in the smears")
        return {}
    return {"morphology": f"{TARGET}:{SHARE}", "morphology_model": str(dirs["unit"]),
            "morphology_classifier": str(dirs["classifier"]), "morphology_threshold": THRESHOLD}


def generate_step(ctx: DemoContext) -> dict[str, Any]:
    from rbcray.distributed.generate import run_ray
    from rbcray.generate.config import GenerateConfig
    from rbcray.generate.engine import prepare, run_local
    from rbcray.generate.verify import verify_output
    from rbcray.io import decode_png, write_png

    d = ctx.stage_dir("generate")
    inputs = {"checkpoint": ctx.out / "train" / "run", "shapes": ctx.out / "masks" / "shapes.parquet",
              "stats": ctx.out / "stats" / "stats.json"}
    for name, p in inputs.items():
        if not p.exists():
            raise DataError(f"{p}: the demo's {name} is missing; run 'rbcray demo' from the start")
    out = d / "shards"
    params = ctx.out / "masks" / "params.json"  # the calibrated placement of the masks step
    if params.exists():
        inputs["params"] = params
    cfg = from_dict(GenerateConfig, {**{k: str(v) for k, v in inputs.items()}, "out": str(out), "num_samples": DEMO_SAMPLES,
                                     "seed": 0, "shard_size": DEMO_SHARD, "png": True, "coco": True, "progress": False,
                                     "other_cells": OTHER_CELLS, **demo_morphology(ctx)})
    manifest = run_ray(prepare(cfg, ctx.log), ctx.log)
    res = verify_output(str(out))
    if res["problems"]:
        raise DataError(f"{out}: verify found {len(res['problems'])} problem(s), first: {res['problems'][0]}")
    rows = []
    for sid in range(3):
        name = f"{sid:09d}.png"
        img = decode_png((out / "_png" / "images" / name).read_bytes())
        col = decode_png((out / "_png" / "masks" / name).read_bytes())
        rows.append(np.concatenate([img, col], axis=1))
    write_png(d / "samples.png", np.concatenate(rows, axis=0))
    unet = {}
    if (ctx.out / "train" / "unet").exists():
        uout = d / "unet-shards"
        ucfg = from_dict(GenerateConfig, {**{k: str(v) for k, v in inputs.items()}, "checkpoint": str(ctx.out / "train" / "unet"),
                                          "out": str(uout), "num_samples": UNET_SAMPLES, "seed": 0, "shard_size": UNET_SAMPLES,
                                          "other_cells": OTHER_CELLS, "progress": False})
        um = run_local(prepare(ucfg, ctx.log), log=ctx.log)  # 8 samples: in this process, no actor start-up
        ures = verify_output(str(uout))
        if ures["problems"]:
            raise DataError(f"{uout}: verify found {len(ures['problems'])} problem(s), first: {ures['problems'][0]}")
        unet = {"unet_shards": str(uout), "unet_samples": f"{um['n_samples']} (unet-wgangp), verified"}
    m = manifest.get("morphology") or {"classes": {}}
    morph = {f"morphology {name}": f"{v['accepted']} of {v['requested']} translated cells kept at t = {m['threshold']}"
             for name, v in m["classes"].items()}
    return {
        **morph,
        "shards": str(out),
        "samples": f"{manifest['n_samples']} in {manifest['n_shards']} shards, verified",
        "samples_per_s": f"{manifest['summary']['new_samples'] / max(manifest['summary']['seconds'], 1e-9):.2f}",
        "picture": str(d / "samples.png"),
        **unet,
    }
