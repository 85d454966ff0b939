"""Mask synthesis speed (issue 3): full-size masks on one core, vs the literal Eq. 3, and on Ray.

    python benchmarks/bench_masks.py [--shapes shapes.parquet] [--masks 30]

1. The fast engine on the paper's setting: 1920x1200 canvas, 669 cells (sigma = 0), cell size 46 px,
   adhesive placement, default config; per mask = ``synthesize`` + the colour-coded mask. Median
   wall time of ``--masks`` masks in this process (one core; OpenCV single-threaded).
2. The literal Eq. 3 (``literal_eq3.py``: the full-resolution map updated and re-sampled per cell)
   on the same setting for ``--literal-cells`` cells; its time per mask at equal work is the
   measured first n_init + 1 cells plus 669 - n_init - 1 times its median time per later cell (a
   map update and sampling cost the same for every cell, whatever the count).
3. Masks per second through a Ray Data actor pool (``rbcray.distributed.masks.MaskActor``) of 1
   and of 2 actors (1 CPU each; the sample ids are ready blocks, so no read task needs a core),
   16 masks per task; the rate is the slope of delivered masks against time once every actor
   has delivered its first block. Pools of 1 and 2 alternate ``--repeats`` times; medians compared.

The shape bank: ``--shapes``, else the whole cells of the first ``--images`` Chula-RBC-12 images
annotated with ``rbcray annotate`` into a temporary folder. Ends with one line:
``mask_ms_median=<float> ratio_vs_literal=<float> actors2_over_actors1=<float> reuse64_ms=<float>
independence_cost_pct=<float> calibrated_ms=<float>`` (the last NaN without ``--params``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

from literal_eq3 import literal_synthesize  # noqa: E402

from rbcray.synth.config import SynthConfig  # noqa: E402
from rbcray.synth.engine import synthesize  # noqa: E402
from rbcray.synth.shapes import ShapeBank, build_shape_bank  # noqa: E402

N_CELLS, CELL, W, H = 669, 46.0, 1920, 1200


def load_or_build_bank(args: argparse.Namespace, tmp: Path) -> str:
    if args.shapes:
        return args.shapes
    from rbcray.data.annotate import annotate_source, config_for_source
    from rbcray.data.sources import open_source

    src = open_source("chula-rbc-12")
    print(f"annotating the first {args.images} Chula-RBC-12 images for the shape bank ...", flush=True)
    out = annotate_source(src, tmp / "chula", config_for_source(src.name), limit=args.images, workers=1)
    build_shape_bank(out, tmp / "shapes.parquet", min_area=20)
    return str(tmp / "shapes.parquet")


def load() -> str:
    try:
        return os.getloadavg().__repr__()
    except OSError:
        return "n/a"


def bench_fast(bank: ShapeBank, cfg: SynthConfig, n: int) -> tuple[float, float, float]:
    for i in range(2):  # warm-up: kernel table, workspace
        synthesize(bank, cfg, 0, 10_000 + i).color_mask()
    wall, cpu, unplaced = [], [], []
    for i in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        s = synthesize(bank, cfg, 0, i)
        s.color_mask()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        unplaced.append(s.n_unplaced)
    return float(np.median(wall)) * 1e3, float(np.median(cpu)) * 1e3, float(np.mean(unplaced))


def bench_pair(bank: ShapeBank, a: SynthConfig, b: SynthConfig, n: int) -> tuple[float, float]:
    """Median CPU ms/mask of two configs, timed alternately (a slow spell of the machine hits both)."""
    for cfg in (a, b):
        synthesize(bank, cfg, 0, 10_000).color_mask()
    ta, tb = [], []
    for i in range(n):
        for cfg, out in ((a, ta), (b, tb)):
            c0 = time.process_time()
            synthesize(bank, cfg, 0, i).color_mask()
            out.append(time.process_time() - c0)
    return float(np.median(ta)) * 1e3, float(np.median(tb)) * 1e3


def bench_ray(shapes: str, cfg: SynthConfig, n: int, actors: int, batch: int = 16) -> float:
    """Masks/s of a pool of ``actors`` in steady state (pool start-up and bank loading excluded)."""
    import ray

    from rbcray.distributed.masks import mask_stage

    # sample ids as ready blocks (no read task competes for the 2 cores), one block per batch
    ids = ray.data.from_numpy([np.arange(i, min(n, i + batch)) for i in range(0, n, batch)]).rename_columns({"data": "sample_id"})
    ds = mask_stage(ids, shapes, cfg.to_dict(), 0, actors=actors, num_cpus=1.0, batch_size=batch, outputs=())
    stamps = []
    # Arrow batches: the driver only counts rows, it does not convert 669 boxes per mask to Python
    for b in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        stamps.append((time.perf_counter(), b.num_rows))
    assert sum(r for _, r in stamps) == n
    # steady state: slope of delivered rows against time, after the first block of each actor
    # (those arrive while the pool is still starting)
    t = np.array([a for a, _ in stamps])
    cum = np.cumsum([r for _, r in stamps])
    return float(np.polyfit(t[actors - 1 :], cum[actors - 1 :], 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", help="shape bank Parquet (default: annotate Chula images)")
    ap.add_argument("--images", type=int, default=60, help="Chula images to annotate for the bank")
    ap.add_argument("--masks", type=int, default=30, help="masks timed on one core")
    ap.add_argument("--literal-cells", type=int, default=50, help="cells placed by the literal reference")
    ap.add_argument("--ray-masks", type=int, default=320, help="masks per actor-pool run")
    ap.add_argument("--repeats", type=int, default=3, help="actor-pool runs per pool size (alternating)")
    ap.add_argument("--params", help="params.json of 'rbcray calibrate': also time the calibrated setting (its own canvas)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        shapes = load_or_build_bank(args, Path(tmp))
        bank = ShapeBank.load(shapes)
        cfg = SynthConfig(width=W, height=H, cells_mean=N_CELLS, cells_std=0, cell_size=CELL, placement="adhesive")
        print(f"shape bank {shapes}: {len(bank)} cells, mean size {bank.mean_size:.1f} px; load average {load()}")

        fast_ms, fast_cpu, unplaced = bench_fast(bank, cfg, args.masks)
        uni_ms, _, uni_unplaced = bench_fast(bank, SynthConfig(**{**cfg.to_dict(), "placement": "uniform"}), max(5, args.masks // 3))
        print(f"fast adhesive, 1920x1200, 669 cells of 46 px: median {fast_ms:.1f} ms/mask wall, {fast_cpu:.1f} ms CPU "
              f"({unplaced:.1f} cells given up per mask); uniform: {uni_ms:.1f} ms ({uni_unplaced:.1f})")

        # every cell its own augmented shape (the default, shapes_per_mask 0) against re-using 64
        # augmented shapes per mask (the former default), CPU time, alternating
        own_ms, reuse_ms = bench_pair(bank, cfg, SynthConfig(**{**cfg.to_dict(), "shapes_per_mask": 64}), args.masks)
        cost = 100.0 * (own_ms - reuse_ms) / own_ms
        print(f"every cell its own shape: {own_ms:.1f} ms CPU/mask; 64 re-used shapes: {reuse_ms:.1f} ms; "
              f"independence costs {cost:.0f} % of the mask time")
        cal_ms = float("nan")
        if args.params:
            from rbcray.synth.calibrate import load_params

            pc = SynthConfig.from_dict(load_params(args.params))
            cal_ms, _, cal_unplaced = bench_fast(bank, pc, args.masks)
            print(f"calibrated setting ({args.params}: {pc.width}x{pc.height}, {pc.cells_mean:.0f} cells of {pc.cell_size:.0f} px, "
                  f"contact {pc.contact_prob:.2f}/{pc.contact_overlap:.2f}, kernel {pc.kernel_inside}): {cal_ms:.1f} ms/mask "
                  f"({cal_unplaced:.1f} cells given up per mask)")

        r = literal_synthesize(bank, cfg, 0, 0, n_cells=args.literal_cells)
        # equal work: the first n_init + 1 cells as measured (uniform start, then the mean of n_init
        # kernels), every later cell at the median cost of one map update + sampling
        cs = r["cell_seconds"]
        per_cell = float(np.median(cs[cfg.n_init + 1 :]))
        literal_ms = (sum(cs[: cfg.n_init + 1]) + per_cell * (N_CELLS - cfg.n_init - 1)) * 1e3
        ratio = literal_ms / fast_ms
        print(f"literal Eq. 3: {per_cell * 1e3:.1f} ms per cell -> {literal_ms / 1e3:.1f} s per 669-cell mask at equal work "
              f"(the paper: 60 s); fast is {ratio:.0f}x faster; load average {load()}")

        from rbcray.distributed.runtime import init_ray

        init_ray(num_cpus=2, object_store_memory=1_000_000_000)
        import ray

        ray.data.DataContext.get_current().enable_progress_bars = False
        for k in (1, 2):
            bench_ray(shapes, cfg, 32 * k, k)  # warm-up (worker processes, imports)
        # pools of 1 and 2 alternate, ``--repeats`` times each, and the medians are compared, so a
        # slow spell of the (shared) machine does not land on one pool size only
        runs: dict[int, list[float]] = {1: [], 2: []}
        for r in range(args.repeats):
            for k in (1, 2):
                runs[k].append(bench_ray(shapes, cfg, args.ray_masks, k))
                print(f"Ray actor pool of {k}, run {r + 1}: {runs[k][-1]:.1f} masks/s; load average {load()}")
        ray.shutdown()
        rate = {k: float(np.median(v)) for k, v in runs.items()}
        print(f"Ray actor pool: 1 actor {rate[1]:.1f} masks/s, 2 actors {rate[2]:.1f} masks/s (medians of {args.repeats})")
        scale = rate[2] / rate[1]
        print(f"mask_ms_median={fast_ms:.2f} ratio_vs_literal={ratio:.1f} actors2_over_actors1={scale:.2f} "
              f"reuse64_ms={reuse_ms:.2f} independence_cost_pct={cost:.1f} calibrated_ms={cal_ms:.2f}")


if __name__ == "__main__":
    main()
