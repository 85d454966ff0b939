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
