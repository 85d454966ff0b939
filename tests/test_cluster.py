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
    text = (CLUSTER / "aws.yaml").read_text()
    job = " ".join(line.lstrip("# ").rstrip("\\ ") for line in text.splitlines() if "jobs/generate.py" in line or "--stats" in line)
    _parses_as_generate(job)


def test_kuberay_rayjob_runs_the_generate_job() -> None:
    job = yaml.safe_load((CLUSTER / "kuberay-generate.yaml").read_text())
    assert job["kind"] == "RayJob" and job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    groups = {g["groupName"]: g for g in spec["rayClusterSpec"]["workerGroupSpecs"]}
    limits = [g["template"]["spec"]["containers"][0]["resources"]["limits"] for g in groups.values()]
    assert any("nvidia.com/gpu" in lim for lim in limits) and any("nvidia.com/gpu" not in lim for lim in limits)
    _parses_as_generate(spec["entrypoint"])
