"""``rbcray shapes`` / ``rbcray masks`` / ``rbcray compare``: mask synthesis from the command line.

Thin front-ends over :mod:`rbcray.synth` (paper Sec. 4.1): build the shape bank of a dataset
folder, synthesize a dataset folder of masks, and compare real and synthetic spatial statistics.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rbcray.cli.data_cmds import add_split_args
from rbcray.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("shapes", help="build the shape bank (Parquet) of a dataset folder's whole cells")
    p.add_argument("dataset", metavar="DATASET_DIR", help="dataset folder with instances/ (e.g. from 'rbcray annotate')")
    p.add_argument("--out", required=True, metavar="FILE.parquet", help="shape bank to write")
    p.add_argument("--min-area", type=int, default=20, help="drop cells smaller than this many pixels (default 20)")
    p.add_argument("--min-solidity", type=float, default=0.9,
                   help="drop irregular cells (area / convex hull area below this; default 0.9, 0 keeps all)")
    p.add_argument("--max-roundness", type=float, default=18.0,
                   help="drop elongated or ragged cells (perimeter^2 / area above this; a disc is 12.6; default 18)")
    p.add_argument("--keep-touching", action="store_true", help="keep cells that touch another (default: isolated cells only)")
    p.add_argument("--any-size", action="store_true", help="keep cells of any size (default: 0.4-2.5x the median area)")
    add_split_args(p, "cut shapes from")
    p.set_defaults(func=cmd_shapes)

    p = sub.add_parser("masks", help="synthesize instance + colour-coded masks into a dataset folder")
    p.add_argument("--shapes", required=True, metavar="FILE", help="shape bank from 'rbcray shapes' (path or s3:// URI)")
    p.add_argument("--stats", metavar="FILE", help="statistics JSON from 'rbcray stats' (cell count and size)")
    p.add_argument("--num", type=int, required=True, metavar="N", help="number of masks")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="run seed; mask i uses (S, i) (default 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="dataset folder to write")
    p.add_argument("--start", type=int, default=0, metavar="I", help="first sample index (default 0)")
    p.add_argument("--width", type=int, help="canvas width (default: the stats' image width)")
    p.add_argument("--height", type=int, help="canvas height (default: the stats' image height)")
    p.add_argument("--cells-mean", type=float, metavar="M", help="mean cell count (default: stats, scaled by canvas area)")
    p.add_argument("--cells-std", type=float, metavar="S", help="cell count std (default: stats, scaled by canvas area)")
    p.add_argument("--cell-size", type=float, metavar="PX", help="mean cell size in px (default: stats)")
    p.add_argument("--placement", choices=("adhesive", "uniform"), help="Eq. 3 or uniform (default adhesive)")
    p.add_argument("--colors", type=int, metavar="K", help="palette colours (default 8)")
    p.add_argument("--n-init", type=int, metavar="N", help="uniform centres before Eq. 3 takes over (default 20)")
    p.add_argument("--kernel-inside", choices=("reverted", "constant"),
                   help="Eq. 3 kernel within cell_size of its centre: 1 - G ('reverted', default) or --kernel-inner ('constant')")
    p.add_argument("--kernel-inner", type=float, metavar="V", help="with --kernel-inside constant: the kernel's value there (default 0)")
    p.add_argument("--contact-prob", type=float, metavar="P", help="share of cells that may press against others (default 0)")
    p.add_argument("--contact-overlap", type=float, metavar="F", help="how deep: overlap at most this fraction of a cell's area (default 0)")
    p.add_argument("--max-tries", type=int, metavar="T", help="placement tries per cell (default 1000)")
    p.add_argument("--other-cells", metavar="SPEC", help="white cells and platelets: 'stats' (the real per-image rates of "
                   "--stats), 'off' (default) or CATEGORY:MEAN[:STD],... per image, e.g. 2:0.3:0.6,3:2:1.6")
    p.add_argument("--config", metavar="FILE", help="JSON/YAML with any SynthConfig fields (flags override it)")
    p.add_argument("--params", metavar="params.json", help="calibrated placement from 'rbcray calibrate' (--config and flags override it)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_masks)

    p = sub.add_parser("compare", help="spatial statistics of real vs synthetic masks, with KS distances and a figure")
    p.add_argument("real", metavar="REAL_DIR", help="dataset folder of real masks")
    p.add_argument("synth", nargs="+", metavar="SYNTH_DIR", help="dataset folder(s) of synthetic masks (e.g. adhesive and uniform)")
    p.add_argument("--json", metavar="FILE", help="write the comparison as JSON")
    p.add_argument("--figure", metavar="FILE.png", help="write a figure like the paper's Fig. 4")
    p.set_defaults(func=cmd_compare)


def cmd_shapes(args: argparse.Namespace) -> int:
    from rbcray.data.provenance import load_selection
    from rbcray.synth.shapes import build_shape_bank

    if args.min_area < 1:
        raise ConfigError(f"--min-area {args.min_area} must be >= 1")
    splits, role = load_selection(args.splits, args.split)
    meta = build_shape_bank(args.dataset, args.out, min_area=args.min_area, min_solidity=args.min_solidity,
                            isolated=not args.keep_touching, max_roundness=args.max_roundness,
                            size_range=None if args.any_size else (0.4, 2.5), splits=splits, role=role)
    cats = ", ".join(f"category {c}: {n}" for c, n in meta["per_category"].items())
    print(f"{args.out}: {meta['n_shapes']} clean cells from {meta['n_images']} images (split {meta['provenance']['split']}; "
          f"{cats}); mean size {meta['mean_size']:.1f} px")
    f = meta["filter"]
    print(f"filter: {f['seen']} cells seen, dropped " + ", ".join(f"{k} {v}" for k, v in f["dropped"].items()) + f"; kept {f['kept']}")
    if meta.get("per_morphology"):  # the 'morphology' column: each RBC's class (docs/morphology.md)
        print("morphology: " + ", ".join(f"{k} {v}" for k, v in meta["per_morphology"].items() if v))
    return 0


def _config_file_keys(path: str) -> dict:
    """The keys given in a SynthConfig file (validated), without the defaults of the others."""
    from rbcray.config import load_config
    from rbcray.synth.config import SynthConfig

    load_config(SynthConfig, path)  # validates keys, types and ranges, naming the file
    import json

    text = Path(path).read_text()
    if Path(path).suffix.lower() in (".yaml", ".yml"):
        import yaml

        return dict(yaml.safe_load(text) or {})
    return dict(json.loads(text))


def cmd_masks(args: argparse.Namespace) -> int:
    from rbcray.io import read_json
    from rbcray.synth.config import resolve_config
    from rbcray.synth.shapes import ShapeBank
    from rbcray.synth.writer import write_masks

    if args.num < 1:
        raise ConfigError(f"--num {args.num} must be >= 1")
    if args.start < 0 or args.seed < 0:
        raise ConfigError("--seed and --start must be >= 0")
    given: dict = {}
    params_prov = None
    if args.params:
        from rbcray.synth.calibrate import load_params

        given.update(load_params(args.params))
        params_prov = read_json(args.params).get("provenance")  # the fitted images (held-out ones only scored it)
    given.update(_config_file_keys(args.config) if args.config else {})
    flags = {"width": args.width, "height": args.height, "cells_mean": args.cells_mean, "cells_std": args.cells_std,
             "cell_size": args.cell_size, "placement": args.placement, "colors": args.colors, "n_init": args.n_init,
             "kernel_inside": args.kernel_inside, "kernel_inner": args.kernel_inner, "max_tries": args.max_tries,
             "contact_prob": args.contact_prob, "contact_overlap": args.contact_overlap}
    if args.kernel_inner is not None and args.kernel_inside is None:
        flags["kernel_inside"] = "constant"  # a value inside the disc is the constant reading
    given.update({k: v for k, v in flags.items() if v is not None})  # flags override the file
    stats = read_json(args.stats) if args.stats else None
    if args.other_cells is not None:
        given["other_cells"] = args.other_cells  # 'stats' is resolved against the stats (area-scaled)
    cfg = resolve_config(stats, where=str(args.stats), **given)
    bank = ShapeBank.load(args.shapes)
    print(f"synthesizing {args.num} {cfg.placement} masks {cfg.width}x{cfg.height}: n ~ Norm({cfg.cells_mean:.1f}, "
          f"{cfg.cells_std:.1f}), cell size {cfg.cell_size:.1f} px, {cfg.colors} colours, {len(bank)} shapes", flush=True)
    if cfg.other_cells:
        from rbcray.synth.others import OTHER_NAMES, count_law

        print("  plus per mask: " + ", ".join(f"{OTHER_NAMES[c]} ~ {count_law(m, s)}" for c, m, s in cfg.other_cells), flush=True)

    def progress(k: int, n: int) -> None:
        if k == n or k % max(1, n // 10) == 0:
            print(f"  {k}/{n}", flush=True)

    res = write_masks(args.out, bank, cfg, args.seed, args.num, start=args.start, overwrite=args.overwrite,
                      provenance={"stats": str(args.stats) if args.stats else None,
                                  "params": str(args.params) if args.params else None}, progress=progress,
                      stats_provenance=stats.get("provenance") if isinstance(stats, dict) else None,
                      params_provenance=params_prov)
    print(f"{args.out}: {res['n_masks']} masks, {res['cells_mean']:.1f} ± {res['cells_std']:.1f} cells"
          + (f", {res['n_unplaced']} cells could not be placed" if res["n_unplaced"] else ""))
    if res["n_unplaced"] > 0.01 * res["n_requested"]:
        print(f"warning: {100 * res['n_unplaced'] / res['n_requested']:.1f} % of the requested cells did not fit (the densest "
              "masks are truncated; n_unplaced per mask is in dataset.json)", file=sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from rbcray.io import write_json
    from rbcray.synth.compare import check_comparable, compare, figure, to_markdown

    if args.figure and Path(args.figure).suffix.lower() != ".png":  # before any output is written
        raise ConfigError(f"--figure {args.figure}: the figure is written as PNG; name it *.png")
    res = compare(args.real, args.synth)
    for w in check_comparable(res):
        print(f"warning: {w}", file=sys.stderr)
    print(to_markdown(res), end="")
    if args.json:
        write_json(args.json, res)
        print(f"wrote {args.json}")
    if args.figure:
        figure(res, args.figure)
        print(f"wrote {args.figure}")
    return 0
