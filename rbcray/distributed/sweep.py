"""The evaluation sweep on Ray: Ray Data reads synthetic shards, Ray Tune runs one trial per
(model, regime, seed) (Bailo et al. Table 2, issue 6).

The trials are the plain library's :func:`rbcray.evaluate.train.run_trial` inside a Tune
function trainable: resources per trial from the config (``resources`` / per-model
``resources``; a GPU trial sees its GPU through CUDA_VISIBLE_DEVICES), an epoch checkpoint after
every epoch and the trial's test records in its final checkpoint, all under the storage path
(local or ``s3://``). Re-running the same command on the same storage resumes: finished trials
are kept, interrupted or failed ones continue from their last epoch checkpoint.

One trial trains on one device; the paper's models at 960 images need no data parallelism, so
no TorchTrainer is built (with Train v2 one would be built inside this trainable).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray import tune

from rbcray import storage
from rbcray.config import to_dict
from rbcray.errors import ConfigError, RbcrayError
from rbcray.evaluate.config import SweepConfig, sweep_from_dict
from rbcray.evaluate.data import (
    SYNTHETIC_COLUMNS,
    Sample,
    SyntheticSource,
    decode_synthetic_row,
    load_synthetic,
    shard_files,
    storage_errors,
)
from rbcray.evaluate.morphology_aug_report import check_morphology, sweep_morphology, write_morphology_only
from rbcray.evaluate.plan import DataBundle, SweepPlan, load_bundles, plan_sweep
from rbcray.evaluate.realism import realism_markdown, realism_report
from rbcray.evaluate.report import OutputWriter, write_reports
from rbcray.evaluate.train import TrialResult

RESULT_FILE = "trial.json"
STATE_FILE = "state.pt"


# ----------------------------------------------------------------------------- Ray Data reader
def _decode_batch(batch: dict[str, Any], scale: float) -> dict[str, Any]:
    """Ray Data UDF: PNG bytes -> scaled image and instance arrays (ragged across rows)."""
    out: dict[str, list] = {"sample_id": [], "image": [], "instances": []}
    for sid, img, inst in zip(batch["sample_id"], batch["image"], batch["instance_mask"]):
        s = decode_synthetic_row({"sample_id": int(sid), "image": img, "instance_mask": inst}, scale)
        out["sample_id"].append(int(sid))
        out["image"].append(s.image)
        out["instances"].append(s.instances)
    return out


def read_synthetic_ray(src: SyntheticSource, n: int, scale: float) -> list[Sample]:
    """The first ``n`` synthetic samples (lowest ids) of Parquet shards, decoded in parallel by
    Ray Data; a synthetic dataset folder is read directly."""
    if src.kind != "parquet" or n == 0:
        return load_synthetic(src, n, scale)
    import ray
    from ray.data.expressions import col

    cutoff = src.first_ids(n)[-1]
    fs, files = shard_files(src.uri)
    # a few dozen to a few thousand rows: Ray Data's per-operator progress lines are noise here
    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = ray.data.read_parquet(files, filesystem=fs, columns=list(SYNTHETIC_COLUMNS))
    ds = ds.filter(expr=col("sample_id") <= cutoff)
    ds = ds.map_batches(_decode_batch, fn_kwargs={"scale": scale}, batch_size=8, batch_format="numpy", num_cpus=0.5)
    rows = sorted(ds.take_all(), key=lambda r: int(r["sample_id"]))
    return [Sample(f"synthetic-{int(r['sample_id'])}", "synthetic", r["image"], r["instances"]) for r in rows[:n]]


# ----------------------------------------------------------------------------- the trainable
#: A test's fault hook: ``hook(trial_label, epoch)`` is called in the trial's process right after
#: each epoch checkpoint is reported, and may kill it. Only a caller of :func:`run_sweep` can pass
#: one (tests do); nothing reads it from the environment or a config.
FaultHook = Callable[[str, int], None]


def _trainable(config: dict[str, Any], bundles: dict[str, DataBundle], sweep: dict[str, Any],
               fault_hook: FaultHook | None = None) -> None:
    """Tune function trainable: one (model, regime, seed), resumable from epoch checkpoints."""
    import torch

    from rbcray.evaluate.train import run_trial

    # per-epoch "checkpoint created" lines from every trial drown the one line per trial
    for name in ("ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.WARNING)
    cfg = sweep_from_dict(sweep)
    trial = config["trial"]
    m = cfg.model(trial["model"])
    torch.set_num_threads(max(1, int(cfg.resources_of(m).cpu)))
    resume = None
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            if (Path(d) / RESULT_FILE).exists():  # finished before an interruption: report again
                res = json.loads((Path(d) / RESULT_FILE).read_text())
                tune.report({"metric_value": res["value"], "done": True}, checkpoint=ckpt)
                return
            resume = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=True)

    def on_epoch(epoch: int, state: dict[str, Any], loss: float) -> None:
        with tempfile.TemporaryDirectory() as d:
            torch.save(state, Path(d) / STATE_FILE)
            tune.report({"epoch": epoch, "loss": loss}, checkpoint=tune.Checkpoint.from_directory(d))
        if fault_hook is not None:
            fault_hook(trial_label(trial), epoch)

    with tempfile.TemporaryDirectory() as final:

        def on_end(model: torch.nn.Module) -> None:
            if cfg.keep_weights:
                torch.save(model.state_dict(), Path(final) / "model.pt")

        res = run_trial(cfg, trial, bundles[m.dataset], resume=resume, on_epoch=on_epoch, on_end=on_end)
        (Path(final) / RESULT_FILE).write_text(json.dumps(res.to_dict()))
        tune.report(
            {"epoch": m.train.epochs - 1, "loss": res.losses[-1] if res.losses else float("nan"),
             "metric_value": res.value, "done": True},
            checkpoint=tune.Checkpoint.from_directory(final),
        )


def trial_label(t: dict[str, Any]) -> str:
    """``model / regime / n real / subset k / seed s`` of a trial dict."""
    return f"{t['model']} / {t['regime']} / {t.get('n_real', '?')} real / subset {t.get('subset', 0)} / seed {t['seed']}"


def _trial_dirname(trial: Any) -> str:
    t = trial.config["trial"]
    key = f"{t['model']}_{t['regime']}_n{t.get('n_real', 0)}_k{t.get('subset', 0)}_s{t['seed']}"
    safe = "".join(c if c.isalnum() else "-" for c in key)
    return f"{safe}_{trial.trial_id}"


def _check_resume_config(storage_uri: str, cfg: SweepConfig) -> None:
    """Resume only the same sweep: the config is saved beside the Tune experiment."""
    path = storage.join(storage_uri, f"{cfg.name}.sweep.json")
    mine = json.dumps(to_dict(cfg), sort_keys=True)
    if storage.exists(path):
        if storage.read_bytes(path).decode() != mine:
            raise ConfigError(
                f"{storage.join(storage_uri, cfg.name)}: holds a sweep named {cfg.name!r} with a different config; "
                "use another --out / --storage or another name"
            )
        return
    storage.write_bytes(path, mine.encode())


class TrialLog(tune.Callback):
    """One line per finished or failed trial (Tune's own table is turned off)."""

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        t, r = trial.config["trial"], trial.last_result or {}
        v = r.get("metric_value")
        value = f"{v:.4f}" if v is not None else "?"
        sys.stdout.write(f"  trial {trial_label(t)}: {value} ({r.get('time_total_s', 0):.0f} s)\n")
        sys.stdout.flush()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        t = trial.config["trial"]
        sys.stdout.write(f"  trial {trial_label(t)}: FAILED\n")
        sys.stdout.flush()


def finished_results(store: str, cfg: SweepConfig) -> list[TrialResult]:
    """Results of the trials that finished so far in a sweep's Tune storage (local folders)."""
    if storage.is_remote(store):
        raise ConfigError(f"{store}: --partial reads local Tune storage only")
    found: dict[tuple, TrialResult] = {}
    for p in sorted(Path(store).expanduser().glob(f"{cfg.name}/*/checkpoint_*/{RESULT_FILE}")):
        r = TrialResult(**json.loads(p.read_text()))
        found[(r.model, r.regime, r.n_real or cfg.n_real, r.subset, r.seed)] = r
    return list(found.values())


def complete_part(cfg: SweepConfig, results: list[TrialResult]) -> tuple[SweepConfig, str]:
    """The part of ``cfg`` whose cells are complete in ``results`` (every subset and seed), and a
    line saying what is missing."""
    import dataclasses

    have = {(r.model, r.regime, r.n_real or cfg.n_real, r.subset, r.seed) for r in results}

    def done(label: str, regime: str, n: int) -> bool:
        return all((label, regime, n, k, s) in have for k in cfg.rd_subsets for s in cfg.seeds)

    models = []
    for m in cfg.models:
        regimes = tuple(r for r in cfg.model_regimes(m) if done(m.label, r, cfg.n_real))
        if regimes:
            models.append(dataclasses.replace(m, regimes=regimes))
    lc = cfg.learning_curve
    if lc is not None and not all(done(lc.model, r, n) for r in lc.regimes for n in lc.sizes):
        lc = None
    if lc is not None and lc.model not in {m.label for m in models}:
        lc = None
    if not models:
        raise RbcrayError(f"no cell of sweep {cfg.name!r} has finished yet ({len(results)} trial(s) done)")
    n_all = len(cfg.trials())
    left = [f"{m.label} ({', '.join(r for r in cfg.model_regimes(m) if not done(m.label, r, cfg.n_real))})"
            for m in cfg.models if any(not done(m.label, r, cfg.n_real) for r in cfg.model_regimes(m))]
    note = (f"{len(results)} of {n_all} trials had finished; cells still missing: {'; '.join(left) or 'none'}"
            f"{'; learning curve incomplete' if cfg.learning_curve is not None and lc is None else ''}")
    return dataclasses.replace(cfg, models=tuple(models), learning_curve=lc), note


def partial_report(cfg: SweepConfig, out: str, log: Callable[[str], None] = print) -> dict[str, str]:
    """Reports from the trials finished so far (no Ray, nothing trained): every complete cell,
    contrast and (when complete) the learning curve, marked partial in table.md and report.json."""
    plan = plan_sweep(cfg)
    store = cfg.storage or storage.join(out, "tune")
    results = finished_results(store, cfg)
    part, note = complete_part(cfg, results)
    keep = {m.label: set(part.model_regimes(m)) for m in part.models}
    sizes = set(part.learning_curve.sizes) if part.learning_curve else set()
    used = [r for r in results if r.regime in keep.get(r.model, ()) and ((r.n_real or cfg.n_real) == cfg.n_real
            or (part.learning_curve is not None and r.model == part.learning_curve.model and r.n_real in sizes))]
    log(f"partial report: {note}")
    provenance = {name: p.real.provenance for name, p in plan.datasets.items()}
    plan_info = {name: {"splits": p.role_stems(), "provenance": p.provenance} for name, p in plan.datasets.items()}
    return write_reports(OutputWriter(out), part, used, provenance, None, None, plan_info, partial=note)


def run_sweep(
    cfg: SweepConfig,
    out: str,
    *,
    log: Callable[[str], None] = print,
    object_store_memory: int | None = 1_500_000_000,
    fault_hook: FaultHook | None = None,
) -> dict[str, str]:
    """Validate, load data, run every trial on Ray Tune, write the reports under ``out``
    (``fault_hook``: tests only, see :data:`FaultHook`)."""
    t0 = time.perf_counter()
    if not cfg.models:  # a morphology-only sweep: no image models, no trials, no Ray
        writer = OutputWriter(out)
        writer.check_writable()
        morph, morph_md = sweep_morphology(cfg, log=log)
        assert morph is not None and morph_md is not None  # the config requires an enabled section
        return write_morphology_only(writer, cfg, morph, morph_md)
    plan: SweepPlan = plan_sweep(cfg)  # every data check, before Ray starts or anything trains
    check_morphology(cfg)
    writer = OutputWriter(out)
    writer.check_writable()
    store = cfg.storage or storage.join(out, "tune")
    if not storage.is_remote(store):
        store = str(Path(store).expanduser().resolve())
    storage.check_writable(store)
    with storage_errors(store, "use as Tune storage"):
        _check_resume_config(store, cfg)
        fs, store_path = storage.pyarrow_filesystem(store)
    from rbcray.distributed.runtime import init_ray

    # Tune warns whenever short trials checkpoint faster than its experiment snapshots; harmless
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

    init_ray(object_store_memory=object_store_memory)
    bundles = load_bundles(plan, synthetic_loader=read_synthetic_ray)
    for name, b in bundles.items():
        log(f"data {name}: {len(b.train)} real train (pool of {len(b.subsets) or 1} RD subset(s)), {len(b.val)} real val, "
            f"{len(b.test)} real test, {len(b.synthetic)} synthetic; {b.provenance}")
        syn = plan.datasets[name].provenance.get("synthetic")
        if syn and syn["allow_overlap"]:
            log(f"data {name}: --allow-overlap: the leakage check is off (ablation)"
                + (f"; it would refuse: {syn['overlaps'][0]}" if syn["overlaps"] else ""))
    trainable = tune.with_parameters(_trainable, bundles=bundles, sweep=to_dict(cfg), fault_hook=fault_hook)

    def resources(config: dict[str, Any]) -> Any:
        r = cfg.resources_of(cfg.model(config["trial"]["model"]))
        return tune.PlacementGroupFactory([{"CPU": r.cpu, "GPU": r.gpu}])

    trainable = tune.with_resources(trainable, resources)
    exp = storage.join(store, cfg.name)
    exp_path = storage.join(store_path, cfg.name)
    trials = cfg.trials()
    if tune.Tuner.can_restore(exp_path, storage_filesystem=fs):
        log(f"resuming the sweep at {exp}")
        tuner = tune.Tuner.restore(exp_path, trainable, resume_errored=True, storage_filesystem=fs)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(trials)},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=cfg.max_concurrent_trials, trial_dirname_creator=_trial_dirname,
                # a trial process imports torch once and runs trial after trial
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=cfg.name, storage_path=store_path, storage_filesystem=fs, verbose=0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                # a trial whose worker dies (node lost, preempted) restarts from its last epoch
                failure_config=tune.FailureConfig(max_failures=2),
                callbacks=[TrialLog()],
            ),
        )
    log(f"running {len(trials)} trials on Ray Tune (results and checkpoints: {exp})")
    grid = tuner.fit()
    results: list[TrialResult] = []
    failed = []
    for r in grid:
        t = r.config["trial"]
        if r.error is not None or r.checkpoint is None:
            msg = str(r.error).strip().splitlines()[-1] if r.error else "no result"
            failed.append(f"{trial_label(t)}: {msg}")
            continue
        with r.checkpoint.as_directory() as d:
            p = Path(d) / RESULT_FILE
            if not p.exists():
                failed.append(f"{trial_label(t)}: did not finish")
                continue
            results.append(TrialResult(**json.loads(p.read_text())))
    if failed:
        raise RbcrayError(f"{len(failed)} of {len(trials)} trials failed (first: {failed[0]}); "
                          "no table written; run the same command again to resume")
    realism, realism_md = None, None
    rd = cfg.realism_dataset()
    sources = plan.datasets[rd.name].provenance.get("realism") if rd is not None and rd.name in plan.datasets else None
    if sources:
        t_r = time.perf_counter()
        realism = realism_report(cfg, plan.datasets[rd.name], bundles[rd.name], sources, log=log)
        realism_md = realism_markdown(realism)
        log(f"realism report in {time.perf_counter() - t_r:.0f} s")
    morph, morph_md = sweep_morphology(cfg, log=log)  # classifiers trained in this process, one after another
    provenance = {name: b.provenance for name, b in bundles.items()}
    plan_info = {name: {"splits": p.role_stems(), "provenance": p.provenance} for name, p in plan.datasets.items()}
    paths = write_reports(writer, cfg, results, provenance, realism, realism_md, plan_info, morphology=morph, morphology_md=morph_md)
    log(f"sweep done in {time.perf_counter() - t0:.0f} s: {len(results)} trials")
    return paths

