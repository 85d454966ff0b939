"""Soak: ``generate`` on local Ray for N minutes while a worker process is killed every K seconds.

Runs the same small generation (``--samples`` per run, shards of ``--shard-size``) into successive
output folders, again and again until ``--minutes`` have passed. A killer thread picks, every
``--kill-every`` seconds, a random live process of the run's mask actors, generator actors or
writer tasks and kills it with SIGKILL (as a crashed or preempted worker dies). The processes are
known from a test-only ``fault_hook`` the stages call before each shard (it records the caller's
pid; it never kills), so only this run's own Ray workers are ever killed.

Ray restarts the actor or retries the task; a run whose actor used up its restarts fails, and is
then re-run on the same output (it resumes from the listing), as an operator would. At the end
every output is checked from the Parquet itself: the sample ids 0..N-1 each exactly once
(duplicates and lost ids counted, not assumed), ``rbcray verify`` finds no problem, and every
shard is byte-identical to a clean run made first without any kill.

Inputs are small and real: 3 annotated Chula images give the statistics and shape bank, and a
tiny pix2pixHD is trained on them briefly (as in ``bench_resume.py``).

Ends with: ``samples=<int> duplicates=<int> lost=<int> restarts=<int> runs=<int> reruns=<int>
outputs=<int> identical=<0|1> minutes=<float>`` (``restarts``: processes killed, each restarted or
retried by Ray).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow.parquet as pq  # noqa: E402
from bench_resume import tiny_inputs  # noqa: E402

from rbcray.config import from_dict  # noqa: E402
from rbcray.errors import RbcrayError  # noqa: E402
from rbcray.generate.config import GenerateConfig  # noqa: E402
from rbcray.generate.engine import prepare, run_local  # noqa: E402
from rbcray.generate.verify import verify_output  # noqa: E402

STAGES = {"mask": "mask actor", "generate": "generator actor", "write": "writer task", "index": "writer task"}


def registrar(folder: str):
    """A fault hook that only records which process runs which stage (a file per pid)."""

    def hook(stage: str, k: int) -> None:
        import os

        open(os.path.join(folder, f"{stage}-{os.getpid()}"), "a").close()

    return hook


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, from /proc; None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def mine_and_alive(pid: int) -> bool:
    """A live process descending from this one (Ray's raylet is our child, its workers are the
    raylet's): a recycled pid of some other process is never killed."""
    st = _stat(pid)
    if st is None or st[0] == "Z":  # gone, or killed and not yet reaped
        return False
    for _ in range(64):
        if st is None or st[1] <= 1:
            return False
        if st[1] == os.getpid():
            return True
        st = _stat(st[1])
    return False


class Killer(threading.Thread):
    """Every ``every`` seconds: SIGKILL one random live process that registered in ``folder``."""

    def __init__(self, folder: str, every: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.folder, self.every, self.rng = folder, every, random.Random(seed)
        self.stop = threading.Event()
        self.killed: dict[str, int] = {}

    def candidates(self) -> list[tuple[str, int]]:
        out = []
        for name in os.listdir(self.folder):
            stage, pid = name.rsplit("-", 1)
            if mine_and_alive(int(pid)):
                out.append((STAGES[stage], int(pid)))
        return sorted(set(out))

    def run(self) -> None:
        while not self.stop.wait(self.every):
            cands = self.candidates()
            if not cands:
                continue
            kind, pid = self.rng.choice(cands)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue
            self.killed[kind] = self.killed.get(kind, 0) + 1
            print(f"  [{time.strftime('%H:%M:%S')}] killed {kind} pid {pid}", flush=True)


def shard_files(out: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(out).glob("train-*.parquet"))}


def count(out: str, n: int) -> tuple[int, int, int]:
    """(rows, duplicate ids, lost ids) of an output, read from its Parquet shards."""
    ids: list[int] = []
    for data in shard_files(out).values():
        ids += pq.read_table(io.BytesIO(data), columns=["sample_id"]).column("sample_id").to_pylist()
    unique = set(ids)
    return len(ids), len(ids) - len(unique), len(set(range(n)) - unique)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="how long to keep generating (default 10)")
    ap.add_argument("--kill-every", type=float, default=15.0, help="seconds between kills (default 15)")
    ap.add_argument("--samples", type=int, default=24, help="samples per run (default 24)")
    ap.add_argument("--shard-size", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    ap.add_argument("--seed", type=int, default=0, help="seed of the killer's choices")
    ap.add_argument("--workdir", help="keep inputs and outputs here (default: a temporary folder)")
    args = ap.parse_args(argv)

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    tmp = Path(args.workdir or tempfile.mkdtemp(prefix="rbcray-soak-"))
    tmp.mkdir(parents=True, exist_ok=True)
    t_in = time.perf_counter()
    if any((tmp / "model").rglob("model.json")) and (tmp / "shapes.parquet").exists() and (tmp / "stats.json").exists():
        inputs = {"checkpoint": str(tmp / "model"), "shapes": str(tmp / "shapes.parquet"), "stats": str(tmp / "stats.json")}
    else:  # (a --workdir of an earlier soak keeps its inputs)
        inputs = tiny_inputs(tmp)
    print(f"inputs (3 annotated Chula images, tiny pix2pixHD) in {time.perf_counter() - t_in:.0f} s")

    def cfg(out: Path) -> GenerateConfig:
        return from_dict(GenerateConfig, {**inputs, "out": str(out), "num_samples": args.samples, "width": 64, "height": 48,
                                          "shard_size": args.shard_size, "batch_size": 2, "cells_mean": 4.0, "cells_std": 0.0,
                                          "cell_size": 14.0, "progress": False})

    clean = tmp / "clean"
    if clean.exists():
        shutil.rmtree(clean)
    run_local(prepare(cfg(clean), log=lambda m: None), log=lambda m: None)
    reference = shard_files(str(clean))
    print(f"clean reference: {args.samples} samples in {len(reference)} shards (one process, no kills)")

    from rbcray.distributed.generate import run_ray
    from rbcray.distributed.runtime import init_ray

    init_ray(num_cpus=args.cpus, object_store_memory=500_000_000, log_to_driver=False)
    pids = tmp / "pids"
    shutil.rmtree(pids, ignore_errors=True)
    pids.mkdir()
    hook = registrar(str(pids))
    killer = Killer(str(pids), args.kill_every, args.seed)
    t0 = time.perf_counter()
    deadline = t0 + args.minutes * 60
    killer.start()
    outputs: list[Path] = []
    runs = reruns = 0
    for old in tmp.glob("out-*"):
        shutil.rmtree(old)
    while time.perf_counter() < deadline:
        out = tmp / f"out-{len(outputs):04d}"
        outputs.append(out)
        while True:  # the same command again until the output is complete (a resume)
            runs += 1
            t = time.perf_counter()
            try:
                plan = prepare(cfg(out), log=lambda m: None)
                resumed = len(plan.done)
                run_ray(plan, log=lambda m: None, fault_hook=hook)
            except RbcrayError as e:
                reruns += 1
                print(f"  {out.name}: run failed ({str(e)[:160]}); running it again", flush=True)
                continue
            print(f"  {out.name}: complete in {time.perf_counter() - t:.1f} s"
                  + (f" (resumed with {resumed} shard(s) done)" if resumed else ""), flush=True)
            break
    killer.stop.set()
    killer.join()
    minutes = (time.perf_counter() - t0) / 60

    samples = duplicates = lost = 0
    identical = True
    for out in outputs:
        rows, dup, miss = count(str(out), args.samples)
        samples, duplicates, lost = samples + rows, duplicates + dup, lost + miss
        problems = verify_output(str(out), log=None)["problems"]
        same = shard_files(str(out)) == reference
        identical &= same and not problems
        if dup or miss or problems or not same:
            print(f"  {out.name}: {rows} rows, {dup} duplicate(s), {miss} lost, {len(problems)} problem(s), "
                  f"{'identical' if same else 'DIFFERENT'} shards {problems[:1]}")
    restarts = sum(killer.killed.values())
    print(f"{len(outputs)} outputs of {args.samples} samples in {minutes:.1f} min on {os.cpu_count()} CPU(s); "
          f"{runs} runs ({reruns} re-run after a failure); killed: "
          + (", ".join(f"{v} {k}(s)" for k, v in sorted(killer.killed.items())) or "nothing"))
    print(f"samples={samples} duplicates={duplicates} lost={lost} restarts={restarts} runs={runs} reruns={reruns} "
          f"outputs={len(outputs)} identical={int(identical)} minutes={minutes:.1f}")
    return 0 if (duplicates == 0 and lost == 0 and identical) else 1


if __name__ == "__main__":
    raise SystemExit(main())
