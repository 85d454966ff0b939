"""Starting (or joining) Ray the same way everywhere in rbcray.

Inside ``ray job submit`` (``RAY_ADDRESS`` is set) or with an explicit address, rbcray joins that
cluster. Otherwise it starts a private local instance (``address="local"``), so a stray
``ray start --head`` on the machine is never joined by accident.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from rbcray.errors import RbcrayError

# No usage reporting, ever (the brief's machines have no internet, and users did not opt in).
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


#: Ray loggers whose warnings are only noise on a local instance without the dashboard
_NOISY_WITHOUT_DASHBOARD = ("ray.train.v2._internal.execution.controller.placement_group_cleaner",)


def quiet_worker_logs() -> None:
    """Worker-process setup hook of local instances: silence :data:`_NOISY_WITHOUT_DASHBOARD`."""
    for name in _NOISY_WITHOUT_DASHBOARD:
        logging.getLogger(name).setLevel(logging.ERROR)


def init_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
    include_dashboard: bool = False,
    **kwargs: Any,
) -> dict[str, float]:
    """Start or join Ray once per process; returns the cluster's resources.

    ``address``: ``None`` joins ``$RAY_ADDRESS`` when set, else starts a local instance;
    ``"auto"`` joins a running ``ray start`` cluster; anything else is passed to ``ray.init``.
    """
    import ray

    if ray.is_initialized():
        return dict(ray.cluster_resources())
    if address is None and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]
    opts: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address is None or address == "local":
        opts.update(address="local", include_dashboard=include_dashboard)
        if not include_dashboard:
            # without the dashboard there is no State API; Ray Train's placement-group cleaner
            # then warns once a second for the whole fit (hundreds of lines in the demo)
            opts["runtime_env"] = {"worker_process_setup_hook": "rbcray.distributed.runtime.quiet_worker_logs"}
        if num_cpus is not None:
            opts["num_cpus"] = num_cpus
        if object_store_memory is not None:
            opts["object_store_memory"] = object_store_memory
    else:
        opts["address"] = address
    opts.update(kwargs)
    where = "a local Ray instance" if opts["address"] == "local" else f"the Ray cluster at {opts['address']}"
    if opts["address"] not in ("local", "auto"):
        _probe_gcs(str(opts["address"]), where)
    try:
        ray.init(**opts)
    except (ConnectionError, RuntimeError, ValueError, OSError, TimeoutError) as e:
        # Ray's own message, one line: a traceback through ray.init helps nobody
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise RbcrayError(f"cannot start or join {where}: {first[:300]}") from None
    # Ray Data prints a progress bar per operator; keep them, but not the verbose execution logs.
    return dict(ray.cluster_resources())


def _probe_gcs(address: str, where: str, timeout_s: float = 5.0) -> None:
    """A ``host:port`` address must answer before ``ray.init``, which would otherwise retry a
    dead address for minutes."""
    import socket



    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return  # not host:port (e.g. a cluster name Ray resolves itself): let ray.init judge
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise RbcrayError(f"cannot start or join {where}: nothing answers at {hostport} ({e.strerror or e})") from None


def bundles_that_fit(nodes: list[dict[str, float]], need: dict[str, float]) -> int:
    """How many actors/workers asking ``need`` (CPU, GPU, memory) the nodes hold, each on one node."""
    total = 0
    for node in nodes:
        counts = [node.get(k, 0.0) / v for k, v in need.items() if v]
        total += int(min(counts)) if counts else 0
    return total


def wait_for_bundles(need: dict[str, float], count: int, timeout_s: float, what: str,
                     log: Any = print, nodes_fn: Any = None, poll_s: float = 5.0) -> None:
    """Ask the autoscaler for ``count`` bundles of ``need`` and wait until that many fit on live
    nodes; after ``timeout_s`` raise one line saying what the GPU nodes offer."""
    import time

    need = {k: float(v) for k, v in need.items() if v}
    if nodes_fn is None:
        import ray

        def nodes_fn() -> list[dict[str, float]]:
            return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]

        try:
            from ray.autoscaler.sdk import request_resources

            request_resources(bundles=[need] * count)
        except Exception:  # noqa: BLE001 - no autoscaler (a fixed cluster): just wait and see
            pass
    deadline = time.monotonic() + timeout_s
    said = False
    desc = " + ".join(f"{v / 2**30:.0f} GiB" if k == "memory" else f"{v:g} {k}" for k, v in need.items())
    while True:
        nodes = nodes_fn()
        if bundles_that_fit(nodes, need) >= count:
            return
        if time.monotonic() >= deadline:
            offers = sorted({f"{n.get('GPU', 0):g} GPU + {n.get('CPU', 0):g} CPU + {n.get('memory', 0) / 2**30:.0f} GiB"
                             for n in nodes if n.get("GPU")})
            have = f"GPU nodes offer {', '.join(offers)}" if offers else "the cluster has no GPU node"
            raise RbcrayError(f"waited {timeout_s:.0f} s for {count} {what} of {desc}: {have}")
        if not said:
            log(f"waiting up to {timeout_s:.0f} s for {count} {what} of {desc} to fit on the cluster ...")
            said = True
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
