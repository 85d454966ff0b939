"""Demo step of the evaluation stage: a demo-scale Table 2 sweep (Bailo et al. Sec. 5).

Runs ``rbcray/configs/sweep-demo.yaml`` on Ray Tune with the demo's own data: the Chula subset
annotated by the ``annotate`` step (derived masks), the split file of the ``split`` step (RD from
its train role, the test set its test role) and the samples written by the ``generate`` step,
whose generator, bank and statistics learned from the train role only (the sweep checks their
provenance and refuses otherwise), then prints the table.

Its realism report compares both generator families -- the pix2pixHD shards and the few
unet-wgangp samples of ``generate/unet-shards`` (``realism.compare``, keyed by the family each
manifest names) -- and real vs real, on the test role's images, with an encoder trained on the
train role inside the evaluation; ``report.json`` holds ``realism: {"pix2pixhd": ...,
"unet-wgangp": ..., "real_vs_real": ...}``.
The FCN-8s and Faster R-CNN also train RD+SD on the unet-wgangp samples (dataset
``chula-unet-wgangp``: the same real and test images), so the realism report ends with one
downstream row per family (:mod:`rbcray.evaluate.family_rows`).
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
        if (c / "_manifest.json").is_file() or (c / "dataset.json").is_file():
            return c
    raise DataError(
        f"no synthetic samples for the evaluation: expected the generate step's shards (with _manifest.json) at "
        f"{ctx.out / 'generate' / 'shards'}; run 'rbcray demo' from the start or 'rbcray demo --only generate' first"
    )


#: models that also train RD+SD on the second family's samples (one downstream row each)
FAMILY_MODELS = ("FCN-8s", "Faster R-CNN")


def add_family_rows(datasets: list[dict[str, Any]], models: list[dict[str, Any]], source: Path,
                    family: str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The Chula dataset again with ``source`` as its synthetic data, and RD+SD of
    :data:`FAMILY_MODELS` on it: the downstream rows per family (rbcray.evaluate.family_rows)."""
    name = family or source.name
    chula = next(d for d in datasets if d["name"] == "chula")
    extra = [{**m, "label": f"{m['label']} ({name})", "dataset": f"chula-{name}", "regimes": ["RD+SD"]}
             for m in models if m["label"] in FAMILY_MODELS]
    return [*datasets, {**chula, "name": f"chula-{name}", "synthetic": str(source)}], [*models, *extra]


def demo_morphology_section(ctx: Any) -> dict[str, Any] | None:
    """Gupta et al.'s evaluation at demo scale on the morphology step's classifier and UNIT
    (real vs real + synthetic target cells, unfiltered and at t in {0.5, 0.9}); None without them."""
    from rbcray.train.demo_morphology import CLF_EPOCHS, morphology_dirs

    dirs = morphology_dirs(ctx)
    if not ((dirs["classifier"] / "model.json").is_file() and (dirs["unit"] / "unit.json").is_file()):
        ctx.log(f"morphology: no classifier / UNIT at {ctx.out / 'morphology'}; no morphology section")
        return None
    return {"dataset": "chula", "classifier": str(dirs["classifier"]), "units": [str(dirs["unit"])],
            "thresholds": [0.5, 0.9], "train": {"epochs": CLF_EPOCHS // 2}, "n_boot": 200}


def demo_sweep(ctx: Any, storage_dir: Path) -> Any:
    """The demo's sweep config, filled in with the demo's own data (see the module docstring)."""
    from rbcray.evaluate.config import SweepConfig, load_sweep

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
    from rbcray.evaluate.realism import source_family

    compare = [syn] + [p for p in [ctx.out / "generate" / "unet-shards"] if (p / "_manifest.json").is_file()]
    if len(compare) == 1:
        ctx.log(f"realism: no second family's samples at {ctx.out / 'generate' / 'unet-shards'}; comparing pix2pixHD only")
    base["realism"] = {**base.get("realism", {}), "dataset": "chula",
                       "compare": {source_family(str(p)) or p.name: str(p) for p in compare}}
    if len(compare) > 1:
        base["datasets"], base["models"] = add_family_rows(base["datasets"], base["models"], compare[1], source_family(str(compare[1])))
    base["morphology"] = demo_morphology_section(ctx)
    base["storage"] = str(storage_dir)
    if ctx.data_dir is not None:
        base["data_dir"] = str(ctx.data_dir)
    return from_dict(SweepConfig, base, where=str(DEMO_CONFIG))


def evaluate_step(ctx: Any) -> dict[str, Any]:
    """Demo-scale sweep: 3 models x 5 regimes on Chula + a detector on BCCD, one seed, and the
    realism comparison of both generator families."""
    from rbcray.distributed.sweep import run_sweep

    d = ctx.stage_dir("evaluate")
    cfg = demo_sweep(ctx, d / "tune")
    paths = run_sweep(cfg, str(d), log=ctx.log)
    table = Path(paths["table.md"]).read_text()
    ctx.log(table.split("\n## How")[0])
    ctx.log("\n".join(line for line in table.split("## Splits and leakage")[-1].splitlines() if line.startswith("- **")))
    out = {k: paths[k] for k in ("table.md", "table.csv", "table.png")} | {"trials": str(len(cfg.trials()))}
    if "morphology.md" in paths:
        ctx.log(Path(paths["morphology.md"]).read_text())
        out["morphology.md"] = paths["morphology.md"]
    if "realism.md" in paths:
        ctx.log(Path(paths["realism.md"]).read_text())
        out["realism.md"] = paths["realism.md"]
    return out
