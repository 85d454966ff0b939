"""Ray Train adapter for UNIT (the library is :mod:`rbcray.train.unit`).

``TorchTrainer`` runs :func:`_worker` on ``workers`` CPU workers (gloo process group, set up by
Ray Train). Every worker builds the same :class:`~rbcray.train.unit.UNITRun` (same initial
weights) and draws its own batches (its rank is part of every round's random stream); after each
backward pass the optimiser's gradients are averaged over the workers (one flat all-reduce per GAN
phase: data parallelism as DDP does it, but for UNIT's two optimisers and two phases), so the
weights stay identical everywhere. The cell crops travel once through the object store.

After every round all workers ``ray.train.report`` the round's metrics; rank 0 attaches a
checkpoint (weights, both optimisers, iteration, seconds, history) that Ray Train copies to
``RunConfig(storage_path=...)``. The run folder is the user's ``--out`` (local or ``s3://``):
re-running the same command resumes from its newest intact checkpoint (a finished run does not
train again), and ``FailureConfig(max_failures)`` restarts a worker group that lost a worker from
the last round. :func:`train_unit_distributed` returns what :func:`~rbcray.train.unit.train_unit`
returns; the caller writes the translator into the run folder with
``save_unit(..., run_folder=True)`` (``unit.json`` last).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from rbcray import storage
from rbcray.config import from_dict, to_dict
from rbcray.data.cells import CellCrops
from rbcray.distributed.train import (
    FaultHook,
    fit,
    quiet_ray_train_reports,
    report_checkpoint,
    run_location,
    say,
)
from rbcray.errors import DataError, RbcrayError
from rbcray.models.unit.networks import UNIT
from rbcray.train.unit import (
    ROUND_PREFIX,
    UNITRun,
    UNITTrainConfig,
    check_domains,
    latest_run_state,
    load_run_state,
    save_run_state,
)


def _mean_gradients(opt: Any) -> None:
    """Average ``opt``'s gradients over the process group (one flat all-reduce)."""
    import torch
    import torch.distributed as dist

    grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    i = 0
    for g in grads:
        g.copy_(flat[i : i + g.numel()].view_as(g))
        i += g.numel()


def _any_worker(flag: bool) -> bool:
    """True on every worker when it is true on any (the time budget's stop decision)."""
    import torch
    import torch.distributed as dist

    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _worker(config: dict[str, Any]) -> None:
    """Training function of every Ray Train worker."""
    import ray
    import ray.train
    import torch

    quiet_ray_train_reports()
    torch.set_num_threads(int(config["threads"]))
    cfg = from_dict(UNITTrainConfig, config["cfg"], where="unit train config")
    normal, rare = ray.get(config["crops"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    multi = world > 1
    run = UNITRun(normal, rare, cfg, rank=rank, sync=_mean_gradients if multi else None, agree=_any_worker if multi else None)
    out = config["out"]
    state, name, bad = None, None, None
    ck = ray.train.get_checkpoint()
    if ck is not None:
        try:
            with ck.as_directory() as d:
                state, name = load_run_state(d), f"{out} (Ray checkpoint)"
        except (DataError, RbcrayError) as e:  # corrupt: fall back to the previous good one below
            say(f"warning: {e}; trying the previous checkpoint")
            bad = ck.path
    if state is None and (found := latest_run_state(out, say, skip=bad)) is not None:
        name, state = found  # a re-run of the same command: Ray's own restore may not apply
    if state is not None:
        run.load_state_dict(state, name=name or out)
        if rank == 0:
            say(f"resuming at iteration {run.iteration}/{cfg.iterations}" if not run.done else f"{out}: already trained ({run.iteration} iterations)")
    while not run.done:
        m = run.run_round()
        if rank == 0:
            losses = f"gen {m['total']:.2f} (recon {m['recon']:.3f}, cycle {m['cycle']:.3f}) dis {m['dis']:.3f}" if "total" in m else ""
            say(f"UNIT iteration {run.iteration}/{cfg.iterations}, {run.seconds:.0f} s {losses}")
        report_checkpoint(rank, m, lambda d: save_run_state(d, run.state_dict()), f"{ROUND_PREFIX}{run.iteration:07d}")
        if config.get("fault_hook") is not None:
            config["fault_hook"](rank, run.iteration)


def train_unit_distributed(
    normal: CellCrops,
    rare: CellCrops,
    cfg: UNITTrainConfig,
    out: str,
    *,
    workers: int = 1,
    cpus_per_worker: float | None = None,
    max_failures: int = 2,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
    fault_hook: FaultHook | None = None,
) -> tuple[UNIT, list[dict[str, float]]]:
    """Train UNIT (A = ``normal``, B = ``rare``) with Ray Train in the run folder ``out``;
    returns (model in eval mode, history) like :func:`~rbcray.train.unit.train_unit`.

    Starts or joins Ray with :func:`~rbcray.distributed.runtime.init_ray` unless it is up.
    ``cpus_per_worker`` defaults to an even share of the cluster's CPUs (torch threads per worker).
    A folder holding a translator trained in process (``unit.json`` but no round checkpoint) is
    refused unless ``overwrite``. ``fault_hook(rank, iteration)``: tests only (see FaultHook).
    """
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from rbcray.distributed.runtime import init_ray

    check_domains(normal, rare, cfg)
    if workers < 1:
        raise RbcrayError(f"--workers {workers}: must be at least 1")
    out = out.rstrip("/") if storage.is_remote(out) else os.path.abspath(out)
    storage.check_writable(out)
    if storage.exists(storage.join(out, "unit.json")) and latest_run_state(out, log) is None and not overwrite:
        raise RbcrayError(f"{out}: holds a UNIT trained without Ray (no round checkpoints); pass --overwrite or use another folder")
    res = init_ray(object_store_memory=1_000_000_000) if not ray.is_initialized() else dict(ray.cluster_resources())
    cpus = cpus_per_worker or max(1, int(res.get("CPU", 1)) // workers)
    storage_path, name, fs = run_location(out)
    run_config = RunConfig(
        name=name,
        storage_path=storage_path,
        storage_filesystem=fs,
        failure_config=FailureConfig(max_failures=max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=2),
        worker_runtime_env={"env_vars": {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}},
    )
    trainer = TorchTrainer(
        _worker,
        train_loop_config={
            "cfg": to_dict(cfg),
            "crops": ray.put((normal, rare)),
            "out": out,
            "threads": max(1, int(cpus)),
            "fault_hook": fault_hook,
        },
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=False, resources_per_worker={"CPU": cpus}),
        run_config=run_config,
    )
    log(f"Ray Train: UNIT on {workers} CPU worker(s), {cpus:g} CPU each; run folder {out}")
    fit(trainer, out, max_failures)
    found = latest_run_state(out, log)
    if found is None:
        raise RbcrayError(f"{out}: Ray Train finished without a UNIT checkpoint")
    run = UNITRun(normal, rare, cfg)
    run.load_state_dict(found[1], name=found[0])
    return run.result()
