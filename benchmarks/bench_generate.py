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

4. CPU per sample outside the model (issue 12), on the paper's setting (1920x1200, 669 cells of
   46 px): mask synthesis, the two mask PNGs, the image PNG (a real Chula smear upscaled to
   1920x1200), the Parquet write; with today's encoder (``rbcray.io.encode_png`` level 1) and the
   new one (``rbcray.generate.pngenc``) in the same run; and COCO RLE of every cell, full-frame
   (``rbcray.data.formats.instances_to_coco``) vs on the cell's box strip (``rbcray.generate.coco``).
5. Micro-batches through the model: the generator stage at ``--batch-size`` vs 1 on this CPU.

Ends with: ``e2e_samples_s=<float> generator_only_samples_s=<float> e2e_over_generator=<float>
batch_speedup=<float> cpu_ms_per_sample=<float> cpu_ms_per_sample_old=<float> coco_rle_speedup=<float>``
(``--only-cpu``: the last four only).
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


def make_inputs(tmp: Path, checkpoint: str | None, log, demo_model: bool = True) -> dict[str, str]:
    src = open_source("chula-rbc-12")
    ds = annotate_source(src, tmp / "annotated", config_for_source(src.name), limit=6)
    write_json(tmp / "stats.json", dataset_stats(Dataset.open(ds)))
    build_shape_bank(ds, tmp / "shapes.parquet")
    out = {"shapes": str(tmp / "shapes.parquet"), "stats": str(tmp / "stats.json")}
    if checkpoint:
        out["checkpoint"] = checkpoint
    elif demo_model:
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
    out.setdefault("checkpoint", out["tiny"])
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


def cpu_per_sample(inputs: dict[str, str], samples: int = 3) -> dict[str, float]:
    """Milliseconds of CPU per 1920x1200, 669-cell sample outside the model (see the docstring)."""
    import cv2

    from rbcray.data.formats import instances_to_coco
    from rbcray.data.sources import open_source
    from rbcray.generate import shards as S
    from rbcray.generate.coco import sample_annotations
    from rbcray.generate.pngenc import encode_png_fast
    from rbcray.io import encode_png, read_image
    from rbcray.synth.config import SynthConfig
    from rbcray.synth.engine import synthesize
    from rbcray.synth.shapes import ShapeBank

    stats = json.loads(Path(inputs["stats"]).read_text())
    from rbcray.synth.config import resolve_config

    cfg = SynthConfig.from_dict({**resolve_config(stats).to_dict(), "width": 1920, "height": 1200, "cells_mean": 669.0,
                                 "cells_std": 0.0, "cell_size": 46.0})
    bank = ShapeBank.load(inputs["shapes"])
    src = open_source("chula-rbc-12")
    smear = cv2.resize(read_image(src.images[0].path), (1920, 1200), interpolation=cv2.INTER_CUBIC)
    t = {"synth": 0.0, "masks_old": 0.0, "masks_new": 0.0, "image_old": 0.0, "image_new": 0.0, "parquet": 0.0,
         "rle_full": 0.0, "rle_box": 0.0}
    cells = 0
    for i in range(samples):
        a = time.perf_counter()
        s = synthesize(bank, cfg, 0, i)
        col = s.color_mask()
        t["synth"] += time.perf_counter() - a
        a = time.perf_counter()
        encode_png(s.instances, 1), encode_png(col, 1)
        t["masks_old"] += time.perf_counter() - a
        a = time.perf_counter()
        inst_png, col_png = encode_png_fast(s.instances), encode_png_fast(col, mask=True)
        t["masks_new"] += time.perf_counter() - a
        a = time.perf_counter()
        encode_png(smear, 1)
        t["image_old"] += time.perf_counter() - a
        a = time.perf_counter()
        img_png = encode_png_fast(smear)
        t["image_new"] += time.perf_counter() - a
        row = {"sample_id": i, "seed": 0, "image": img_png, "instance_mask": inst_png, "color_mask": col_png, "width": 1920,
               "height": 1200, "n_cells": s.n_cells, "boxes": s.box_records(), "styles": [0] * s.n_cells,
               "quality": None, "attempts": 1}
        a = time.perf_counter()
        S.table_bytes(S.shard_table([row], {"config": {}}))
        t["parquet"] += time.perf_counter() - a
        cats = {b["instance_id"]: b["class"] for b in row["boxes"]}
        a = time.perf_counter()
        instances_to_coco(s.instances, i + 1, 1, cats)
        t["rle_full"] += time.perf_counter() - a
        a = time.perf_counter()
        sample_annotations(s.instances, i, row["boxes"])
        t["rle_box"] += time.perf_counter() - a
        cells += s.n_cells
    ms = {k: v / samples * 1000 for k, v in t.items()}
    ms["old"] = ms["synth"] + ms["masks_old"] + ms["image_old"] + ms["parquet"]
    ms["new"] = ms["synth"] + ms["masks_new"] + ms["image_new"] + ms["parquet"]
    ms["cells"] = cells / samples
    return ms


def batch_speedup(inputs: dict[str, str], synth: dict, batch: int, threads: int, n: int) -> tuple[float, float]:
    """Samples/s of the generator stage with micro-batches of ``batch`` and of 1 (same masks)."""
    import torch

    torch.set_num_threads(threads)
    masker = ShardMasker(inputs["shapes"], synth, 0)
    payload = masker(0, n)
    rates = []
    for b in (batch, 1):
        tr = ShardTranslator(inputs["checkpoint"], None, b, threads=threads)
        tr(payload)  # warm-up
        t = time.perf_counter()
        tr(payload)
        rates.append(n / (time.perf_counter() - t))
    return rates[0], rates[1]


def gpu_rate(inputs: dict[str, str], synth: dict, batch: int, n: int) -> tuple[float, float]:
    """On CUDA (bf16, channels_last): images/s of the generator stage at 1920x1200 and the fraction
    of its wall time the model's forward passes take (the GPU's busy fraction, from synchronised
    timings around each micro-batch)."""
    import torch

    paper = {**synth, "width": 1920, "height": 1200, "cells_mean": 669.0, "cells_std": 0.0, "cell_size": 46.0}
    payload = ShardMasker(inputs["shapes"], paper, 0)(0, n)
    tr = ShardTranslator(inputs["checkpoint"], None, batch, device="cuda", threads=max(1, (os.cpu_count() or 2) - 1))
    model = tr.tr
    busy = [0.0]
    run = model._run

    def timed(items):
        torch.cuda.synchronize()
        t = time.perf_counter()
        out = run(items)
        torch.cuda.synchronize()
        busy[0] += time.perf_counter() - t
        return out

    model._run = timed
    tr(payload)  # warm-up (cuDNN autotuning, allocations)
    busy[0] = 0.0
    t = time.perf_counter()
    tr(payload)
    wall = time.perf_counter() - t
    return n / wall, busy[0] / wall


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
    ap.add_argument("--cpu-samples", type=int, default=3, help="1920x1200 samples of the CPU-per-sample measurement")
    ap.add_argument("--batch-samples", type=int, default=8, help="samples of the micro-batch comparison")
    ap.add_argument("--only-cpu", action="store_true",
                    help="only the CPU-per-sample and micro-batch measurements (the latter on the tiny model unless --checkpoint)")
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    threads = args.threads or (1 if cores <= 2 else max(1, cores - 2))
    from rbcray.distributed.runtime import init_ray
    from rbcray.synth.config import resolve_config

    tmp = Path(tempfile.mkdtemp(prefix="bench_generate_"))
    try:
        inputs = make_inputs(tmp, args.checkpoint, print, demo_model=not args.only_cpu)
        stats = json.loads(Path(inputs["stats"]).read_text())
        synth = resolve_config(stats).to_dict()
        print(f"machine: {cores} cores, load {os.getloadavg()[0]:.2f}; generator threads {threads}; "
              f"{synth['width']}x{synth['height']}, ~{synth['cells_mean']:.0f} cells per mask")
        ms = cpu_per_sample(inputs, args.cpu_samples)
        print(f"CPU per 1920x1200 sample ({ms['cells']:.0f} cells), outside the model: mask synthesis {ms['synth']:.0f} ms, "
              f"mask PNGs {ms['masks_old']:.0f} -> {ms['masks_new']:.0f} ms, image PNG {ms['image_old']:.0f} -> "
              f"{ms['image_new']:.0f} ms, Parquet {ms['parquet']:.0f} ms; total {ms['old']:.0f} -> {ms['new']:.0f} ms "
              f"({ms['new'] / ms['old']:.2f} of today's)")
        print(f"COCO RLE of every cell: full frame {ms['rle_full']:.0f} ms, box strip {ms['rle_box']:.0f} ms per sample "
              f"({ms['rle_full'] / ms['rle_box']:.1f}x)")
        fast, one = batch_speedup(inputs, synth, args.batch_size, threads, args.batch_samples)
        print(f"generator stage, micro-batches of {args.batch_size}: {fast:.2f} samples/s; of 1: {one:.2f} samples/s "
              f"({synth['width']}x{synth['height']}, CPU, {threads} thread(s))")
        tail = (f"batch_speedup={fast / one:.3f} cpu_ms_per_sample={ms['new']:.1f} cpu_ms_per_sample_old={ms['old']:.1f} "
                f"coco_rle_speedup={ms['rle_full'] / ms['rle_box']:.1f}")
        import torch

        if torch.cuda.is_available():
            rate, busy = gpu_rate(inputs, synth, args.batch_size, max(16, args.batch_size * 4))
            print(f"GPU ({torch.cuda.get_device_name()}), 1920x1200, bf16, micro-batches of {args.batch_size}: "
                  f"{rate:.1f} images/s, model busy {busy:.0%} of the generator stage's wall time")
            tail += f" gpu_images_s_1920x1200={rate:.1f} gpu_busy={busy:.3f}"
        else:
            print("no CUDA device here: images/s per GPU at 1920x1200 not measured")
        if args.only_cpu:
            print(tail)
            return 0
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
        print(f"e2e_samples_s={e:.3f} generator_only_samples_s={g:.3f} e2e_over_generator={e / g:.3f} {tail}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
