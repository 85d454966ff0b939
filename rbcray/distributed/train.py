"""Ray Train v2 adapter for generator training, any family (the libraries are rbcray.train.*).

``TorchTrainer`` runs :func:`_worker` on ``num_workers`` workers (one GPU each when the cluster
has GPUs; NCCL on GPU, gloo on CPU, set up by Ray Train). Each worker builds the same Trainer of
the config's family (:func:`rbcray.models.registry.family_of_config`; e.g.
:class:`~rbcray.train.pix2pixhd_loop.Trainer`), which sees the process group, synchronises its
gradients (DDP for pix2pixHD) and shards the crops with a DistributedSampler. After every epoch all workers
``ray.train.report`` the metrics; rank 0 attaches a checkpoint (G, D, E, optimisers, epoch,
config, dataset statistics) that Ray Train copies to ``RunConfig(storage_path=...)`` — a local
folder or ``s3://`` / ``gs://``. The run's folder is the user's ``--out`` URI: re-running with the
same URI resumes from its latest checkpoint, and ``FailureConfig(max_failures)`` restarts a
worker group that lost a worker from the last checkpoint. When the last epoch is done, rank 0
runs the family's export (pix2pixHD: style clusters) and writes ``OUT/model/``.
"""

from __future__ import annotations

import os
import posixpath
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rbcray import storage
from rbcray.config import from_dict, to_dict
from rbcray.errors import DataError, RbcrayError
from rbcray.train.pix2pixhd import load_latest_state

if TYPE_CHECKING:
    from rbcray.data.splits import Splits

#: A test's fault hook: ``hook(rank, epoch)`` is called by every worker after it has reported an
#: epoch (and its checkpoint), and may kill the worker's process. Only a caller of
#: :func:`train_distributed` can pass one (tests do); nothing reads it from the environment or a config.
FaultHook = Callable[[int, int], None]


def say(msg: str) -> None:
    """Progress line from a worker (stderr: Ray Train v2 echoes a worker's stdout twice)."""
    sys.stderr.write(f"[rbcray train] {msg}\n")
    sys.stderr.flush()


def quiet_ray_train_reports() -> None:
    """Ray Train logs two INFO lines per checkpoint (the whole metrics dict); rbcray prints its own
    one-line epoch summary, so those go to WARNING (they are still in the Ray session logs)."""
    import logging

    try:
        from ray.train.v2._internal.execution import context, storage
    except ImportError:  # a Ray without Train v2's layout: keep its logging as it is
        return
    for name in (storage.__name__, context.__file__):  # context.py names its logger by file path
        logging.getLogger(name).setLevel(logging.WARNING)


def report_checkpoint(rank: int, metrics: dict[str, Any], save: Callable[[str], None], name: str) -> None:
    """``ray.train.report`` the metrics from every worker with a checkpoint that rank 0 writes by
    ``save(folder)`` (Ray Train copies it to the run's storage as ``name``)."""
    import ray.train

    with tempfile.TemporaryDirectory(prefix="rbcray-ckpt-") as d:
        checkpoint = None
        if rank == 0:
            save(d)
            checkpoint = ray.train.Checkpoint.from_directory(d)
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)


def _worker(config: dict[str, Any]) -> None:
    """Training function of every Ray Train worker."""
    import ray.train
    import ray.train.torch as rtt
    import torch

    from rbcray.models.pix2pixhd.checkpoint import load_state, save_state
    from rbcray.models.registry import get_family
    from rbcray.train.pix2pixhd_loop import open_dataset

    quiet_ray_train_reports()
    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    family = get_family(config["family"])
    cfg = from_dict(family.config_class(), config["cfg"], where="train config")
    out = config["out"]
    rank = ray.train.get_context().get_world_rank()
    ds = open_dataset(config["data"])
    prov = config.get("provenance")
    if prov is not None and prov.get("split") != "all":
        ds = ds.subset(prov["stems"])
    trainer = family.trainer_class()(cfg, ds, device=rtt.get_device(), provenance=prov)
    ck = ray.train.get_checkpoint()
    state, bad = None, None
    if ck is not None:
        try:
            with ck.as_directory() as d:
                state, name = load_state(d), f"{out} (Ray checkpoint)"
        except DataError as e:  # corrupt: fall back to the previous good one below
            say(f"warning: {e}; trying the previous checkpoint")
            bad = ck.path
    if state is None and (found := load_latest_state(out, say, skip=bad)) is not None:
        name, state = found  # e.g. a run begun with the plain loop, or Ray's latest was corrupt
    if state is not None:
        trainer.load_state_dict(state, name=name)
    validator = None
    if config.get("val") and rank == 0:
        from rbcray.train.validate import Validator, ValSpec

        validator = Validator(ValSpec(**config["val"]))
        validator.resume(out)
    if trainer.epoch and trainer.epoch < cfg.total_epochs:
        trainer.resumes.append(trainer.epoch)
        if rank == 0:
            say(f"resuming at epoch {trainer.epoch}/{cfg.total_epochs}")
    while trainer.epoch < cfg.total_epochs:
        metrics = trainer.train_epoch()
        epoch = trainer.epoch
        if rank == 0:
            say(family.metrics_line(epoch, cfg.total_epochs, metrics))
            storage.write_bytes(storage.join(out, "samples", f"epoch_{epoch:04d}.png"), trainer.sample_grid())
        report = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        if epoch % cfg.checkpoint_every == 0 or epoch == cfg.total_epochs:
            report_checkpoint(rank, report, lambda d: save_state(d, trainer.state_dict()), f"checkpoint_epoch_{epoch:04d}")
        else:
            ray.train.report(report)
        if validator is not None:  # rank 0 only; the others wait at the next collective
            validator(trainer, family, out, epoch, cfg.total_epochs, say)
        if config.get("fault_hook") is not None:
            config["fault_hook"](rank, epoch)
    if rank == 0:
        family.export_fn()(trainer, out, log=say)


def run_location(out: str) -> tuple[str, str, Any]:
    """(storage_path, run name, pyarrow filesystem or None) so that Ray's run folder is ``out``."""
    out = out.rstrip("/")
    if storage.is_remote(out):
        fs, path = storage.pyarrow_filesystem(out)
        parent, name = posixpath.split(path)
        if not parent or not name:
            raise RbcrayError(f"{out}: give a folder inside the bucket (e.g. {out}/runs/p2p), not the bucket itself")
        return parent, name, fs
    path = os.path.abspath(out)
    return os.path.dirname(path), os.path.basename(path), None


def train_distributed(
    cfg: Any,
    data: str | Path,
    out: str,
    *,
    workers: int | None = None,
    use_gpu: bool | None = None,
    cpus_per_worker: float | None = None,
    max_failures: int = 2,
    wait_for_resources: float = 900.0,
    log: Callable[[str], None] = print,
    splits: Splits | None = None,
    role: str | None = None,
    fault_hook: FaultHook | None = None,
    val: Any = None,
) -> dict[str, Any]:
    """Train ``cfg`` (any family's training config) on the Ray cluster (started or joined with
    init_ray); returns a summary of the run.

    ``workers`` defaults to the cluster's GPU count (or 1 on a CPU-only cluster); ``use_gpu`` to
    whether it has GPUs; ``cpus_per_worker`` to an even share of the CPUs (at most 8 per GPU
    worker). Declared GPU workers (``workers`` and ``use_gpu=True`` given) are never sized from
    what is up right now: the autoscaler is asked for them and the run waits up to
    ``wait_for_resources`` seconds for them to fit (1 CPU each unless ``cpus_per_worker``).
    The dataset folder must be readable at the same path by every worker. ``splits`` and
    ``role`` restrict training to one role's images (recorded as the model's ``provenance``).
    ``val`` (a :class:`~rbcray.train.validate.ValSpec`) is scored by rank 0 (see
    :mod:`rbcray.train.validate`).
    """
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from rbcray.data.provenance import select_dataset
    from rbcray.distributed.runtime import init_ray
    from rbcray.models.registry import family_of_config
    from rbcray.train.pix2pixhd_loop import open_dataset

    family = family_of_config(cfg)
    family.check(cfg)
    # fail before starting workers when the folder is not a training set or lacks the split's images
    _, prov = select_dataset(open_dataset(data), splits, role)
    storage.check_writable(out)
    # training moves no data through the object store: keep it small on a local instance
    res = init_ray(object_store_memory=1_000_000_000) if not ray.is_initialized() else dict(ray.cluster_resources())
    ngpu = int(res.get("GPU", 0))
    if workers is not None and use_gpu:  # declared: wait for them (an autoscaling cluster starts small)
        from rbcray.distributed.runtime import wait_for_bundles

        cpus_per_worker = cpus_per_worker or 1.0
        wait_for_bundles({"GPU": 1, "CPU": cpus_per_worker}, workers, wait_for_resources, "GPU training worker(s)", log)
        ngpu = max(ngpu, workers)
    use_gpu = ngpu >= 1 if use_gpu is None else use_gpu
    if use_gpu and ngpu < 1:
        raise RbcrayError("GPU training requested but the Ray cluster has no GPU")
    workers = workers or (ngpu if use_gpu else 1)
    if cpus_per_worker is None:
        share = max(1, int(res.get("CPU", 1)) // workers)
        cpus_per_worker = min(share, 8) if use_gpu else share
    storage_path, name, fs = run_location(out)
    env = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    run_config = RunConfig(
        name=name,
        storage_path=storage_path,
        storage_filesystem=fs,
        failure_config=FailureConfig(max_failures=max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
        worker_runtime_env={"env_vars": env},
    )
    trainer = TorchTrainer(
        _worker,
        train_loop_config={
            "family": family.name,
            "cfg": to_dict(cfg),
            "data": str(Path(data).resolve()),
            "out": out.rstrip("/") if storage.is_remote(out) else os.path.abspath(out),
            "threads": max(1, int(cpus_per_worker)),
            "provenance": prov,
            "fault_hook": fault_hook,  # tests only (see FaultHook)
            "val": to_dict(val) if val is not None else None,
        },
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker={"CPU": cpus_per_worker}),
        run_config=run_config,
    )
    log(f"Ray Train: {workers} worker(s), {'GPU' if use_gpu else 'CPU'}, {cpus_per_worker} CPU each; run folder {out}")
    result = fit(trainer, out, max_failures)
    return {"metrics": dict(result.metrics or {}), "checkpoint": result.checkpoint.path if result.checkpoint else None}


def fit(trainer: Any, out: str, max_failures: int) -> Any:
    """``trainer.fit()``; a worker's bad-input error comes back as itself, any other failure as one
    line saying that re-running the same command resumes (shared by every Ray Train job)."""
    from ray.train import TrainingFailedError

    try:
        return trainer.fit()
    except TrainingFailedError as e:
        cause = user_error(e)
        if cause is not None:  # a bad input found by a worker: the user's one-line error
            raise cause from None
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise RbcrayError(
            f"training of {out} failed after {max_failures} restart(s) ({first}); "
            "re-run the same command to resume from its last checkpoint"
        ) from None


def user_error(e: BaseException) -> RbcrayError | None:
    """The RbcrayError inside a Ray Train failure, if a worker raised one."""
    seen = set()
    stack: list[BaseException | None] = [e]
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, RbcrayError):
            return x
        stack += [x.__cause__, x.__context__, getattr(x, "cause", None)]
        failures = getattr(x, "worker_failures", None)
        if isinstance(failures, dict):
            stack += list(failures.values())
    return None
