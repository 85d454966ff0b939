"""Demo step of the evaluation stage: a demo-scale Table 2 sweep (Bailo et al. Sec. 5).

Runs ``rbcray/configs/sweep-demo.yaml`` on Ray Tune with the demo's own data: the Chula subset
annotated by the ``annotate`` step (derived masks), the split file of the ``split`` step (RD from
its train role, the test set its test role) and the samples written by the ``generate`` step,
whose generator, bank and statistics learned from the train role only (the sweep checks their
provenance and refuses otherwise), then prints the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rbcray.config import from_dict, to_dict
from rbcray.errors import DataError

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sweep-demo.yaml"


def demo_synthetic(ctx: Any) -> Path:
    """Where the generate step left its Parquet shards (issue 5), or a clear error."""
    res = ctx.results.get("generate", {}) if hasattr(ctx, "results") else {}
    cands = [Path(str(res[k])) for k in ("shards", "parquet", "out") if k in res]
    cands += [ctx.out / "generate" / "shards", ctx.out / "generate"]
    for c in cands:
        if (c / "manifest.json").is_file() or (c / "dataset.json").is_file():
            return c
    raise DataError(
        f"no synthetic samples for the evaluation: expected the generate step's shards (with manifest.json) at "
        f"{ctx.out / 'generate' / 'shards'}; run 'rbcray demo' from the start or 'rbcray demo --only generate' first"
    )


def evaluate_step(ctx: Any) -> dict[str, Any]:
    """Demo-scale sweep: 3 models x 5 regimes on Chula + a detector on BCCD, one seed."""
    from rbcray.distributed.sweep import run_sweep
    from rbcray.evaluate.config import SweepConfig, load_sweep

    d = ctx.stage_dir("evaluate")
    base = to_dict(load_sweep(DEMO_CONFIG))
    real = ctx.out / "annotate" / "dataset"  # rbcray.data.demo_steps.annotated_dir(ctx)
    if not (real / "dataset.json").is_file():
        raise DataError(f"{real}: the annotate step's dataset is missing; run 'rbcray demo' from the start")
    syn = demo_synthetic(ctx)
    from rbcray.data.demo_steps import splits_json

    splits = splits_json(ctx)
    if not splits.is_file():
        raise DataError(f"{splits}: the split step's file is missing; run 'rbcray demo' from the start")
    for ds in base["datasets"]:
        if ds["name"] == "chula":
            ds["real"], ds["synthetic"], ds["splits"] = str(real), str(syn), str(splits)
            ds["n_test"] = None  # the whole test role
    base["storage"] = str(d / "tune")
    if ctx.data_dir is not None:
        base["data_dir"] = str(ctx.data_dir)
    cfg = from_dict(SweepConfig, base, where=str(DEMO_CONFIG))
    paths = run_sweep(cfg, str(d), log=ctx.log)
    table = Path(paths["table.md"]).read_text()
    ctx.log(table.split("\n## How")[0])
    ctx.log("\n".join(line for line in table.split("## Splits and leakage")[-1].splitlines() if line.startswith("- **")))
    return {k: paths[k] for k in ("table.md", "table.csv", "table.png")} | {"trials": str(len(cfg.trials()))}
