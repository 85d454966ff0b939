"""The generation engine at cloud scale (issue 12): readers, one run per output, resume from one
listing, faults, COCO fragments, declared resources. Tiny shards and images; the loopback S3
server (moto) stands in for object storage."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from rbcray.cli import main
from rbcray.config import from_dict
from rbcray.errors import ConfigError, RbcrayError
from rbcray.generate import objects
from rbcray.generate.config import GenerateConfig
from rbcray.generate.engine import prepare, run_local
from rbcray.generate.lease import LEASE, Lease
from rbcray.generate.verify import verify_output

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from moto_counting import counting_s3  # noqa: E402

N = 4


def _cfg(inputs: dict[str, str], out: str, **extra) -> GenerateConfig:
    data = {**inputs, "out": out, "num_samples": N, "width": 64, "height": 48, "shard_size": 2, "batch_size": 2,
            "cells_mean": 4.0, "cells_std": 0.0, "cell_size": 14.0, "progress": False, **extra}
    return from_dict(GenerateConfig, data)


@pytest.fixture(scope="module")
def small(inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small") / "out"
    run_local(prepare(_cfg(inputs, str(out), coco=True, png=True), log=lambda m: None), log=lambda m: None)
    return out


def test_pandas_duckdb_and_hf_datasets_read_the_output(small, tmp_path, monkeypatch) -> None:
    import duckdb
    from PIL import Image

    df = pd.read_parquet(small)
    assert sorted(df["sample_id"]) == list(range(N))
    n = duckdb.sql(f"select count(*) from read_parquet('{small}/**/*.parquet')").fetchall()[0][0]
    assert n == N
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets

    ds = datasets.load_dataset("parquet", data_dir=str(small), split="train", cache_dir=str(tmp_path / "hf"))
    assert len(ds) == N
    row = ds[0]
    assert isinstance(row["image"], Image.Image) and row["image"].size == (64, 48) and row["image"].mode == "RGB"
    assert isinstance(row["instance_mask"], Image.Image) and isinstance(row["color_mask"], Image.Image)
    assert np.array(row["instance_mask"]).max() >= 1
    # PNG columns: plain encoding (no dictionary), uncompressed; run constants in the footer
    f = pq.ParquetFile(next(small.glob("train-*.parquet")))
    cols = {f.metadata.row_group(0).column(i).path_in_schema: f.metadata.row_group(0).column(i) for i in range(f.metadata.num_columns)}
    img = cols["image.bytes"]
    assert not any("DICTIONARY" in e for e in img.encodings) and img.compression == "UNCOMPRESSED"
    assert json.loads(f.schema_arrow.metadata[b"rbcray"])["config"]["per_shard"] == 2


def test_coco_fragments_and_streamed_export(small, tmp_path) -> None:
    from pycocotools.coco import COCO

    frags = sorted((small / "_coco").glob("part-*.json"))
    assert [p.name for p in frags] == ["part-000000000-000000002.json", "part-000000002-000000004.json"]
    df = pd.read_parquet(small).sort_values("sample_id")
    assert main(["export-coco", str(small), "--out", str(tmp_path / "coco.json")]) == 0
    coco = COCO(str(tmp_path / "coco.json"))
    assert len(coco.getImgIds()) == N and len(coco.getAnnIds()) == int(df["n_cells"].sum())
    # every annotation decodes to its cell of the instance mask
    from rbcray.io import decode_png

    inst = decode_png(df.iloc[1]["instance_mask"]["bytes"])
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=[2])):
        assert np.array_equal(coco.annToMask(ann).astype(bool), inst == ann["instance_id"])
    assert coco.imgs[2]["file_name"] == "_png/images/000000001.png" and (small / coco.imgs[2]["file_name"]).is_file()


def test_box_strip_rle_equals_full_frame_rle() -> None:
    from pycocotools import mask as mask_utils

    from rbcray.generate.coco import rle_in_box

    rng = np.random.default_rng(0)
    h, w = 37, 53
    for x0, y0, bw, bh in [(0, 0, 5, 4), (48, 33, 5, 4), (10, 0, 7, 37), (0, 10, 53, 3), (20, 20, 1, 1)]:
        crop = rng.random((bh, bw)) < 0.6
        crop[0, 0] = crop[-1, -1] = True
        full = np.zeros((h, w), np.uint8, order="F")
        full[y0:y0 + bh, x0:x0 + bw] = crop
        want = mask_utils.encode(full)
        got = rle_in_box(crop, x0, y0, h, w)
        assert got["counts"] == want["counts"].decode("ascii") and got["size"] == [h, w]


def test_second_run_on_the_same_output_fails_naming_the_holder(inputs, small, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    holder = Lease(str(out))
    holder.acquire()
    try:
        argv = ["generate", "--checkpoint", inputs["checkpoint"], "--shapes", inputs["shapes"], "--stats", inputs["stats"],
                "--num-samples", "2", "--out", str(out), "--local", "--no-progress"]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"run {holder.run_id} on" in err[0] and "another run holds this output" in err[0]
        assert main([*argv, "--takeover"]) == 2
        assert "--takeover refused" in capsys.readouterr().err
    finally:
        holder.release()
    assert not (out / LEASE).exists()


def _lease_tests(out: str) -> None:
    a = Lease(out, heartbeat_s=3600)
    a.acquire()
    with pytest.raises(RbcrayError, match=f"another run holds this output: run {a.run_id}"):
        Lease(out).acquire()
    # a stale heartbeat (the holder died): --takeover wins, and the old holder learns it lost
    stale = dict(a.record, heartbeat=time.time() - 10_000)
    objects.write(a.uri, json.dumps(stale).encode())
    b = Lease(out, takeover=True)
    b.acquire()
    with pytest.raises(RbcrayError, match=f"lost its lease to run {b.run_id}"):
        a.check()
    a.release()  # does not remove b's lease
    assert json.loads(objects.read(b.uri))["run_id"] == b.run_id
    b.release()
    assert objects.read(b.uri) is None


def test_lease_local_and_on_s3(tmp_path, s3_server) -> None:
    _lease_tests(str(tmp_path / "out"))
    _lease_tests(f"s3://{s3_server()}/x/out")


def test_concurrent_runs_on_s3_exactly_one_gets_the_lease(s3_server) -> None:
    out = f"s3://{s3_server()}/race"
    results: list[str] = []

    def race() -> None:
        lease = Lease(out, heartbeat_s=3600)
        try:
            lease.acquire()
            results.append("won")
        except RbcrayError as e:
            results.append(str(e))

    threads = [threading.Thread(target=race) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("won") == 1 and all("another run holds" in r for r in results if r != "won")


def test_resume_on_s3_lists_once_and_reads_no_shard(inputs) -> None:
    with counting_s3() as s3:
        import boto3

        boto3.client("s3").create_bucket(Bucket="resume")
        out = "s3://resume/run"
        cfg = _cfg(inputs, out, num_samples=6, shard_size=1)
        first = run_local(prepare(cfg, log=lambda m: None), log=lambda m: None)
        objects.remove(f"{out}/_manifest.json")  # as if the run died after its last shard
        s3.reset()
        plan = prepare(cfg, log=lambda m: None)
        assert len(plan.done) == 6 and not plan.todo
        again = run_local(plan, log=lambda m: None)
        reqs = s3.requests()
        assert not [r for r in reqs if r.startswith("GET /resume/run/train-")], reqs  # no shard body read
        assert sum(r.startswith("GET LIST") for r in reqs) == 1, reqs
        assert len(reqs) <= 10, reqs
        assert again["shards"] == first["shards"]


def test_transient_write_failures_are_retried_and_deterministic_ones_name_the_shard(inputs, small, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(objects, "BASE_DELAY_S", 0.001)
    failures: dict[str, int] = {}

    def flaky(op: str, uri: str) -> None:
        if failures.get(uri, 0) < 2:  # every object fails twice, then succeeds
            failures[uri] = failures.get(uri, 0) + 1
            raise objects.TransientStorageError(f"injected 503 on {uri}")

    monkeypatch.setattr(objects, "_write_hook", flaky)
    out = tmp_path / "out"
    run_local(prepare(_cfg(inputs, str(out), coco=True, png=True), log=lambda m: None), log=lambda m: None)
    assert verify_output(str(out))["problems"] == []
    assert {p.name: p.read_bytes() for p in out.glob("train-*")} == {p.name: p.read_bytes() for p in small.glob("train-*")}

    def denied(op: str, uri: str) -> None:
        if "train-000000002" in uri:
            raise PermissionError(13, "Access Denied")

    monkeypatch.setattr(objects, "_write_hook", denied)
    argv = ["generate", "--checkpoint", inputs["checkpoint"], "--shapes", inputs["shapes"], "--stats", inputs["stats"],
            "--num-samples", "4", "--out", str(tmp_path / "out2"), "--width", "64", "--height", "48", "--shard-size", "2",
            "--batch-size", "2", "--local", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("train-000000002-000000004.parquet: write failed: [Errno 13] Access Denied")
    assert not (tmp_path / "out2" / LEASE).exists()


def test_retrying_gives_up_after_bounded_attempts() -> None:
    calls = []

    def always() -> None:
        calls.append(1)
        raise ConnectionResetError("reset")

    with pytest.raises(RbcrayError, match="s3://b/k: storage kept failing after 5 attempts"):
        objects.retrying(always, "s3://b/k", sleep=lambda s: None)
    assert len(calls) == 5
    calls.clear()
    with pytest.raises(FileNotFoundError):
        objects.retrying(lambda: (calls.append(1), (_ for _ in ()).throw(FileNotFoundError("x")))[1], "k")
    assert len(calls) == 1


def test_actors_check_the_inputs_against_the_plan(inputs, small) -> None:
    from rbcray.generate.engine import ShardMasker, ShardTranslator, check_cuda

    with pytest.raises(RbcrayError, match="the generator changed since the run was planned"):
        ShardTranslator(inputs["checkpoint"], None, 2, device="cpu", checkpoint_sha256="0" * 64)
    synth = json.loads((small / "_plan.json").read_text())["synth"]
    with pytest.raises(RbcrayError, match="the shape bank changed since the run was planned"):
        ShardMasker(inputs["shapes"], synth, 0, shapes_sha256="0" * 64)
    import torch

    if not torch.cuda.is_available():  # a GPU was declared, CUDA is unusable: fail, never fall back
        with pytest.raises(RbcrayError, match=r"was given 1 GPU but CUDA is unusable"):
            check_cuda(1.0)
        with pytest.raises(RbcrayError, match="CUDA is unusable"):
            ShardTranslator(inputs["checkpoint"], None, 2, gpus=0.5)
    check_cuda(0.0)


def test_declared_resources_and_waiting_for_them(inputs, tmp_path) -> None:
    from rbcray.cli.generate_cmds import parse_duration, parse_pool
    from rbcray.distributed.generate import check_shared_output, plan_resources, wait_for_resources
    from rbcray.generate.engine import RunPlan

    assert parse_duration("15m") == 900 and parse_duration("20s") == 20 and parse_duration("2h") == 7200
    with pytest.raises(ConfigError, match="--wait-for-resources 'soon'"):
        parse_duration("soon")
    assert parse_pool("1:16", "--gen-actors") == (1, 16) and parse_pool("3", "--gen-actors") == (3, None)
    with pytest.raises(ConfigError, match="MAX at least MIN"):
        parse_pool("4:2", "--mask-actors")
    cfg = _cfg(inputs, str(tmp_path / "o"), gen_gpus=0.5, gen_actors=2, gen_actors_max=8, mask_actors=4, mask_actors_max=32, gen_cpus=3.0)
    plan = RunPlan(cfg, {}, 2, None, {}, "", "", 0)  # type: ignore[arg-type]
    r = plan_resources(plan, {"CPU": 0.0})  # an autoscaling cluster's head alone: nothing changes
    assert (r["gen_actors"], r["gen_actors_max"], r["gen_gpus"], r["gen_cpus"]) == (2, 8, 0.5, 3.0)
    assert (r["mask_actors"], r["mask_actors_max"]) == (4, 32)
    msgs: list[str] = []
    one_gpu_3cpu = [{"CPU": 3.0, "GPU": 1.0, "memory": 14 * 2**30}]
    with pytest.raises(RbcrayError, match=r"waited 0 s for 2 generator actor\(s\) of 0.5 GPU \+ 3 CPU.*GPU nodes offer 1 GPU \+ 3 CPU"):
        wait_for_resources(r, 0.2, msgs.append, nodes_fn=lambda: one_gpu_3cpu, poll_s=0.05)
    wait_for_resources(r, 0.2, msgs.append, nodes_fn=lambda: one_gpu_3cpu * 2, poll_s=0.05)
    cpu_cfg = _cfg(inputs, str(tmp_path / "o"))
    r = plan_resources(RunPlan(cpu_cfg, {}, 2, None, {}, "", "", 0), {"CPU": 2.0})  # type: ignore[arg-type]
    assert not r["declared"] and r["gen_gpus"] == 0 and r["gen_actors"] == 1
    (tmp_path / "o").mkdir()
    with pytest.raises(RbcrayError, match="not visible from node bbbb"):
        check_shared_output(str(tmp_path / "o"), ["aaaa", "bbbb"], lambda node, p: node == "aaaa" and Path(p).exists())
    check_shared_output(str(tmp_path / "o"), ["aaaa", "bbbb"], lambda node, p: Path(p).exists())
    assert list((tmp_path / "o").iterdir()) == []


def test_relative_local_out_is_made_absolute(inputs, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    plan = prepare(_cfg(inputs, "rel/out", num_samples=2), log=lambda m: None)
    try:
        assert plan.cfg.out == str(tmp_path / "rel" / "out")
    finally:
        plan.release()


def test_a_plan_of_a_hundred_million_samples_is_lazy() -> None:
    from rbcray.generate.shards import plan_shards

    p = plan_shards(10**8, 64)
    assert len(p) == 1_562_500 and p[-1].stop == 10**8 and p[-1].count == 64
    assert p.index_of(p[12345].name) == 12345 and p.index_of("train-000000001-000000065.parquet") is None
