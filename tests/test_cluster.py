"""The cluster files (issue 5, cluster/) stay in step with the code: they parse, they have a CPU
worker type for mask actors and a GPU one for generators, and their job command is one the
``rbcray generate`` parser accepts."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from rbcray.cli import build_parser

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"


def _parses_as_generate(command: str) -> None:
    argv = shlex.split(command)
    script = next(i for i, a in enumerate(argv) if a.endswith("jobs/generate.py"))
    args = build_parser().parse_args(["generate", *argv[script + 1:]])
    assert args.num_samples == 1_000_000 and args.out.startswith("s3://")


def test_aws_launcher_has_cpu_and_gpu_workers() -> None:
    cfg = yaml.safe_load((CLUSTER / "aws.yaml").read_text())
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    gpu = [t for t in types.values() if t["resources"].get("GPU", 0) >= 1]
    cpu = [t for t in types.values() if t["resources"].get("CPU", 0) >= 8 and not t["resources"].get("GPU")]
    assert gpu and cpu
    start = " ".join(cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"])
    assert start.count("RAY_AUTH_MODE=token") == 2
    # the dashboard / job API only on the head's loopback (reached through 'ray dashboard's SSH tunnel)
    assert "--dashboard-host=127.0.0.1" in start and "0.0.0.0" not in start
    _parses_as_generate(_aws_job())


def test_kuberay_rayjob_runs_the_generate_job() -> None:
    job = yaml.safe_load((CLUSTER / "kuberay-generate.yaml").read_text())
    assert job["kind"] == "RayJob" and job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    groups = {g["groupName"]: g for g in spec["rayClusterSpec"]["workerGroupSpecs"]}
    limits = [g["template"]["spec"]["containers"][0]["resources"]["limits"] for g in groups.values()]
    assert any("nvidia.com/gpu" in lim for lim in limits) and any("nvidia.com/gpu" not in lim for lim in limits)
    _parses_as_generate(spec["entrypoint"])


# ----------------------------------------------------------------------------- cluster fit (issue 12)
def _aws_job() -> str:
    lines, on = [], False
    for line in (CLUSTER / "aws.yaml").read_text().splitlines():
        body = line.lstrip("#").strip()
        on = on or body.startswith("ray job submit")
        if on:
            lines.append(body.rstrip("\\").strip())
            if not body.endswith("\\"):
                break
    return " ".join(lines)


def _quantity(text) -> float:
    """Kubernetes quantities: '15', '500m', '28Gi'."""
    s = str(text)
    for suffix, mult in (("Gi", 2**30), ("Mi", 2**20), ("m", 1e-3)):
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * mult
    return float(s)


def _job_resources(command: str) -> dict:
    from rbcray.cli.generate_cmds import config_from_args
    from rbcray.distributed.generate import plan_resources
    from rbcray.generate.engine import RunPlan

    argv = shlex.split(command)
    script = next(i for i, a in enumerate(argv) if a.endswith("jobs/generate.py"))
    cfg = config_from_args(build_parser().parse_args(["generate", *argv[script + 1:]]))
    r = plan_resources(RunPlan(cfg, {}, 1, None, {}, "", "", 0), {})  # type: ignore[arg-type]
    assert r["declared"], "the cluster job must declare its resources (--gen-gpus ...)"
    return r


def _check_fit(node_types: list[dict], r: dict, where: str) -> None:
    """Every actor fits some node type; the pools reach MAX with every node type at its max count
    (generators placed first, mask actors on what is left)."""
    from rbcray.distributed.generate import actors_that_fit

    gen = {"CPU": r["gen_cpus"], "GPU": r["gen_gpus"], "memory": r["gen_memory"]}
    mask = {"CPU": r["mask_cpus"], "memory": r["mask_memory"]}
    assert any(actors_that_fit([t], gen) >= 1 for t in node_types), f"{where}: no node type holds a generator {gen}"
    assert any(actors_that_fit([t], mask) >= 1 for t in node_types), f"{where}: no node type holds a mask actor {mask}"
    gens = masks = 0
    for t in node_types:
        per_node = actors_that_fit([t], gen) if t.get("GPU") else 0
        left = {k: t.get(k, 0.0) - per_node * gen.get(k, 0.0) for k in ("CPU", "GPU", "memory")}
        gens += per_node * t["max"]
        masks += actors_that_fit([left], mask) * t["max"]
    assert gens >= r["gen_actors_max"], f"{where}: {gens} generator actors fit at most, the job asks up to {r['gen_actors_max']}"
    assert masks >= r["mask_actors_max"], f"{where}: {masks} mask actors fit at most, the job asks up to {r['mask_actors_max']}"


def test_aws_job_fits_its_node_types() -> None:
    cfg = yaml.safe_load((CLUSTER / "aws.yaml").read_text())
    types = [{**{k: float(v) for k, v in t["resources"].items()}, "max": t.get("max_workers", 1)}
             for name, t in cfg["available_node_types"].items() if name != cfg["head_node_type"]]
    _check_fit(types, _job_resources(_aws_job()), "aws.yaml")
    start = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start  # reached through `ray dashboard`'s SSH tunnel only


def test_kuberay_job_fits_its_pods() -> None:
    job = yaml.safe_load((CLUSTER / "kuberay-generate.yaml").read_text())
    types = []
    for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]:
        lim = g["template"]["spec"]["containers"][0]["resources"]["limits"]
        # Ray's memory resource: the pod's memory less the object store (30 % by default)
        types.append({"CPU": _quantity(lim["cpu"]), "GPU": _quantity(lim.get("nvidia.com/gpu", 0)),
                      "memory": 0.7 * _quantity(lim["memory"]), "max": g["maxReplicas"]})
    _check_fit(types, _job_resources(job["spec"]["entrypoint"]), "kuberay-generate.yaml")


def test_fit_check_catches_the_old_kuberay_request() -> None:
    """The check is not vacuous: 4 CPUs per generator on 3-CPU GPU pods (the bug it guards) fails."""
    types = [{"CPU": 3.0, "GPU": 1.0, "memory": 9.8 * 2**30, "max": 16}, {"CPU": 15.0, "memory": 19.6 * 2**30, "max": 8}]
    r = {"gen_cpus": 4.0, "gen_gpus": 1.0, "gen_memory": 6 * 2**30, "mask_cpus": 1.0, "mask_memory": 2**30,
         "gen_actors_max": 16, "mask_actors_max": 64}
    try:
        _check_fit(types, r, "old")
    except AssertionError as e:
        assert "no node type holds a generator" in str(e)
    else:
        raise AssertionError("a generator asking 4 CPUs was found to fit 3-CPU GPU pods")
