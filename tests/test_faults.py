"""Faults a cloud run meets, each with an exact outcome: the re-run (or the run itself) ends with
N unique sample ids and the same shards, byte for byte and row for row, as a clean run.

- a writer process killed with half a shard object written, and killed with the object in place
  but not its index marker: locally and on the loopback S3 server (moto);
- a Ray-mode run to s3:// whose writer task dies mid-write (Ray retries it).
"""

from __future__ import annotations

import io
import json
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest
from faults import generate_killed, kill_once

from rbcray import storage
from rbcray.config import from_dict
from rbcray.errors import RbcrayError
from rbcray.generate import objects
from rbcray.generate.config import GenerateConfig
from rbcray.generate.engine import prepare, run_local
from rbcray.generate.lease import LEASE
from rbcray.generate.shards import INDEX, MANIFEST
from rbcray.generate.verify import verify_output

N, PER = 6, 2  # 3 shards of 2 samples


def _cfg(inputs: dict[str, str], out: str, **extra) -> dict:
    return {**inputs, "out": out, "num_samples": N, "width": 64, "height": 48, "shard_size": PER, "batch_size": 2,
            "cells_mean": 4.0, "cells_std": 0.0, "cell_size": 14.0, "progress": False, **extra}


def _shards(out: str) -> dict[str, bytes]:
    """Every complete-looking shard object under ``out`` (names ``train-*.parquet``) and its bytes."""
    names = [n for n in storage.listdir(out) if n.startswith("train-") and n.endswith(".parquet")]
    return {n: storage.read_bytes(storage.join(out, n)) for n in names}


def _rows(shards: dict[str, bytes]) -> list[dict]:
    """The decoded rows of all shards, by sample id (PNG bytes, boxes, styles ... as stored)."""
    rows = [r for data in shards.values() for r in pq.read_table(io.BytesIO(data)).to_pylist()]
    return sorted(rows, key=lambda r: r["sample_id"])


def _assert_same_as_clean(out: str, clean: dict[str, bytes]) -> None:
    res = verify_output(out)
    assert res["problems"] == [] and res["n_samples"] == N
    got = _shards(out)
    rows = _rows(got)
    ids = [r["sample_id"] for r in rows]
    assert ids == list(range(N)) and len(set(ids)) == N  # N unique ids, none lost, none twice
    assert rows == _rows(clean)  # the same samples, decoded column by column
    assert got == clean  # and the same shard bytes
    manifest = json.loads(storage.read_bytes(storage.join(out, MANIFEST)))
    assert manifest["n_samples"] == N and [s["name"] for s in manifest["shards"]] == sorted(clean)


def _age_lease(out: str) -> None:
    """As if the crashed run's last heartbeat were an hour old (the lease a killed process leaves)."""
    uri = storage.join(out, LEASE)
    holder = json.loads(objects.read(uri))
    holder["heartbeat"] = time.time() - 3600
    objects.write(uri, json.dumps(holder).encode())


@pytest.fixture(scope="module")
def clean(inputs, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("clean") / "out"
    run_local(prepare(from_dict(GenerateConfig, _cfg(inputs, str(out))), log=lambda m: None), log=lambda m: None)
    shards = _shards(str(out))
    assert len(shards) == 3
    return shards


def _killed_writer_then_rerun(inputs, clean, out: str, where: tuple, marker) -> None:
    generate_killed(_cfg(inputs, out), where, marker)
    k = where[1]
    name = f"train-{k * PER:09d}-{(k + 1) * PER:09d}.parquet"
    # what the crash leaves: no manifest, the shards before k complete, shard k not listed as done
    assert objects.read(storage.join(out, MANIFEST)) is None
    assert not [m for m in objects.list_sizes(storage.join(out, INDEX)) if m.startswith(f"{k * PER:09d}-")]
    visible = _shards(out)
    if where[0] == "write":  # half an object: never visible under a shard's name
        assert name not in visible
    else:  # the object was complete, its marker missing: the re-run must not trust it
        assert visible[name] == clean[name]
    assert sorted(visible) == sorted(clean)[: k + (where[0] == "index")]
    if not storage.is_remote(out):  # the partial temporary file is hidden from every reader
        df = pd.read_parquet(out)
        assert sorted(df["sample_id"]) == list(range(len(visible) * PER))
    cfg = from_dict(GenerateConfig, _cfg(inputs, out))
    with pytest.raises(RbcrayError, match="another run holds this output"):
        prepare(cfg, log=lambda m: None)  # the dead run's lease is still there ...
    _age_lease(out)  # ... until its heartbeat is stale: then --takeover
    logs: list[str] = []
    plan = prepare(from_dict(GenerateConfig, _cfg(inputs, out, takeover=True)), log=logs.append)
    assert [s.index for s in plan.todo] == list(range(k, 3))  # shard k is redone, the earlier ones kept
    run_local(plan, log=lambda m: None)
    _assert_same_as_clean(out, clean)


@pytest.mark.parametrize("where", [("write", 1), ("index", 1)], ids=["mid-object", "before-marker"])
def test_writer_killed_local(inputs, clean, tmp_path, where) -> None:
    out = str(tmp_path / "out")
    _killed_writer_then_rerun(inputs, clean, out, where, tmp_path / "killed")
    assert not list((tmp_path / "out").glob(".train-*"))  # the dead writer's temporary file was removed


@pytest.mark.parametrize("where", [("write", 2), ("index", 0)], ids=["mid-object", "before-marker"])
def test_writer_killed_s3(inputs, clean, s3_server, tmp_path, where) -> None:
    out = f"s3://{s3_server()}/run"
    _killed_writer_then_rerun(inputs, clean, out, where, tmp_path / "killed")


def test_ray_writer_killed_mid_upload_to_s3(inputs, clean, s3_server, ray_session, tmp_path) -> None:
    """A writer task dies with half of shard 1 uploaded: Ray retries it, the run completes."""
    from rbcray.distributed.generate import run_ray

    out = f"s3://{s3_server()}/ray"
    cfg = from_dict(GenerateConfig, _cfg(inputs, out))
    marker = tmp_path / "killed-writer"
    run_ray(prepare(cfg, log=lambda m: None), log=lambda m: None, fault_hook=kill_once(("write", 1), marker))
    assert marker.exists(), "the writer was not killed"
    _assert_same_as_clean(out, clean)


@pytest.mark.slow
def test_ray_run_on_s3_stopped_then_resumed(inputs, clean, s3_server, ray_session) -> None:
    """A Ray-mode run to s3:// stops on shard 2 (its generator fails for good); the same command
    again resumes from the listing, makes only what is missing, and equals a clean run."""
    from rbcray.distributed.generate import run_ray

    out2 = f"s3://{s3_server()}/ray"
    cfg2 = from_dict(GenerateConfig, _cfg(inputs, out2))
    index = storage.join(out2, INDEX)

    def stop_at_2(stage: str, k: int) -> None:
        if stage == "generate" and k == 2:  # once shards 0 and 1 are in (bounded wait), fail for good
            import time

            from rbcray.generate import objects

            deadline = time.time() + 60
            while len(objects.list_sizes(index)) < 2 and time.time() < deadline:
                time.sleep(0.2)
            raise RuntimeError("injected failure on shard 2")

    with pytest.raises(RbcrayError) as stopped:
        run_ray(prepare(cfg2, log=lambda m: None), log=lambda m: None, fault_hook=stop_at_2)
    assert "\n" not in str(stopped.value)  # one line
    assert objects.read(storage.join(out2, MANIFEST)) is None and objects.read(storage.join(out2, LEASE)) is None
    assert "train-000000004-000000006.parquet" not in _shards(out2)
    # the same command again resumes from the listing: only what is missing is made
    logs: list[str] = []
    plan = prepare(cfg2, log=logs.append)
    done = sorted(plan.done)  # shards 0 and 1, unless one was still queued behind shard 2
    assert 1 <= len(done) <= 2 and set(done) <= set(sorted(clean)[:2])
    assert [s.index for s in plan.todo] == [k for k in range(3) if sorted(clean)[k] not in done]
    assert logs == [f"resuming: {len(done)} of 3 shard(s) already written, {3 - len(done)} to go"]
    run_ray(plan, log=lambda m: None)
    _assert_same_as_clean(out2, clean)
