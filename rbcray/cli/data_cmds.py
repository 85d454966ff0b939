"""CLI for the data stage: ``rbcray fetch``, ``rbcray annotate``, ``rbcray split``, ``rbcray stats``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rbcray.errors import RbcrayError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fetch", help="resolve (and download if needed) a public dataset; print its folder")
    p.add_argument("name", help="dataset name: chula-rbc-12 or bccd-txl-pbc")
    p.add_argument("--data-dir", help="folder holding the dataset (or the dataset itself)")
    p.add_argument("--verify", action="store_true", help="check every file's SHA-256 against the registry")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("annotate", help="derive instance masks from smears by classical segmentation")
    p.add_argument("source", help="dataset name (chula-rbc-12, bccd-txl-pbc) or a folder of images")
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--limit", type=int, help="annotate only the first N images")
    p.add_argument("--cell-size", type=float, help="expected cell diameter in pixels (default: per dataset)")
    p.add_argument("--workers", type=int, default=1, help="processes to use (output is identical for any number)")
    p.add_argument("--data-dir", help="where the named dataset lives (default: RBCRAY_DATA_DIR, ../shared/data, cache)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_annotate)

    p = sub.add_parser("split", help="assign every image of a dataset folder to train / val / test (seeded, by image)")
    p.add_argument("dir", help="dataset folder (from rbcray annotate)")
    p.add_argument("--out", required=True, help="split file to write (JSON)")
    p.add_argument("--val", type=float, default=0.15, help="fraction of images for validation (default 0.15)")
    p.add_argument("--test", type=float, default=0.15, help="fraction of images for testing (default 0.15)")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    p.add_argument(
        "--reshuffle", action="store_true", help="ignore a split the source ships (BCCD-TXL's folders) and draw one"
    )
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("stats", help="Table 1 and spatial statistics of a dataset folder")
    p.add_argument("dir", help="dataset folder (from rbcray annotate / rbcray masks)")
    p.add_argument("--json", help="where to write the JSON (default DIR/stats.json)")
    p.add_argument("--markdown", help="where to write the Markdown (default DIR/stats.md)")
    p.add_argument("--no-color", action="store_true", help="skip colour statistics (faster; no image reads)")
    add_split_args(p, "describe")
    p.set_defaults(func=cmd_stats)


def add_split_args(p: argparse.ArgumentParser, verb: str) -> None:
    """``--splits FILE --split ROLE`` of a stage that learns from real data."""
    p.add_argument("--splits", metavar="FILE", help="split file from 'rbcray split' (use with --split)")
    p.add_argument("--split", metavar="ROLE", choices=("train", "val", "test"),
                   help=f"only {verb} the images of this role (train, val or test); without it the whole folder is used "
                        "and the output records split 'all'")


def cmd_fetch(args: argparse.Namespace) -> int:
    from rbcray.data.download import verify_local
    from rbcray.data.registry import resolve_dataset

    folder = resolve_dataset(args.name, args.data_dir)
    if args.verify:
        problems = verify_local(folder, args.name)
        if problems:
            for p in problems[:20]:
                print(p, file=sys.stderr)
            raise RbcrayError(f"{folder}: {len(problems)} file(s) differ from the registry's checksums")
        print(f"verified: every file of {args.name} matches its checksum", file=sys.stderr)
    print(folder)
    return 0


def cmd_annotate(args: argparse.Namespace) -> int:
    from rbcray.data.annotate import annotate_source, config_for_source
    from rbcray.data.sources import open_source

    if args.limit is not None and args.limit <= 0:
        raise RbcrayError(f"--limit {args.limit}: must be a positive number of images")
    if args.workers < 1:
        raise RbcrayError(f"--workers {args.workers}: must be at least 1")
    src = open_source(args.source, args.data_dir)
    overrides = {} if args.cell_size is None else {"cell_size": args.cell_size}
    cfg = config_for_source(src.name, **overrides)
    n = len(src.images) if args.limit is None else min(args.limit, len(src.images))
    print(f"annotating {n} image(s) of {src.name} from {src.root}", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if done == total or done % 25 == 0:
            print(f"  {done}/{total}", file=sys.stderr)

    out = annotate_source(src, args.out, cfg, limit=args.limit, overwrite=args.overwrite, workers=args.workers, progress=progress)
    print(out)
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    from rbcray.data.dataset import Dataset
    from rbcray.data.splits import make_splits, save_splits

    ds = Dataset.open(args.dir)
    given = {s["stem"]: s.get("split") for s in ds}
    sp = make_splits(
        ds.stems, dataset=ds.name, val=args.val, test=args.test, seed=args.seed, given=given, reshuffle=args.reshuffle
    )
    save_splits(sp, args.out)
    counts = ", ".join(f"{r} {len(sp.stems(r))}" for r in ("train", "val", "test"))
    print(f"{ds.name}: {counts} image(s) ({sp.method}); wrote {args.out}", file=sys.stderr)
    print(args.out)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from rbcray.data.dataset import Dataset
    from rbcray.data.provenance import load_selection, select_dataset
    from rbcray.data.stats import dataset_stats, to_markdown
    from rbcray.io import atomic_write_bytes, write_json

    splits, role = load_selection(args.splits, args.split)
    ds, prov = select_dataset(Dataset.open(args.dir), splits, role)
    st = dataset_stats(ds, with_color=not args.no_color, provenance=prov)
    md = to_markdown(st)
    json_path = Path(args.json) if args.json else Path(args.dir) / "stats.json"
    md_path = Path(args.markdown) if args.markdown else Path(args.dir) / "stats.md"
    write_json(json_path, st)
    atomic_write_bytes(md_path, md.encode())
    print(md)
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0
