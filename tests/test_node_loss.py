"""A Ray worker node lost mid-run: a private local cluster (``ray start``: a head with no CPUs and
two 2-CPU worker nodes), generation driven from a subprocess, the node running the generator
actor SIGKILLed mid-run (raylet, object store, workers); the run finishes on the other node and
its output equals a clean run.

The cluster is this test's own (its own --temp-dir and ports, token auth off): the session's Ray
instance is never touched, and clean-up kills only the processes started under that temp dir
(``ray stop`` would stop every Ray instance on the machine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
N, PER = 24, 2

_DRIVER = """
import json, sys
from rbcray.config import from_dict
from rbcray.generate.config import GenerateConfig
from rbcray.generate.engine import prepare
from rbcray.distributed.generate import run_ray
cfg = from_dict(GenerateConfig, json.loads(sys.argv[1]))
m = run_ray(prepare(cfg, log=print), log=print)
print("DONE", m["n_samples"], flush=True)
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _procs() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process."""
    out = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                ppid = int((p / "stat").read_text().rsplit(") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            out[int(p.name)] = (ppid, cmd)
    return out


def _tree(roots: set[int]) -> set[int]:
    procs = _procs()
    found, grew = set(roots), True
    while grew:
        kids = {pid for pid, (ppid, _) in procs.items() if ppid in found} - found
        grew = bool(kids)
        found |= kids
    return found


def _kill(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _shards(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("train-*.parquet"))}


@pytest.mark.slow
def test_worker_node_killed_mid_run(inputs, tmp_path) -> None:
    import pyarrow.parquet as pq

    from rbcray.config import from_dict
    from rbcray.generate.config import GenerateConfig
    from rbcray.generate.engine import prepare, run_local
    from rbcray.generate.verify import verify_output

    cfg = {**inputs, "num_samples": N, "width": 64, "height": 48, "shard_size": PER, "batch_size": 2, "cells_mean": 4.0,
           "cells_std": 0.0, "cell_size": 14.0, "progress": False, "gen_cpus": 0.5,
           "mask_actors": 1, "gen_actors": 1}
    clean = tmp_path / "clean"
    run_local(prepare(from_dict(GenerateConfig, {**cfg, "out": str(clean)}), log=lambda m: None), log=lambda m: None)

    temp = Path(tempfile.mkdtemp(prefix="rbn", dir="/tmp"))  # short: Ray's socket paths live under it
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT), "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3",
           "RAY_health_check_initial_delay_ms": "1000"}
    env.pop("RAY_ADDRESS", None)
    gcs = _port()
    common = [f"--temp-dir={temp}", "--disable-usage-stats", "--object-store-memory=150000000"]

    def node(cpus: int, tag: str) -> int:
        port = _port()
        subprocess.run([RAY, "start", f"--address=127.0.0.1:{gcs}", f"--num-cpus={cpus}", f"--node-manager-port={port}",
                        f"--dashboard-agent-listen-port={_port()}", f"--resources={json.dumps({tag: 1})}", *common],
                       env=env, check=True, capture_output=True, timeout=120)
        return port

    def raylet(port: int) -> int:
        return next(pid for pid, (_, cmd) in _procs().items() if "raylet" in cmd and f"--node_manager_port={port}" in cmd)

    def workers(port: int) -> list[str]:
        procs, tree = _procs(), _tree({raylet(port)})
        return [procs[p][1] for p in tree if p in procs and procs[p][1].startswith("ray::")]

    driver = None
    out = tmp_path / "out"
    try:
        # a head that runs nothing (as on a real cluster) and two worker nodes of 2 CPUs: either
        # can hold the whole pipeline (mask 0.5 + generator 0.5 + writers 0.25 CPU)
        subprocess.run([RAY, "start", "--head", f"--port={gcs}", "--num-cpus=0", "--include-dashboard=false",
                        f"--ray-client-server-port={_port()}", f"--dashboard-agent-listen-port={_port()}", *common],
                       env=env, check=True, capture_output=True, timeout=120)
        nodes = [node(2, "a"), node(2, "b")]
        driver = subprocess.Popen([sys.executable, "-c", _DRIVER, json.dumps({**cfg, "out": str(out), "address": f"127.0.0.1:{gcs}"})],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 300
        while time.time() < deadline and len(list((out / "_index").glob("*"))) < 2 and driver.poll() is None:
            time.sleep(0.2)
        assert driver.poll() is None, driver.stdout.read()
        # the node running the generator actor dies: raylet, object store, every worker
        lost = next((p for p in nodes if any("ShardGenActor" in c for c in workers(p))), None)
        lost = lost or max(nodes, key=lambda p: sum("Map" in c for c in workers(p)))
        on_lost = workers(lost)
        _kill(_tree({raylet(lost)}))
        written = len(list((out / "_index").glob("*")))
        assert written < N // PER, "the run finished before the node could be killed"
        assert any("Map" in c for c in on_lost), on_lost  # pipeline actors were on the lost node
        log, _ = driver.communicate(timeout=300)
        assert driver.returncode == 0 and f"DONE {N}" in log, log
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
        _kill(_tree({pid for pid, (_, cmd) in _procs().items() if str(temp) in cmd}))
        shutil.rmtree(temp, ignore_errors=True)
    res = verify_output(str(out))
    assert res["problems"] == [] and res["n_samples"] == N
    got = _shards(out)
    ids = sorted(i for data in got.values() for i in pq.read_table(__import__("io").BytesIO(data)).column("sample_id").to_pylist())
    assert ids == list(range(N))
    assert got == _shards(clean)
