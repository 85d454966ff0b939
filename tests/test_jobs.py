"""``ray job submit`` end to end against a local ``ray start --head`` (issue 5: jobs/generate.py).

The head gets a private --temp-dir; every process of it has that path on its command line, which
is how the test stops exactly that cluster (``ray stop`` would stop every Ray on the machine).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from rbcray.generate.verify import verify_output

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_matching(text: str) -> None:
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture(scope="module")
def ray_head():
    """A real Ray head (dashboard + job server) on loopback, auth disabled for the local test."""
    tmp = tempfile.mkdtemp(prefix="rbh", dir="/tmp")
    dash = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    ray_bin = str(Path(sys.executable).parent / "ray")
    # every fixed default port gets a free one: the test session's own Ray (ray.init) already holds
    # the defaults (the dashboard agent's 52365 above all), and a head whose agent cannot bind
    # never accepts jobs ("No available agent")
    ports = [f"--{name}={_free_port()}" for name in (
        "port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
        "runtime-env-agent-port", "ray-client-server-port", "node-manager-port", "object-manager-port")]
    cmd = [ray_bin, "start", "--head", *ports, f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1",
           "--num-cpus=2", "--object-store-memory=400000000", f"--temp-dir={tmp}", "--disable-usage-stats"]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=120)
    address = f"http://127.0.0.1:{dash}"
    for _ in range(60):
        try:
            with socket.create_connection(("127.0.0.1", dash), timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    yield address, env
    _kill_matching(tmp)


def test_generate_job_runs_through_ray_job_submit(ray_head, inputs, tmp_path) -> None:
    address, env = ray_head
    out = tmp_path / "job-out"
    ray_bin = str(Path(sys.executable).parent / "ray")
    cmd = [ray_bin, "job", "submit", "--address", address, "--working-dir", str(ROOT), "--",
           "python", "jobs/generate.py", "--checkpoint", inputs["checkpoint"], "--shapes", inputs["shapes"],
           "--stats", inputs["stats"], "--num-samples", "4", "--out", str(out), "--width", "96", "--height", "96",
           "--shard-size", "2", "--no-progress"]
    # Right after `ray start` the dashboard answers before its job agent has registered; the
    # server then refuses with "No available agent" (nothing is created), so retrying is safe.
    deadline = time.monotonic() + 120
    while True:
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
        if "No available agent" not in res.stdout + res.stderr or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "succeeded" in res.stdout + res.stderr
    v = verify_output(str(out))
    assert v["problems"] == [] and v["n_samples"] == 4
