"""Test helper: fault hooks for the Ray stages (passed as ``fault_hook=``; never read from the environment)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def kill_once(where: tuple, marker: str | Path) -> Callable[..., None]:
    """A hook that kills the calling process (``os._exit(1)``, as a crash would) the first time it
    is called with arguments equal to ``where``, e.g. ``("mask", 1)`` or ``(rank, epoch)``; the file
    ``marker`` records that it happened, so a restarted worker carries on.

    The hook is a closure, so Ray pickles it by value into workers that cannot import this module.
    """
    marker = str(marker)
    where = tuple(where)

    def hook(*args) -> None:
        import os

        if tuple(args) == where and not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write(f"killed at {args}\n")
            os._exit(1)

    return hook


#: a driver process that runs generation with a kill_once hook (the process dies as a crash would)
_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[4])
from faults import kill_once
from rbcray.config import from_dict
from rbcray.generate.config import GenerateConfig
from rbcray.generate.engine import prepare, run_local
cfg = from_dict(GenerateConfig, json.loads(sys.argv[1]))
run_local(prepare(cfg, log=lambda m: None), log=lambda m: None, fault_hook=kill_once(tuple(json.loads(sys.argv[2])), sys.argv[3]))
"""


def generate_killed(cfg: dict, where: tuple, marker: str | Path, timeout: float = 300) -> int:
    """Run :func:`rbcray.generate.engine.run_local` on ``cfg`` (a GenerateConfig dict) in a child
    process whose writer dies at ``where`` (e.g. ``("write", 1)``); returns its exit status."""
    import json
    import os
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(cfg), json.dumps(list(where)), str(marker),
                           str(Path(__file__).resolve().parent)], env=env, timeout=timeout, capture_output=True, text=True)
    if proc.returncode != 1 or not os.path.exists(marker):
        raise AssertionError(f"the child was not killed at {where} (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return proc.returncode
