"""The ``rbcray`` command line: thin argparse front-ends over the stage libraries.

Each module listed in :data:`COMMAND_MODULES` defines ``register(subparsers)``, adding its
subcommands with ``set_defaults(func=handler)``; a handler takes the parsed args and returns the
exit code. User errors (:class:`~rbcray.errors.RbcrayError`) are printed as one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from rbcray import __version__
from rbcray.errors import RbcrayError

COMMAND_MODULES: tuple[str, ...] = (
    # one module per stage; each adds its subcommands
    "rbcray.cli.data_cmds",
    "rbcray.cli.synth_cmds",
    "rbcray.cli.calibrate_cmd",
    "rbcray.cli.train_cmds",
    "rbcray.cli.generate_cmds",
    "rbcray.cli.evaluate_cmds",
    "rbcray.cli.demo_cmd",
    "rbcray.cli.morphology_cmds",  # issue 14: red-cell morphology classifier
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rbcray",
        description="Synthetic, fully annotated blood-smear datasets (Bailo et al. 2019) on Ray.",
    )
    parser.add_argument("--version", action="version", version=f"rbcray {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rbcray`` console script."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RbcrayError as e:
        print(f"rbcray {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rbcray {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
