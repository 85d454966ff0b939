"""CLI for the generation engine: ``rbcray generate`` and ``rbcray verify``."""

from __future__ import annotations

import argparse
import sys

from rbcray.errors import RbcrayError


def add_generate_args(p: argparse.ArgumentParser) -> None:
    """The arguments of ``rbcray generate`` (shared with jobs/generate.py)."""
    p.add_argument("--checkpoint", required=True, help="what 'rbcray train --out' wrote (path or s3:// / gs:// URI)")
    p.add_argument("--shapes", required=True, help="shape bank of 'rbcray shapes' (Parquet)")
    p.add_argument("--stats", required=True, help="JSON of 'rbcray stats'")
    p.add_argument("--num-samples", type=int, required=True, help="samples to generate (ids 0..N-1)")
    p.add_argument("--out", required=True, help="output location (path or s3:// / gs:// URI)")
    p.add_argument("--seed", type=int, default=0, help="run seed S: sample i always uses (S, i)")
    p.add_argument("--style", default="random", help="'random' (seeded per sample) or a style cluster index")
    p.add_argument("--png", action="store_true", help="also write images/, instances/, masks/ PNG trees")
    p.add_argument("--coco", action="store_true", help="also write coco.json")
    p.add_argument("--width", type=int, help="canvas width (default: the real images')")
    p.add_argument("--height", type=int, help="canvas height (default: the real images')")
    p.add_argument("--cells-mean", type=float)
    p.add_argument("--cells-std", type=float)
    p.add_argument("--cell-size", type=float)
    p.add_argument("--placement", choices=("adhesive", "uniform"), default="adhesive")
    p.add_argument("--n-init", type=int, help="uniform seeds before adhesive placement (Eq. 3; default 20)")
    p.add_argument("--kernel-inner", type=float, help="kernel value within cell_size of a placed cell (default 0)")
    p.add_argument("--params", help="calibrated placement (params.json of 'rbcray calibrate'); the flags above win")
    p.add_argument("--quality-encoder", help="encoder file of 'rbcray encoder': every sample gets a quality score (mask fidelity)")
    p.add_argument("--min-quality", type=float, help="replace samples below this quality by further candidates (deterministic)")
    p.add_argument("--max-attempts", type=int, help="candidates per sample before the best one is kept (default 16)")
    p.add_argument("--shard-size", type=int, help="samples per shard (default: from --shard-bytes)")
    p.add_argument("--shard-bytes", type=int, default=256 * 2**20, help="target shard size in bytes (default 256 MiB)")
    p.add_argument("--mask-actors", type=int, help="CPU mask actors (default: sized from the cluster)")
    p.add_argument("--gen-actors", type=int, help="generator actors (default: one per GPU, else 1)")
    p.add_argument("--gen-cpus", type=float,
                   help="CPUs per generator actor (default: up to 4 beside a GPU); also its PNG encoder threads")
    p.add_argument("--batch-size", type=int, default=4, help="masks per generator call")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS or a local instance)")
    p.add_argument("--local", action="store_true", help="run in this process without Ray")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate a synthetic dataset: masks -> pix2pixHD images -> Parquet shards")
    add_generate_args(p)
    p.set_defaults(func=cmd_generate)
    p = sub.add_parser("verify", help="check a generated output: complete, unique ids, decodable, boxes match masks")
    p.add_argument("out", help="output location of 'rbcray generate'")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_verify)


def config_from_args(args: argparse.Namespace):
    from rbcray.config import from_dict
    from rbcray.generate.config import GenerateConfig

    keys = ("checkpoint", "shapes", "stats", "out", "num_samples", "seed", "style", "png", "coco", "width", "height",
            "cells_mean", "cells_std", "cell_size", "placement", "n_init", "kernel_inner", "params", "shard_size", "shard_bytes",
            "mask_actors", "gen_actors", "gen_cpus", "batch_size", "address", "quality_encoder", "min_quality", "max_attempts")
    data = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    data["progress"] = not args.no_progress
    return from_dict(GenerateConfig, data, where="rbcray generate")


def cmd_generate(args: argparse.Namespace) -> int:
    from rbcray.generate.engine import prepare, run_local

    cfg = config_from_args(args)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    plan = prepare(cfg, log)
    if args.local:
        manifest = run_local(plan, log=log)
    else:
        from rbcray.distributed.generate import run_ray

        manifest = run_ray(plan, log=log)
    q = manifest.get("quality")
    if q:
        print(f"quality: mean {q['mean']:.3f}, {q['accepted']} of {q['candidates']} candidates accepted "
              f"(yield {q['yield']:.2f}, threshold {q['min_quality']}; {q['below_min_quality']} kept below it)", file=sys.stderr)
    print(f"{cfg.out}: {manifest['n_samples']} samples in {manifest['n_shards']} shard(s); manifest written")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from rbcray.generate.verify import verify_output

    res = verify_output(args.out, log=None if args.quiet else (lambda m: print(m, file=sys.stderr)))
    for p in res["problems"]:
        print(p, file=sys.stderr)
    if res["problems"]:
        raise RbcrayError(f"{args.out}: {len(res['problems'])} problem(s) found; the output is not complete and consistent")
    print(f"{args.out}: OK, {res['n_samples']} samples in {res['n_shards']} shard(s)")
    return 0
