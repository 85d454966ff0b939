"""Demo step ``train``: pix2pixHD on the train split of the demo's annotated Chula subset.

Trains the packaged ``demo`` config (pix2pixHD's global+local recipe, both stages, 128x128 crops,
a few minutes on a 2-core CPU) with Ray Train (one worker using every local CPU) on the train
role of ``split/splits.json`` only, then renders what the model makes: the last epoch's sample
grid (mask | real | generated), a styles grid (one mask in every style cluster, the paper's
Fig. 6) and held-out (test-split) masks translated with seeded random styles beside their real
images. The run folder ``train/run`` is what ``rbcray generate --checkpoint`` reads.

Then the second generator family, unet-wgangp (its ``demo`` preset, cut to
:data:`UNET_EPOCHS` epochs: about a CPU-minute), on the same train role, in this process without
Ray, into ``train/unet``: the generate step renders a few samples with it for the evaluation's
realism comparison of the two families (not for the downstream table).
"""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

import numpy as np

from rbcray.demo import DemoContext

#: unet-wgangp's demo training: epochs of its ``demo`` preset (128 crops each)
UNET_EPOCHS = 2
#: pix2pixHD crops per epoch in the demo (the ``demo`` preset has 128): with both families the
#: whole demo must fit 15 minutes on 2 cores, with room for a slow day; 80 crops x 45 epochs
DEMO_SAMPLES_PER_EPOCH = 80


def dataset_dir(ctx: DemoContext):
    """Where the annotate step left the annotated Chula subset."""
    return ctx.out / "annotate" / "dataset"


def train_step(ctx: DemoContext) -> dict[str, Any]:
    import ray

    from rbcray.cli.train_cmds import resolve_config
    from rbcray.data.dataset import Dataset
    from rbcray.data.demo_steps import splits_json
    from rbcray.data.splits import load_splits
    from rbcray.distributed.runtime import init_ray
    from rbcray.distributed.train import train_distributed
    from rbcray.io import read_image, write_png
    from rbcray.models.pix2pixhd.checkpoint import load_state
    from rbcray.models.pix2pixhd.inference import Pix2PixHDTranslator
    from rbcray.train.pix2pixhd import latest_checkpoint
    from rbcray.train.pix2pixhd_export import styles_grid, tile

    data = dataset_dir(ctx)
    d = ctx.stage_dir("train")
    run = d / "run"
    from rbcray.config import replace

    cfg = replace(resolve_config("demo"), samples_per_epoch=DEMO_SAMPLES_PER_EPOCH)
    if not ray.is_initialized():
        init_ray(object_store_memory=500_000_000)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    t0 = time.perf_counter()
    splits = load_splits(splits_json(ctx))
    train_distributed(cfg, data, str(run), workers=1, use_gpu=False, cpus_per_worker=cpus, max_failures=1, log=ctx.log,
                      splits=splits, role="train")
    seconds = time.perf_counter() - t0
    state = load_state(latest_checkpoint(str(run)))
    history = json.loads(state["history"])
    last = history[-1]
    grid = d / "samples.png"
    shutil.copyfile(run / "samples" / f"epoch_{last['epoch']:04d}.png", grid)

    ds = Dataset.open(data)
    tr = Pix2PixHDTranslator.load(str(run), device="cpu")
    stems = list(splits.stems("test")[:2])  # masks the model never saw
    masks = [ds.load_instances(s) for s in stems]
    cats = [ds.load_categories(s) for s in stems]
    write_png(d / "styles.png", styles_grid(tr, masks[0], cats[0]))
    fakes = tr.translate(masks, cats, seeds=list(range(len(stems))))
    reals = [read_image(ds.image_path(s)) for s in stems]
    write_png(d / "generated.png", tile([x for r, f in zip(reals, fakes) for x in (r, f)], 2))

    unet = train_unet(ctx, data, splits)

    def mean_rgb(images: list[np.ndarray]) -> list[float]:
        return np.mean([im.reshape(-1, 3).mean(0) for im in images], axis=0).round(1).tolist()

    return {
        "checkpoint": str(run),
        "epochs": last["epoch"],
        "trained_on": f"{len(splits.stems('train'))} train-split images",
        "train_seconds": round(seconds, 1),
        "last_epoch_img_s": round(last["img_s"], 1),
        "last_L1": round(last["L1"], 4),
        "sample_grid": str(grid),
        "styles_grid": str(d / "styles.png"),
        "generated": str(d / "generated.png"),
        "generated_mean_rgb": mean_rgb(fakes),
        "real_mean_rgb": mean_rgb(reals),
        **unet,
    }


def train_unet(ctx: DemoContext, data, splits) -> dict[str, Any]:
    """unet-wgangp at demo scale (see the module docstring) into ``train/unet``."""
    from rbcray.cli.train_cmds import resolve_config
    from rbcray.config import replace
    from rbcray.train.runner import train

    run = ctx.out / "train" / "unet"
    cfg = replace(resolve_config("demo", "unet-wgangp"), epochs=UNET_EPOCHS)
    t0 = time.perf_counter()
    summary = train(cfg, data, str(run), log=ctx.log, splits=splits, role="train")
    last = summary["history"][-1]
    return {"unet_checkpoint": str(run), "unet_epochs": last["epoch"], "unet_train_seconds": round(time.perf_counter() - t0, 1),
            "unet_last_G_L1": round(last.get("G_L1", float("nan")), 4)}
