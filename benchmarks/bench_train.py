"""Benchmark: pix2pixHD training throughput, plain loop vs Ray Train (issue 4).

CPU (always): images/s of the same training (256x256 crops, G1 + multi-scale D + E, the paper's
widths ngf = ndf = nef = 16) in
  1. the plain single-process loop (rbcray.train.pix2pixhd.train),
  2. Ray Train with 1 worker (the same CPUs: the overhead of Ray Train itself; target <= 10 %),
  3. Ray Train with 2 workers (DDP over gloo, the CPUs split between them).
Throughput is end to end: images of epochs 2..N over the wall time from the end of epoch 1 to the
end of epoch N, so per-epoch checkpointing, reporting and sample grids count, in every mode.

GPU (``--device cuda``): stage-1 (1024x640, global G) and stage-2 (1920x1200, local enhancer)
images/s at the paper's widths, fp32 vs bf16 autocast, and peak GPU memory; then the CPU part.

Data: ``--data DIR`` (a dataset folder, e.g. from ``rbcray annotate``); by default the first
Chula-RBC-12 images are annotated into a temporary folder.

Ends with one line: ``plain_img_s=<float> raytrain1_img_s=<float> raytrain2_img_s=<float>``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import torch  # noqa: E402

from rbcray.config import replace  # noqa: E402
from rbcray.models.pix2pixhd.model import Pix2PixHDConfig  # noqa: E402
from rbcray.train.pix2pixhd import Pix2PixHDTrainConfig, train  # noqa: E402


def cpu_config(args: argparse.Namespace) -> Pix2PixHDTrainConfig:
    return Pix2PixHDTrainConfig(
        model=Pix2PixHDConfig(ngf=16, ndf=16, nef=16, n_blocks_global=args.blocks, n_local_enhancers=0),
        crop_size=(256, 256), batch_size=1, samples_per_epoch=args.samples, stage1_epochs=args.epochs,
        stage2_epochs=0, vgg_loss=False, device="cpu", grid_samples=2, keep_checkpoints=1, style_clusters=2,
    )


def throughput(history: list[dict]) -> float:
    """Images of epochs 2..N over the wall time between the ends of epoch 1 and N."""
    h = sorted(history, key=lambda m: m["epoch"])
    if len(h) < 2:
        raise SystemExit("need at least 2 epochs (--epochs)")
    return sum(m["images"] for m in h[1:]) / (h[-1]["time"] - h[0]["time"])


def default_dataset(tmp: Path, n: int) -> Path:
    """Annotate the first ``n`` Chula-RBC-12 images with the project's annotator."""
    from rbcray.data.sources import open_source

    try:
        from rbcray.data.annotate import annotate_source, config_for_source
    except ImportError as e:
        raise SystemExit(f"no annotator in this rbcray ({e}); pass --data DIR (a dataset folder with images + masks)") from None

    src = open_source("chula-rbc-12")
    return Path(annotate_source(src, tmp / "chula", config_for_source(src.name), limit=n, workers=1))


def bench_cpu(args: argparse.Namespace, data: Path, tmp: Path) -> dict[str, float]:
    from rbcray.distributed.runtime import init_ray
    from rbcray.distributed.train import train_distributed
    from rbcray.models.pix2pixhd.checkpoint import load_state
    from rbcray.train.pix2pixhd import latest_checkpoint

    cpus = args.cpus
    cfg = cpu_config(args)
    res: dict[str, float] = {}
    torch.set_num_threads(cpus)
    s = train(cfg, data, str(tmp / "plain"), log=lambda m: print("  plain:", m), export=False)
    res["plain_img_s"] = throughput(s["history"])
    print(f"plain loop, {cpus} thread(s): {res['plain_img_s']:.2f} img/s")
    init_ray(num_cpus=cpus, object_store_memory=300_000_000)
    for workers, key in ((1, "raytrain1_img_s"), (2, "raytrain2_img_s")):
        out = str(tmp / f"ray{workers}")
        t0 = time.perf_counter()
        train_distributed(cfg, data, out, workers=workers, cpus_per_worker=cpus / workers, max_failures=0, log=print)
        hist = __import__("json").loads(load_state(latest_checkpoint(out))["history"])
        res[key] = throughput(hist)
        print(f"Ray Train, {workers} worker(s) x {cpus / workers:g} CPU: {res[key]:.2f} img/s "
              f"(whole fit incl. start-up and export {time.perf_counter() - t0:.1f} s)")
    print(f"Ray Train 1-worker overhead vs plain: {100 * (1 - res['raytrain1_img_s'] / res['plain_img_s']):.1f} %")
    return res


def bench_gpu(args: argparse.Namespace, data: Path, device: str = "cuda") -> None:
    """Stage 1 (1024x640) and stage 2 (1920x1200) at the paper's widths, fp32 vs bf16, peak memory.

    ``device="cpu"`` runs the same code without timing meaning (a smoke check of this path).
    """
    cuda = device == "cuda"
    from rbcray.cli.train_cmds import resolve_config
    from rbcray.train.pix2pixhd_data import collate
    from rbcray.train.pix2pixhd_loop import Trainer, open_dataset

    paper = replace(resolve_config("paper"), vgg_loss=args.vgg_weights is not None, vgg_weights=args.vgg_weights,
                    device=device, samples_per_epoch=args.gpu_batch * (args.gpu_steps + 3), batch_size=args.gpu_batch)
    ds = open_dataset(data)
    for stage in (1, 2):
        for bf16 in (False, True):
            cfg = replace(paper, bf16=bf16, stage1_epochs=1 if stage == 1 else 0)
            if stage == 2:
                cfg = replace(cfg, stage1_epochs=1, stage2_epochs=1, freeze_global_epochs=0)
            tr = Trainer(cfg, ds, device=device)
            epoch = 0 if stage == 1 else 1
            tr.prepare_epoch(epoch)
            tr.model.train()
            items = tr.loader(epoch).dataset
            batch = [t.to(device) for t in collate([items[i] for i in range(args.gpu_batch)])]
            sync = torch.cuda.synchronize if cuda else (lambda: None)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            warm = 3 if cuda else 0
            for i in range(args.gpu_steps + warm):
                if i == warm:
                    sync()
                    t0 = time.perf_counter()
                fake, _ = tr.phase_Gmain(*batch)
                tr.phase_Dmain(*batch, fake)
            sync()
            ips = args.gpu_steps * args.gpu_batch / (time.perf_counter() - t0)
            size = "x".join(map(str, batch[0].shape[-1:-3:-1]))
            peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
            print(f"{device} stage {stage} {size} {'bf16' if bf16 and cuda else 'fp32'}: {ips:.2f} img/s, peak memory {peak:.2f} GiB")
            del tr, batch
            if cuda:
                torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="dataset folder (default: annotate the first Chula images)")
    p.add_argument("--images", type=int, default=8, help="Chula images to annotate when --data is not given")
    p.add_argument("--epochs", type=int, default=4, help="epochs per mode (the first is warm-up)")
    p.add_argument("--samples", type=int, default=24, help="256x256 crops per epoch")
    p.add_argument("--blocks", type=int, default=9, help="residual blocks of G1 (the paper: 9)")
    p.add_argument("--cpus", type=int, default=min(2, os.cpu_count() or 1), help="CPUs for every mode")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--gpu-steps", type=int, default=10)
    p.add_argument("--gpu-batch", type=int, default=1)
    p.add_argument("--vgg-weights", help="include the VGG19 loss in the GPU figures")
    p.add_argument("--resolution-check-on-cpu", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rbcray-bench-train-") as d:
        tmp = Path(d)
        data = Path(args.data) if args.data else default_dataset(tmp, args.images)
        if args.resolution_check_on_cpu:  # exercise the GPU path's code on CPU, then stop
            bench_gpu(args, data, device="cpu")
            return 0
        if args.device == "cuda":
            if not torch.cuda.is_available():
                raise SystemExit("--device cuda: no CUDA GPU here")
            bench_gpu(args, data)
        res = bench_cpu(args, data, tmp)
    print(" ".join(f"{k}={v:.3f}" for k, v in res.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
