"""CLI for the generation engine: ``rbcray generate``, ``rbcray verify`` and ``rbcray export-coco``."""

from __future__ import annotations

import argparse
import re
import sys

from rbcray.errors import ConfigError, RbcrayError

_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str, flag: str = "--wait-for-resources") -> float:
    """Seconds of '90', '20s', '15m', '2h' (one line naming the flag when malformed)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(f"{flag} {text!r}: use a positive duration such as 90s, 15m or 2h")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def parse_pool(text: str, flag: str) -> tuple[int, int | None]:
    """(MIN, MAX or None) of 'MIN' or 'MIN:MAX'."""
    m = re.fullmatch(r"\s*(\d+)\s*(?::\s*(\d+)\s*)?", str(text))
    if not m:
        raise ConfigError(f"{flag} {text!r}: use MIN or MIN:MAX actors, e.g. 2 or 1:16")
    lo, hi = int(m.group(1)), (int(m.group(2)) if m.group(2) else None)
    if lo < 1 or (hi is not None and hi < lo):
        raise ConfigError(f"{flag} {text!r}: MIN must be at least 1 and MAX at least MIN")
    return lo, hi


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
    p.add_argument("--other-cells", metavar="SPEC", help="white cells and platelets in the masks: 'stats' (the real "
                   "per-image rates of --stats), 'off' (default) or CATEGORY:MEAN[:STD],... (docs/masks.md)")
    p.add_argument("--quality-encoder", help="encoder file of 'rbcray encoder': every sample gets a quality score (mask fidelity)")
    p.add_argument("--min-quality", type=float, help="replace samples below this quality by further candidates (deterministic)")
    p.add_argument("--max-attempts", type=int, help="candidates per sample before the best one is kept (default 16)")
    p.add_argument("--morphology", metavar="CLASS:SHARE[,...]",
                   help="turn that share of each smear's red cells into CLASS with UNIT (e.g. schistocyte:0.1,teardrop:0.05)")
    p.add_argument("--morphology-model", metavar="DIR[,DIR...]", help="UNIT folder(s) of 'rbcray morphology unit', one per class")
    p.add_argument("--morphology-classifier", metavar="DIR",
                   help="morphology classifier ('rbcray morphology train'): keeps a translated cell only if p(CLASS) >= threshold")
    p.add_argument("--morphology-threshold", type=float, help="pseudo-label threshold t (default 0.9 with a classifier)")
    p.add_argument("--morphology-blend-n", type=float, help="exponent n of the cosine blending window (default 2)")
    p.add_argument("--shard-size", type=int, help="samples per shard (default: from --shard-bytes)")
    p.add_argument("--shard-bytes", type=int, default=256 * 2**20, help="target shard size in bytes (default 256 MiB)")
    p.add_argument("--mask-actors", metavar="MIN[:MAX]",
                   help="CPU mask actors; the pool grows to MAX as nodes join (default: sized from the cluster)")
    p.add_argument("--gen-actors", metavar="MIN[:MAX]",
                   help="generator actors; the pool grows to MAX as nodes join (default: one per GPU, else 1)")
    p.add_argument("--gen-gpus", type=float,
                   help="GPUs per generator actor (0.5 packs two on a GPU; 0 = CPU; default: one per GPU present at start)")
    p.add_argument("--gen-cpus", type=float,
                   help="CPUs per generator actor (default: up to 4 beside a GPU); also its PNG encoder threads")
    p.add_argument("--wait-for-resources", default="15m", metavar="DURATION",
                   help="how long to wait for the declared GPUs to join the cluster (e.g. 20s, 15m; default 15m)")
    p.add_argument("--takeover", action="store_true",
                   help="take over the output from a run whose lease heartbeat is stale (it died)")
    p.add_argument("--batch-size", type=int, default=4, help="masks per forward pass of the model (part of the plan)")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS or a local instance)")
    p.add_argument("--local", action="store_true", help="run in this process without Ray")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate a synthetic dataset: masks -> pix2pixHD images -> Parquet shards")
    add_generate_args(p)
    p.set_defaults(func=cmd_generate)
    p = sub.add_parser("verify", help="check a generated output: complete, unique ids, decodable, boxes match masks")
    p.add_argument("out", help="output location of 'rbcray generate'")
    p.add_argument("--deep", action="store_true",
                   help="also re-hash every shard and check every sample (Ray tasks across the cluster)")
    p.add_argument("--address", help="Ray cluster address for --deep (default: $RAY_ADDRESS or a local instance)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("export-coco", help="merge a generated output's per-shard COCO fragments into one COCO file (streaming)")
    p.add_argument("out", help="output location of 'rbcray generate --coco'")
    p.add_argument("--out", dest="dest", required=True, help="the COCO JSON to write (path or s3:// URI)")
    p.set_defaults(func=cmd_export_coco)


def config_from_args(args: argparse.Namespace):
    from rbcray.config import from_dict
    from rbcray.generate.config import GenerateConfig

    keys = ("checkpoint", "shapes", "stats", "out", "num_samples", "seed", "style", "png", "coco", "width", "height",
            "cells_mean", "cells_std", "cell_size", "placement", "n_init", "kernel_inner", "params", "other_cells", "shard_size",
            "shard_bytes", "gen_cpus", "gen_gpus", "batch_size", "address", "takeover", "quality_encoder", "min_quality",
            "max_attempts", "morphology", "morphology_model", "morphology_classifier", "morphology_threshold",
            "morphology_blend_n")
    data = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    for pool in ("mask", "gen"):
        text = getattr(args, f"{pool}_actors")
        if text is not None:
            data[f"{pool}_actors"], data[f"{pool}_actors_max"] = parse_pool(text, f"--{pool}-actors")
    data["wait_for_resources"] = parse_duration(args.wait_for_resources)
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
    m = manifest.get("morphology")
    if m:
        for name, v in m["classes"].items():
            rate = "n/a" if v["acceptance_rate"] is None else f"{v['acceptance_rate']:.3f}"
            p = "" if v["p_mean"] is None else f", p({name}) mean {v['p_mean']:.3f} max {v['p_max']:.3f}"
            print(f"morphology: {name}: {v['accepted']} of {v['requested']} translated cells accepted (rate {rate}, "
                  f"threshold {m['threshold']}){p}", file=sys.stderr)
    print(f"{cfg.out}: {manifest['n_samples']} samples in {manifest['n_shards']} shard(s); manifest written")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from rbcray.generate.verify import verify_output

    log = None if args.quiet else (lambda m: print(m, file=sys.stderr))
    if args.deep:
        from rbcray.distributed.generate import verify_deep

        res = verify_deep(args.out, address=args.address, log=log)
    else:
        res = verify_output(args.out, log=log)
    for p in res["problems"]:
        print(p, file=sys.stderr)
    if res["problems"]:
        raise RbcrayError(f"{args.out}: {len(res['problems'])} problem(s) found; the output is not complete and consistent")
    print(f"{args.out}: OK, {res['n_samples']} samples in {res['n_shards']} shard(s)" + (" (deep)" if args.deep else ""))
    return 0


def cmd_export_coco(args: argparse.Namespace) -> int:
    from rbcray.generate.coco import export_coco

    n = export_coco(args.out, args.dest)
    print(f"{args.dest}: {n['images']} images, {n['annotations']} annotations")
    return 0
