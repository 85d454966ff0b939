"""Planning a 10^8-sample run on paper (issue 12): driver memory and plan time, no compute.

Runs what the driver does before the first shard is generated, for ``--samples`` samples at
1920x1200 (shards from the 256 MiB target): ``prepare`` (lease, inputs, plan, one LIST of the
output's ``_index/``) and the indices of the shards to do, which is what the Ray pipeline is built
from. The output is local and empty (a fresh run); ``--resume-fraction`` pre-writes index
markers for that fraction of the shards (a resumed run) to include their parsing.
Tiny real inputs (3 annotated Chula images, a tiny pix2pixHD) as in bench_resume.

Ends with: ``plan_samples=<int> plan_shards=<int> plan_s=<float> driver_peak_mib=<float>``
(peak Python allocations during planning, tracemalloc), ``driver_rss_mib=<float>`` (the
process's peak resident set during planning, Linux VmHWM reset just before: torch, Ray and the
inputs already loaded) and ``rss_before_mib=<float>`` (its resident set just before).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_resume import tiny_inputs  # noqa: E402

from rbcray.config import from_dict  # noqa: E402
from rbcray.generate import shards as S  # noqa: E402
from rbcray.generate.config import GenerateConfig  # noqa: E402
from rbcray.generate.engine import prepare  # noqa: E402


def _vm(key: str) -> float:
    """A /proc/self/status memory figure in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10**8)
    ap.add_argument("--resume-fraction", type=float, default=0.0)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench_plan_"))
    try:
        inputs = tiny_inputs(tmp)
        cfg = from_dict(GenerateConfig, {**inputs, "out": str(tmp / "out"), "num_samples": args.samples, "width": 1920,
                                         "height": 1200, "progress": False})
        if args.resume_fraction > 0:
            plan = prepare(cfg, log=lambda m: None)
            plan.release()
            index = tmp / "out" / S.INDEX
            index.mkdir(parents=True, exist_ok=True)
            for sh in plan.shards[: int(len(plan.shards) * args.resume_fraction)]:
                (index / S.marker_name({"start": sh.start, "stop": sh.stop, "bytes": 100, "sha256": "0" * 64})).touch()
        rss_before = _vm("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
        tracemalloc.start()
        t = time.perf_counter()
        plan = prepare(cfg, log=print)
        todo = plan.todo_indices()
        seconds = time.perf_counter() - t
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        plan.release()
        rss = _vm("VmHWM")
        print(f"{args.samples} samples in {len(plan.shards)} shards of {plan.per_shard}; {len(todo)} to do; "
              f"planned in {seconds:.2f} s, peak Python allocations {peak / 2**20:.1f} MiB, process RSS {rss_before:.0f} MiB "
              f"before, peak {rss:.0f} MiB during planning")
        print(f"plan_samples={args.samples} plan_shards={len(plan.shards)} plan_s={seconds:.3f} "
              f"driver_peak_mib={peak / 2**20:.1f} driver_rss_mib={rss:.0f} rss_before_mib={rss_before:.0f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
