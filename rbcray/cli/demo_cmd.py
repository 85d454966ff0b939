"""CLI for ``rbcray demo``: every pipeline stage at demo scale on a CPU."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline at demo scale (local Ray, CPU, public data)")
    p.add_argument("--out", default="demo-output", help="output folder, one subfolder per step (default ./demo-output)")
    p.add_argument("--data-dir", help="where the public datasets live (default: RBCRAY_DATA_DIR, ../shared/data, cache)")
    p.add_argument("--only", nargs="+", metavar="STEP", help="run only these steps (their inputs must exist)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from rbcray.demo import run_demo

    run_demo(args.out, data_dir=args.data_dir, only=args.only)
    return 0
