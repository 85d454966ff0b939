"""Ray adapter of the generation engine: a streaming Ray Data pipeline over shards.

::

    shards to do --(CPU actor pool)--> ShardMaskActor --(GPU/CPU actor pool)--> ShardGenActor
                 --(CPU tasks)--> write_shard --> driver (manifest, last)

Each row is one shard (its id range and a compact Arrow payload), so a stage never splits a
shard between workers and the writer always holds a whole shard. Ray Data streams rows through the
stages with backpressure; a killed actor is restarted and its shard re-run (Ray Data retries actor
tasks), and as every stage is deterministic and a shard is written whole under its final name, a
retry can neither lose nor duplicate a sample. The stages themselves are in
:mod:`rbcray.generate.engine`; this module only wires them to Ray.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rbcray.distributed.runtime import bundles_that_fit, wait_for_bundles
from rbcray.errors import RbcrayError
from rbcray.generate.engine import (
    RunPlan,
    ShardMasker,
    ShardTranslator,
    finish,
    gate_spec,
    morphology_spec,
    write_payload,
)
from rbcray.generate.engine import named_stage as _named
from rbcray.generate.shards import Shard, ShardPlan

#: A test's fault hook: ``hook(stage, shard_index)`` is called by an actor ('mask' or 'generate')
#: before it works on a shard, and by a writer task ('write' with half the shard's object
#: written, 'index' before its index marker), and may kill the process. Only a caller of :func:`run_ray`
#: can pass one (tests do); nothing reads it from the environment or a config.
FaultHook = Callable[[str, int], None]


def _one(batch: dict[str, np.ndarray], key: str) -> Any:
    return batch[key][0]


class ShardMaskActor:
    """CPU actor: a shard's masks (one shard per call)."""

    def __init__(self, shapes: str, synth: dict[str, Any], seed: int, num_samples: int, per_shard: int,
                 shapes_sha256: str | None = None, fault_hook: FaultHook | None = None) -> None:
        from rbcray.distributed.masks import single_thread

        single_thread()
        self.masker = ShardMasker(shapes, synth, seed, shapes_sha256)
        self.shards = ShardPlan(num_samples, per_shard)
        self.fault_hook = fault_hook

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sh = self.shards[int(_one(batch, "index"))]
        k, a, b = sh.index, sh.start, sh.stop
        if self.fault_hook is not None:
            self.fault_hook("mask", k)
        t = time.perf_counter()
        payload = _named(Shard(k, a, b), "masks", lambda: self.masker(a, b))
        return {"index": np.array([k]), "start": np.array([a]), "stop": np.array([b]),
                "payload": np.array([payload], dtype=object), "mask_s": np.array([time.perf_counter() - t])}


class ShardGenActor:
    """Generator actor (``gpus`` GPUs each when declared): a shard's images."""

    def __init__(self, checkpoint: str, style: int | None, batch_size: int, threads: int,
                 checkpoint_sha256: str | None = None, gpus: float = 0.0, gate: dict[str, Any] | None = None,
                 fault_hook: FaultHook | None = None, morphology: dict[str, Any] | None = None) -> None:
        self.fault_hook = fault_hook
        # PNG encoding of the images runs here, beside the model (pixels never cross the object
        # store raw): one encoder thread per CPU of the actor, at least 2
        self.translator = ShardTranslator(checkpoint, style, batch_size, threads=threads, encode_threads=max(2, threads),
                                          checkpoint_sha256=checkpoint_sha256, gpus=gpus, gate=gate, morphology=morphology)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        k = int(_one(batch, "index"))
        if self.fault_hook is not None:
            self.fault_hook("generate", k)
        t = time.perf_counter()
        sh = Shard(k, int(_one(batch, "start")), int(_one(batch, "stop")))
        payload = _named(sh, "images", lambda: self.translator(_one(batch, "payload")))
        out = {key: batch[key] for key in ("index", "start", "stop", "mask_s")}
        out["payload"] = np.array([payload], dtype=object)
        out["gen_s"] = np.array([time.perf_counter() - t])
        return out


def _writer(out: str, constants: dict[str, Any], png: bool, coco: bool,
            fault_hook: FaultHook | None = None) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    def write(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t = time.perf_counter()
        sh = Shard(int(_one(batch, "index")), int(_one(batch, "start")), int(_one(batch, "stop")))
        e = _named(sh, "write", lambda: write_payload(out, sh, _one(batch, "payload"), constants, png, coco, fault_hook=fault_hook))
        return {"name": np.array([e["name"]]), "start": np.array([e["start"]]), "stop": np.array([e["stop"]]),
                "count": np.array([e["count"]]), "bytes": np.array([e["bytes"]]), "sha256": np.array([e["sha256"]]),
                "mask_s": batch["mask_s"], "gen_s": batch["gen_s"], "write_s": np.array([time.perf_counter() - t]),
                "done_at": np.array([time.time()])}

    return write


#: Ray memory requests of the actors when resources are declared (a 1920x1200 shard of 64 samples
#: is ~250 MB as payload; the generator also holds the model, its host buffers and PNG encoders)
GEN_MEMORY = 6 * 2**30
MASK_MEMORY = 1 * 2**30
#: restarts of a dead actor and retries of its task: a crash that repeats is deterministic
MAX_RESTARTS = 3
MAX_TASK_RETRIES = 3


def plan_resources(plan: RunPlan, resources: dict[str, float]) -> dict[str, Any]:
    """Actor pools and per-actor resources.

    With ``--gen-gpus`` declared (0 for CPU generators) everything comes from the config: pools
    MIN..MAX, requests per actor; nothing depends on what has joined the cluster so far (an
    autoscaling cluster may start with the head alone). Without it, the pools are sized from
    ``resources`` (the cluster at start): the right thing for a laptop or a fixed cluster.
    """
    cfg = plan.cfg
    if cfg.gen_gpus is not None:
        gen_lo, gen_hi = cfg.pool("gen") or (1, 1)
        mask_lo, mask_hi = cfg.pool("mask") or (1, max(1, 4 * gen_hi))
        gen_cpus = cfg.gen_cpus or 1.0
        return {"mask_actors": mask_lo, "mask_actors_max": mask_hi, "mask_cpus": 1.0, "mask_memory": MASK_MEMORY,
                "gen_actors": gen_lo, "gen_actors_max": gen_hi, "gen_cpus": gen_cpus, "gen_gpus": float(cfg.gen_gpus),
                "gen_memory": GEN_MEMORY, "write_cpus": 0.5, "threads": max(1, math.ceil(gen_cpus)), "declared": True}
    cpus, gpus = float(resources.get("CPU", 1)), int(resources.get("GPU", 0))
    small = cpus <= 4
    mask_cpus = 0.5 if small else 1.0
    write_cpus = 0.25 if small else 1.0
    mask_lo, mask_hi = cfg.pool("mask") or ((1, 1) if small else (max(1, int(cpus // 4)),) * 2)
    if gpus:
        gen_lo, gen_hi = cfg.pool("gen") or (gpus, gpus)
        gen_cpus = cfg.gen_cpus or max(1.0, min(4.0, (cpus - mask_lo * mask_cpus) / gen_lo))
        gen_gpus = 1.0
    else:
        gen_lo, gen_hi = cfg.pool("gen") or (1, 1)
        gen_cpus = cfg.gen_cpus or max(0.5, (cpus - mask_lo * mask_cpus - write_cpus) / gen_lo)
        gen_gpus = 0.0
    return {"mask_actors": mask_lo, "mask_actors_max": mask_hi, "mask_cpus": mask_cpus, "mask_memory": None,
            "gen_actors": gen_lo, "gen_actors_max": gen_hi, "gen_cpus": gen_cpus, "gen_gpus": gen_gpus, "gen_memory": None,
            "write_cpus": write_cpus, "threads": max(1, math.ceil(gen_cpus)), "declared": False}


def actors_that_fit(nodes: list[dict[str, float]], need: dict[str, float]) -> int:
    """How many actors asking ``need`` (CPU, GPU, memory) the nodes can hold, each on one node."""
    return bundles_that_fit(nodes, need)


def wait_for_resources(r: dict[str, Any], timeout_s: float, log: Callable[[str], None],
                       nodes_fn: Callable[[], list[dict[str, float]]] | None = None, poll_s: float = 5.0) -> None:
    """Declared GPU generators: ask the autoscaler for them and wait until ``gen_actors`` (MIN) of
    them fit on live nodes; after ``timeout_s`` fail in one line."""
    if not r["declared"] or not r["gen_gpus"]:
        return
    need = {"GPU": r["gen_gpus"], "CPU": r["gen_cpus"], "memory": r["gen_memory"] or 0}
    try:
        wait_for_bundles(need, r["gen_actors"], timeout_s, "generator actor(s)", log, nodes_fn, poll_s)
    except RbcrayError as e:
        raise RbcrayError(f"{e} (see --wait-for-resources, --gen-actors, --gen-cpus and the cluster's GPU node type)") from None


def check_shared_output(out: str, node_ids: list[str], exists_on: Callable[[str, str], bool]) -> None:
    """A local ``--out`` on a multi-node cluster must be one shared filesystem: ``exists_on(node,
    probe)`` tells whether a probe file written here is visible on that node."""
    import uuid

    from rbcray import storage

    if storage.is_remote(out) or len(node_ids) <= 1:
        return
    probe = os.path.join(out, f".rbcray-shared-probe-{uuid.uuid4().hex}")
    Path(probe).write_text("probe\n")
    try:
        for node in node_ids:
            if not exists_on(node, probe):
                raise RbcrayError(f"{out}: a local --out is not visible from node {node[:12]} of this {len(node_ids)}-node "
                                  "cluster; use s3:// / gs:// or a filesystem shared by every node")
    finally:
        Path(probe).unlink(missing_ok=True)


def _probe_nodes(out: str) -> None:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    if len(nodes) <= 1:
        return

    @ray.remote(num_cpus=0)
    def exists(path: str) -> bool:
        return os.path.exists(path)

    def exists_on(node: str, path: str) -> bool:
        return ray.get(exists.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(path))

    check_shared_output(out, nodes, exists_on)


def _one_line(e: BaseException) -> str:
    """The message of a pipeline failure: the stage's own one line when there is one."""
    text = str(e)
    m = re.search(r"ShardFailed: ([^\n]+)", text) or re.search(r"RbcrayError: ([^\n]+)", text)
    if m:
        return m.group(1).strip()
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return f"generation pipeline failed: {first[:300]}"


def run_ray(plan: RunPlan, log: Callable[[str], None] = print, runtime_env: dict[str, Any] | None = None, *,
            fault_hook: FaultHook | None = None) -> dict[str, Any]:
    """Run the shards still to do through the Ray Data pipeline; returns the manifest.

    ``runtime_env`` (optional) is given to the actors of both stages (e.g. environment variables).
    ``fault_hook`` is for tests only (see :data:`FaultHook`).
    """
    try:
        return _run_ray(plan, log, runtime_env, fault_hook)
    except BaseException:
        plan.release()
        raise


def _run_ray(plan: RunPlan, log: Callable[[str], None], runtime_env: dict[str, Any] | None,
             fault_hook: FaultHook | None = None) -> dict[str, Any]:
    import ray

    from rbcray.distributed.runtime import init_ray

    cfg = plan.cfg
    res = init_ray(cfg.address)
    r = plan_resources(plan, res)
    _probe_nodes(cfg.out)
    wait_for_resources(r, cfg.wait_for_resources, log)
    todo = plan.todo_indices()
    last = len(plan.shards) - 1  # only the last shard can be short
    n_new = len(todo) * plan.per_shard - (plan.per_shard - plan.shards[last].count) * int(last in set(todo[-1:].tolist()))
    pools = {k: f"{r[f'{k}_actors']}" + (f"..{r[f'{k}_actors_max']}" if r[f"{k}_actors_max"] != r[f"{k}_actors"] else "")
             for k in ("mask", "gen")}
    log(f"pipeline: {len(todo)} shard(s) of up to {plan.per_shard} samples; {pools['mask']} mask actor(s) x "
        f"{r['mask_cpus']:g} CPU -> {pools['gen']} generator actor(s) x "
        + (f"{r['gen_gpus']:g} GPU + {r['gen_cpus']:g} CPU" if r["gen_gpus"] else f"{r['gen_cpus']:g} CPU ({r['threads']} threads)")
        + f", micro-batches of {cfg.batch_size} -> writer tasks")
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = bool(cfg.progress)
    t0 = time.perf_counter()
    entries = list(plan.done.values())
    busy = {"mask": 0.0, "generate": 0.0, "write": 0.0}
    done_at: list[tuple[float, int]] = []
    if len(todo):
        extra: dict[str, Any] = {"runtime_env": runtime_env} if runtime_env else {}
        retries = {"max_restarts": MAX_RESTARTS, "max_task_retries": MAX_TASK_RETRIES}
        mem = {"memory": r["mask_memory"]} if r["mask_memory"] else {}
        # one row (and block) per shard to do: its index only (the actors compute its id range).
        # A read of ready blocks, no Project/Repartition operators: those need CPU tasks that the
        # actor pools, which reserve every CPU of a small node, would never leave room for.
        ds = ray.data.from_items([{"index": int(k)} for k in todo], override_num_blocks=len(todo))
        ds = ds.map_batches(
            ShardMaskActor,
            fn_constructor_kwargs={"shapes": cfg.shapes, "synth": plan.synth, "seed": cfg.seed, "num_samples": cfg.num_samples,
                                   "per_shard": plan.per_shard, "shapes_sha256": plan.shapes_sha256, "fault_hook": fault_hook},
            compute=ray.data.ActorPoolStrategy(min_size=r["mask_actors"], max_size=r["mask_actors_max"]),
            num_cpus=r["mask_cpus"], batch_size=1, batch_format="numpy", **mem, **retries, **extra,
        )
        gen_args: dict[str, Any] = {"num_cpus": r["gen_cpus"], **retries}
        if r["gen_gpus"]:
            gen_args["num_gpus"] = r["gen_gpus"]
        if r["gen_memory"]:
            gen_args["memory"] = r["gen_memory"]
        ds = ds.map_batches(
            ShardGenActor,
            fn_constructor_kwargs={"checkpoint": cfg.checkpoint, "style": cfg.style_choice, "batch_size": cfg.batch_size,
                                   "threads": r["threads"], "checkpoint_sha256": plan.checkpoint_sha256, "gpus": r["gen_gpus"],
                                   "gate": gate_spec(plan), "fault_hook": fault_hook, "morphology": morphology_spec(plan)},
            compute=ray.data.ActorPoolStrategy(min_size=r["gen_actors"], max_size=r["gen_actors_max"]),
            batch_size=1, batch_format="numpy", **gen_args, **extra,
        )
        ds = ds.map_batches(_writer(cfg.out, plan.constants(), cfg.png, cfg.coco, fault_hook), num_cpus=r["write_cpus"],
                            batch_size=1, batch_format="numpy", max_retries=MAX_TASK_RETRIES, retry_exceptions=False)
        written: dict[str, dict[str, Any]] = {}
        failure: str | None = None
        rows = ds.iter_rows()
        try:
            for row in rows:
                if plan.lease is not None and plan.lease.lost:
                    raise RbcrayError(plan.lease.lost)
                e = {k: row[k] for k in ("name", "start", "stop", "count", "bytes", "sha256")}
                e = {k: (v.item() if hasattr(v, "item") else v) for k, v in e.items()}
                written[e["name"]] = e  # a retried shard reports twice at most; its bytes are identical
                busy["mask"] += float(row["mask_s"])
                busy["generate"] += float(row["gen_s"])
                busy["write"] += float(row["write_s"])
                done_at.append((float(row["done_at"]), int(e["count"])))
        except RbcrayError as e:
            failure = str(e)
        except Exception as e:  # noqa: BLE001 - Ray wraps the stage's error; report its one line
            failure = _one_line(e)
        if failure is not None:
            # raised outside the except clauses and after dropping the pipeline: an exception
            # (or its traceback) that still referenced the dataset would keep its actors, and
            # their CPUs, alive in a long-lived caller, so a re-run in the same process would wait
            del rows, ds
            raise RbcrayError(failure)
        entries += list(written.values())
    seconds = time.perf_counter() - t0
    manifest = finish(plan, entries, seconds, busy)
    if len(todo) and seconds > 0:
        wall = max(seconds, 1e-9)
        log(f"generated {n_new} samples in {seconds:.1f} s ({n_new / wall:.2f} samples/s); stage busy: "
            f"masks {busy['mask'] / (wall * r['mask_actors']):.0%}, generator {busy['generate'] / (wall * r['gen_actors']):.0%}, "
            f"writer {busy['write'] / wall:.0%} of wall time")
    # steady state: samples written after the first shard, over the time from first to last shard
    # (leaves out actor start-up, model loading and the pipeline filling up)
    steady = None
    if len(todo) and len(done_at) >= 2:
        done_at.sort()
        span = done_at[-1][0] - done_at[0][0]
        steady = sum(c for _, c in done_at[1:]) / span if span > 0 else None
    manifest["summary"] = {"new_samples": n_new, "seconds": seconds, "resources": r, "busy": busy, "steady_samples_s": steady}
    return manifest


def verify_deep(out: str, address: str | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``rbcray verify --deep``: :func:`rbcray.generate.verify.check_shard` on every shard as Ray
    tasks across the cluster (the driver reads only the manifest and two listings)."""
    import ray

    from rbcray.distributed.runtime import init_ray
    from rbcray.generate.verify import check_shard, verify_output

    res = init_ray(address)
    window = max(2, int(res.get("CPU", 1)) * 2)  # tasks in flight: bounded, results come back in order
    check = ray.remote(num_cpus=1, max_retries=MAX_TASK_RETRIES)(check_shard)

    def run(entries: list[dict[str, Any]]):
        refs: list[Any] = []
        for e in entries:
            refs.append(check.remote(out, e))
            if len(refs) >= window:
                yield ray.get(refs.pop(0))
        for ref in refs:
            yield ray.get(ref)

    return verify_output(out, log=log, deep=True, map_fn=run)
