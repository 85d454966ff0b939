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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rbcray.generate.engine import RunPlan, ShardMasker, ShardTranslator, finish, gate_spec, write_payload
from rbcray.generate.shards import Shard

#: Fault injection for tests: "STAGE:SHARD:MARKER" (STAGE mask or generate) makes that stage's
#: actor die abruptly on shard index SHARD, once: only while the file MARKER does not exist.
FAULT_ENV = "RBCRAY_GENERATE_FAULT"


def _maybe_fail(stage: str, shard_index: int) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    s, k, marker = spec.split(":", 2)
    if s == stage and int(k) == shard_index and not os.path.exists(marker):
        Path(marker).write_text(f"{stage} actor killed on shard {shard_index}\n")
        os._exit(1)


def _one(batch: dict[str, np.ndarray], key: str) -> Any:
    return batch[key][0]


class ShardMaskActor:
    """CPU actor: a shard's masks (one shard per call)."""

    def __init__(self, shapes: str, synth: dict[str, Any], seed: int) -> None:
        from rbcray.distributed.masks import single_thread

        single_thread()
        self.masker = ShardMasker(shapes, synth, seed)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        k, a, b = int(_one(batch, "index")), int(_one(batch, "start")), int(_one(batch, "stop"))
        _maybe_fail("mask", k)
        t = time.perf_counter()
        payload = self.masker(a, b)
        return {"index": np.array([k]), "start": np.array([a]), "stop": np.array([b]),
                "payload": np.array([payload], dtype=object), "mask_s": np.array([time.perf_counter() - t])}


class ShardGenActor:
    """Generator actor (a GPU each when the cluster has GPUs): a shard's images."""

    def __init__(self, checkpoint: str, style: int | None, batch_size: int, threads: int, gate: dict[str, Any] | None = None) -> None:
        # PNG encoding of the images runs here, beside the model (pixels never cross the object
        # store raw): one encoder thread per CPU of the actor, at least 2
        self.translator = ShardTranslator(checkpoint, style, batch_size, threads=threads, encode_threads=max(2, threads), gate=gate)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        k = int(_one(batch, "index"))
        _maybe_fail("generate", k)
        t = time.perf_counter()
        payload = self.translator(_one(batch, "payload"))
        out = {key: batch[key] for key in ("index", "start", "stop", "mask_s")}
        out["payload"] = np.array([payload], dtype=object)
        out["gen_s"] = np.array([time.perf_counter() - t])
        return out


def _writer(out: str, constants: dict[str, Any], png: bool, coco: bool) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    def write(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t = time.perf_counter()
        sh = Shard(int(_one(batch, "index")), int(_one(batch, "start")), int(_one(batch, "stop")))
        e = write_payload(out, sh, _one(batch, "payload"), constants, png, coco)
        return {"name": np.array([e["name"]]), "start": np.array([e["start"]]), "stop": np.array([e["stop"]]),
                "count": np.array([e["count"]]), "bytes": np.array([e["bytes"]]), "sha256": np.array([e["sha256"]]),
                "mask_s": batch["mask_s"], "gen_s": batch["gen_s"], "write_s": np.array([time.perf_counter() - t]),
                "done_at": np.array([time.time()])}

    return write


def plan_resources(plan: RunPlan, resources: dict[str, float]) -> dict[str, Any]:
    """Actor counts and per-actor resources from the cluster (explicit config values win)."""
    cfg = plan.cfg
    cpus, gpus = float(resources.get("CPU", 1)), int(resources.get("GPU", 0))
    small = cpus <= 4
    mask_cpus = 0.5 if small else 1.0
    write_cpus = 0.25 if small else 1.0
    mask_actors = cfg.mask_actors or (1 if small else max(1, int(cpus // 4)))
    if gpus:
        gen_actors = cfg.gen_actors or gpus
        gen_cpus = cfg.gen_cpus or max(1.0, min(4.0, (cpus - mask_actors * mask_cpus) / gen_actors))
        gen_gpus = 1
    else:
        gen_actors = cfg.gen_actors or 1
        gen_cpus = cfg.gen_cpus or max(0.5, (cpus - mask_actors * mask_cpus - write_cpus) / gen_actors)
        gen_gpus = 0
    return {"mask_actors": mask_actors, "mask_cpus": mask_cpus, "gen_actors": gen_actors, "gen_cpus": gen_cpus,
            "gen_gpus": gen_gpus, "write_cpus": write_cpus, "threads": max(1, math.ceil(gen_cpus))}


def run_ray(plan: RunPlan, log: Callable[[str], None] = print, runtime_env: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the shards still to do through the Ray Data pipeline; returns the manifest.

    ``runtime_env`` (optional) is given to the actors of both stages (e.g. environment variables).
    """
    import ray

    from rbcray.distributed.runtime import init_ray

    cfg = plan.cfg
    res = init_ray(cfg.address)
    r = plan_resources(plan, res)
    todo = plan.todo
    log(f"pipeline: {len(todo)} shard(s) of up to {plan.per_shard} samples; {r['mask_actors']} mask actor(s) x "
        f"{r['mask_cpus']} CPU -> {r['gen_actors']} generator actor(s) x "
        + (f"1 GPU + {r['gen_cpus']:g} CPU" if r["gen_gpus"] else f"{r['gen_cpus']:g} CPU ({r['threads']} threads)")
        + " -> writer tasks")
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = bool(cfg.progress)
    t0 = time.perf_counter()
    entries = list(plan.done.values())
    busy = {"mask": 0.0, "generate": 0.0, "write": 0.0}
    if todo:
        items = [{"index": s.index, "start": s.start, "stop": s.stop} for s in todo]
        extra: dict[str, Any] = {"runtime_env": runtime_env} if runtime_env else {}
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(
            ShardMaskActor,
            fn_constructor_kwargs={"shapes": cfg.shapes, "synth": plan.synth, "seed": cfg.seed},
            compute=ray.data.ActorPoolStrategy(size=r["mask_actors"]),
            num_cpus=r["mask_cpus"], batch_size=1, batch_format="numpy", **extra,
        )
        gen_args: dict[str, Any] = {"num_cpus": r["gen_cpus"]}
        if r["gen_gpus"]:
            gen_args["num_gpus"] = r["gen_gpus"]
        ds = ds.map_batches(
            ShardGenActor,
            fn_constructor_kwargs={"checkpoint": cfg.checkpoint, "style": cfg.style_choice, "batch_size": cfg.batch_size,
                                   "threads": r["threads"], "gate": gate_spec(plan)},
            compute=ray.data.ActorPoolStrategy(size=r["gen_actors"]),
            batch_size=1, batch_format="numpy", **gen_args, **extra,
        )
        ds = ds.map_batches(_writer(cfg.out, plan.constants(), cfg.png, cfg.coco), num_cpus=r["write_cpus"],
                            batch_size=1, batch_format="numpy")
        written: dict[str, dict[str, Any]] = {}
        done_at: list[tuple[float, int]] = []
        for row in ds.iter_rows():
            e = {k: row[k] for k in ("name", "start", "stop", "count", "bytes", "sha256")}
            e = {k: (v.item() if hasattr(v, "item") else v) for k, v in e.items()}
            written[e["name"]] = e  # a retried shard reports twice at most; its bytes are identical
            busy["mask"] += float(row["mask_s"])
            busy["generate"] += float(row["gen_s"])
            busy["write"] += float(row["write_s"])
            done_at.append((float(row["done_at"]), int(e["count"])))
        entries += list(written.values())
    seconds = time.perf_counter() - t0
    manifest = finish(plan, entries, seconds, busy)
    n_new = sum(s.count for s in todo)
    if todo and seconds > 0:
        wall = max(seconds, 1e-9)
        log(f"generated {n_new} samples in {seconds:.1f} s ({n_new / wall:.2f} samples/s); stage busy: "
            f"masks {busy['mask'] / (wall * r['mask_actors']):.0%}, generator {busy['generate'] / (wall * r['gen_actors']):.0%}, "
            f"writer {busy['write'] / wall:.0%} of wall time")
    # steady state: samples written after the first shard, over the time from first to last shard
    # (leaves out actor start-up, model loading and the pipeline filling up)
    steady = None
    if todo and len(done_at) >= 2:
        done_at.sort()
        span = done_at[-1][0] - done_at[0][0]
        steady = sum(c for _, c in done_at[1:]) / span if span > 0 else None
    manifest["summary"] = {"new_samples": n_new, "seconds": seconds, "resources": r, "busy": busy, "steady_samples_s": steady}
    return manifest
