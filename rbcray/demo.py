"""``rbcray demo``: the whole pipeline at demo scale, on local Ray, local files, public data, CPU.

Each pipeline stage contributes one step, a function ``step(ctx) -> dict[str, str]`` that writes
into its own subfolder of the demo's output folder and returns what to show (name -> path or
figure). Steps are listed in :data:`STEPS` by import path so that a stage's code is imported only
when its step runs. A step finds the outputs of earlier steps on disk, in their standard
subfolders (``ctx.out / "annotate"`` ...), so ``--only`` can re-run one step on earlier outputs.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rbcray.errors import RbcrayError

#: (step name, "module:function"), in pipeline order.
STEPS: tuple[tuple[str, str], ...] = (
    ("annotate", "rbcray.data.demo_steps:annotate_step"),
    # right after annotate: everything that learns from real data uses the train split only
    ("split", "rbcray.data.demo_steps:split_step"),
    ("stats", "rbcray.data.demo_steps:stats_step"),
    ("masks", "rbcray.synth.demo_step:masks_step"),
    ("train", "rbcray.train.demo_step:train_step"),
    # one rare class: the pseudo-labeller and UNIT normal -> target, used by generate's --morphology
    ("morphology", "rbcray.train.demo_morphology:morphology_step"),
    ("generate", "rbcray.generate.demo_step:generate_step"),
    # keep last: it evaluates the data every earlier step produced
    ("evaluate", "rbcray.evaluate.demo_step:evaluate_step"),
)


@dataclass
class DemoContext:
    """What every demo step can read and add to."""

    out: Path
    data_dir: Path | None = None
    #: outputs of earlier steps, by step name (e.g. ctx.results["annotate"]["dataset"])
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: Callable[[str], None] = print

    def stage_dir(self, name: str) -> Path:
        """A fresh subfolder of the demo output for one step."""
        d = self.out / name
        if d.exists():
            shutil.rmtree(d)
        return d


def _load(spec: str) -> Callable[[DemoContext], dict[str, Any]]:
    mod, fn = spec.split(":")
    return getattr(importlib.import_module(mod), fn)


def run_demo(out: str | Path, data_dir: str | Path | None = None, only: list[str] | None = None) -> DemoContext:
    """Run the demo steps in order (or only the named ones, when their inputs exist)."""
    ctx = DemoContext(out=Path(out).resolve(), data_dir=Path(data_dir) if data_dir else None)
    names = [n for n, _ in STEPS]
    if only:
        unknown = [s for s in only if s not in names]
        if unknown:
            raise RbcrayError(f"unknown demo step(s) {unknown}; steps: {', '.join(names)}")
    if ctx.out.exists() and not ctx.out.is_dir():
        raise RbcrayError(f"{ctx.out}: output path exists and is not a folder")
    try:
        ctx.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RbcrayError(f"{ctx.out}: cannot create the output folder ({e.strerror or e})") from None
    t_all = time.perf_counter()
    for name, spec in STEPS:
        if only and name not in only:
            continue
        ctx.log(f"\n=== demo step: {name} ===")
        t0 = time.perf_counter()
        res = _load(spec)(ctx)
        ctx.results[name] = res
        ctx.log(f"--- {name} done in {time.perf_counter() - t0:.1f} s")
        for k, v in res.items():
            ctx.log(f"    {k}: {v}")
        sys.stdout.flush()
    ctx.log(f"\nDemo finished in {time.perf_counter() - t_all:.1f} s; outputs under {ctx.out}")
    for name in ctx.results:
        ctx.log(f"  {name:<10} {ctx.out / name}")
    return ctx
