"""Generation engine throughput (issue 5): end to end vs the generator stage alone, and mask actors.

1. ``generator_only``: the generator stage (``ShardTranslator``: decode masks, pix2pixHD, encode
   PNGs) in one process on masks made beforehand -- the ceiling for the pipeline.
2. ``e2e``: ``rbcray generate`` through the Ray Data pipeline (mask actors -> generator actor ->
   writer tasks -> Parquet shards), same generator, same torch threads, wall time of the run
   (actor start-up and model loading included).
3. Mask actors 1 vs 2 in the pipeline, on the paper's mask setting (1920x1200, 669 cells of 46 px)
   with a tiny generator, to see whether more mask actors help when masks are the heavy part.

Inputs are made from real data: a few annotated Chula images give the statistics and the shape
bank, and a pix2pixHD of the demo's architecture is trained briefly on them (timing does not
depend on how well it is trained). ``--checkpoint`` uses an existing model instead.

On a machine with N cores the generator gets ``--threads`` torch threads in both measurements (1
by default on <= 2 cores: the rest is left to the mask, PNG and writer work that the pipeline
must overlap with it; that overlap is what the ratio measures).

Ends with: ``e2e_samples_s=<float> generator_only_samples_s=<float> e2e_over_generator=<float>``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rbcray.config import from_dict, replace  # noqa: E402
from rbcray.data.annotate import annotate_source, config_for_source  # noqa: E402
from rbcray.data.dataset import Dataset  # noqa: E402
from rbcray.data.sources import open_source  # noqa: E402
from rbcray.data.stats import dataset_stats  # noqa: E402
from rbcray.generate.config import GenerateConfig  # noqa: E402
from rbcray.generate.engine import ShardMasker, ShardTranslator, prepare  # noqa: E402
from rbcray.io import write_json  # noqa: E402
from rbcray.models.pix2pixhd.model import Pix2PixHDConfig  # noqa: E402
from rbcray.synth.shapes import build_shape_bank  # noqa: E402
from rbcray.train.pix2pixhd import Pix2PixHDTrainConfig, train  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "rbcray" / "configs"


def make_inputs(tmp: Path, checkpoint: str | None, log) -> dict[str, str]:
    src = open_source("chula-rbc-12")
    ds = annotate_source(src, tmp / "annotated", config_for_source(src.name), limit=6)
    write_json(tmp / "stats.json", dataset_stats(Dataset.open(ds)))
    build_shape_bank(ds, tmp / "shapes.parquet")
    out = {"shapes": str(tmp / "shapes.parquet"), "stats": str(tmp / "stats.json")}
    if checkpoint:
        out["checkpoint"] = checkpoint
    else:
        from rbcray.config import load_config

        demo = load_config(Pix2PixHDTrainConfig, CONFIGS / "pix2pixhd_demo.yaml")
        cfg = replace(demo, stage1_epochs=1, stage2_epochs=1, freeze_global_epochs=1, samples_per_epoch=16)
        log("training a demo-architecture pix2pixHD briefly (2 epochs) ...")
        train(cfg, ds, str(tmp / "model"), log=lambda m: None)
        out["checkpoint"] = str(tmp / "model")
    tiny = Pix2PixHDTrainConfig(
        model=Pix2PixHDConfig(ngf=4, ndf=4, nef=4, n_down_global=3, n_blocks_global=1, n_blocks_local=1, n_down_E=3),
        crop_size=(64, 64), stage1_epochs=1, stage2_epochs=1, freeze_global_epochs=1, vgg_loss=False,
        samples_per_epoch=4, batch_size=2, style_clusters=3,
    )
    train(tiny, ds, str(tmp / "tiny"), log=lambda m: None)
    out["tiny"] = str(tmp / "tiny")
    return out


def generator_only(inputs: dict[str, str], synth: dict, n: int, shard: int, threads: int, batch: int) -> float:
    """Samples/s of the generator stage alone (masks made beforehand, not timed)."""
    import torch

    torch.set_num_threads(threads)
    masker = ShardMasker(inputs["shapes"], synth, 0)
    payloads = [masker(a, min(a + shard, n)) for a in range(0, n, shard)]
    tr = ShardTranslator(inputs["checkpoint"], None, batch, threads=threads)
    tr(payloads[0])  # warm-up (first-call allocations)
    t = time.perf_counter()
    for p in payloads:
        tr(p)
    return n / (time.perf_counter() - t)


def e2e(inputs: dict[str, str], out: Path, n: int, shard: int, threads: int, batch: int, **extra) -> tuple[float, dict]:
    from rbcray.distributed.generate import run_ray

    shutil.rmtree(out, ignore_errors=True)
    cfg = from_dict(GenerateConfig, {"checkpoint": inputs["checkpoint"], "shapes": inputs["shapes"], "stats": inputs["stats"],
                                     "out": str(out), "num_samples": n, "shard_size": shard, "batch_size": batch,
                                     "gen_cpus": float(threads), "progress": False, **extra})
    t = time.perf_counter()
    m = run_ray(prepare(cfg, log=lambda s: None), log=print)
    return n / (time.perf_counter() - t), m["summary"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=960, help="samples per measurement (640x480)")
    ap.add_argument("--shard-size", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the generator (default 1 on <= 2 cores)")
    ap.add_argument("--checkpoint", help="use this trained model instead of training one briefly")
    ap.add_argument("--mask-samples", type=int, default=24, help="samples per run of the mask-actor comparison")
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    threads = args.threads or (1 if cores <= 2 else max(1, cores - 2))
    from rbcray.distributed.runtime import init_ray
    from rbcray.synth.config import resolve_config

    tmp = Path(tempfile.mkdtemp(prefix="bench_generate_"))
    try:
        inputs = make_inputs(tmp, args.checkpoint, print)
        stats = json.loads(Path(inputs["stats"]).read_text())
        synth = resolve_config(stats).to_dict()
        print(f"machine: {cores} cores, load {os.getloadavg()[0]:.2f}; generator threads {threads}; "
              f"{synth['width']}x{synth['height']}, ~{synth['cells_mean']:.0f} cells per mask")
        g = generator_only(inputs, synth, args.samples, args.shard_size, threads, args.batch_size)
        print(f"generator stage alone: {g:.2f} samples/s")
        init_ray(object_store_memory=1_000_000_000)
        e, summary = e2e(inputs, tmp / "e2e", args.samples, args.shard_size, threads, args.batch_size)
        print(f"end to end (Ray Data pipeline, Parquet shards): {e:.2f} samples/s over the whole run "
              f"(start-up included); steady state {summary['steady_samples_s']:.2f} samples/s "
              f"({summary['steady_samples_s'] / g:.3f} of the generator alone); resources {summary['resources']}")

        paper = {"width": 1920, "height": 1200, "cells_mean": 669.0, "cells_std": 0.0, "cell_size": 46.0}
        tiny = {**inputs, "checkpoint": inputs["tiny"]}
        rates = {}
        for k in (1, 2):
            rates[k], s = e2e(tiny, tmp / f"masks{k}", args.mask_samples, 2, threads, 2, mask_actors=k, **paper)
            busy = s["busy"]
            print(f"1920x1200, 669 cells, tiny generator, {k} mask actor(s): {rates[k]:.2f} samples/s "
                  f"(stage seconds: masks {busy['mask']:.1f}, generator {busy['generate']:.1f}, writer {busy['write']:.1f})")
        print(f"mask actors 2 vs 1: {rates[2] / rates[1]:.2f}x")
        print(f"e2e_samples_s={e:.3f} generator_only_samples_s={g:.3f} e2e_over_generator={e / g:.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
