"""The generation engine end to end: real annotated Chula -> shapes, stats, tiny pix2pixHD -> shards.

Covers determinism across actor counts and batch sizes, re-runs that write only missing shards,
killed actors, the loopback S3 server, verify, and bad inputs.
"""

from __future__ import annotations

import io
import json
import os
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from rbcray.cli import main
from rbcray.config import from_dict
from rbcray.generate.config import GenerateConfig
from rbcray.generate.engine import prepare, run_local
from rbcray.generate.verify import verify_output
from rbcray.io import decode_png

N = 10  # samples per run: 4 shards of 3, the last of 1


def _args(inputs: dict[str, str], out: str, *extra: str) -> list[str]:
    return ["generate", "--checkpoint", inputs["checkpoint"], "--shapes", inputs["shapes"], "--stats", inputs["stats"],
            "--num-samples", str(N), "--out", out, "--width", "128", "--height", "96", "--shard-size", "3",
            "--no-progress", *extra]


def _shard_bytes(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("shard-*.parquet"))}


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    """The run made without Ray, in one process: what every other run must equal byte for byte."""
    out = tmp_path_factory.mktemp("ref") / "out"
    assert main(_args(inputs, str(out), "--local", "--png", "--coco")) == 0
    return out


def test_local_run_is_complete_and_readable_without_rbcray(reference) -> None:
    assert verify_output(str(reference))["problems"] == []
    manifest = json.loads((reference / "manifest.json").read_text())
    assert manifest["n_samples"] == N and [s["count"] for s in manifest["shards"]] == [3, 3, 3, 1]
    df = pd.concat(pd.read_parquet(p) for p in sorted(reference.glob("shard-*.parquet")))
    assert df["sample_id"].tolist() == list(range(N)) and (df["width"] == 128).all() and (df["height"] == 96).all()
    row = df.iloc[0]
    img = decode_png(row["image"])
    assert img.shape == (96, 128, 3) and img.dtype == np.uint8 and img.std() > 1
    assert len(row["boxes"]) == row["n_cells"] == len(row["styles"]) > 0
    assert set(json.loads(row["config"])["synth"]) >= {"cells_mean", "cell_size", "placement"}
    # the PNG tree and COCO JSON hold the same samples
    assert len(list((reference / "images").glob("*.png"))) == N
    assert (reference / "instances" / "000000000.png").read_bytes() == row["instance_mask"]
    coco = json.loads((reference / "coco.json").read_text())
    assert len(coco["images"]) == N and len(coco["annotations"]) == int(df["n_cells"].sum())


def test_ray_run_equals_local_run_whatever_the_actors_and_batches(inputs, reference, tmp_path, ray_session) -> None:
    out = tmp_path / "out"
    assert main(_args(inputs, str(out), "--mask-actors", "2", "--batch-size", "2", "--png", "--coco")) == 0
    assert _shard_bytes(out) == _shard_bytes(reference)
    assert (out / "coco.json").read_bytes() == (reference / "coco.json").read_bytes()


def test_rerun_writes_only_missing_shards(inputs, reference, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    (out / "manifest.json").unlink()  # as if the run had crashed after its third shard
    (out / "shard-000000009-000000010.parquet").unlink()
    before = {p: p.stat().st_mtime_ns for p in out.glob("shard-*.parquet")}
    capsys.readouterr()
    assert main(_args(inputs, str(out), "--local", "--png", "--coco")) == 0
    assert "resuming: 3 of 4 shard(s) already written" in capsys.readouterr().err
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # finished shards untouched
    assert _shard_bytes(out) == _shard_bytes(reference)


def test_killed_actors_lose_and_duplicate_nothing(inputs, reference, tmp_path, ray_session, monkeypatch) -> None:
    from rbcray.distributed import generate as g

    out = tmp_path / "out"
    cfg = from_dict(GenerateConfig, {**{k: v for k, v in inputs.items()}, "out": str(out), "num_samples": N,
                                     "width": 128, "height": 96, "shard_size": 3, "png": True, "coco": True, "progress": False})
    plan = prepare(cfg, log=lambda m: None)
    for stage, shard in (("mask", 1), ("generate", 2)):  # one actor of each stage dies mid-run
        marker = tmp_path / f"killed-{stage}"
        monkeypatch.setenv(g.FAULT_ENV, f"{stage}:{shard}:{marker}")
        # Ray workers read the variable when they start; pass it through the actors' runtime env
        manifest = g.run_ray(plan if stage == "mask" else prepare(cfg, log=lambda m: None), log=lambda m: None,
                             runtime_env={"env_vars": {g.FAULT_ENV: os.environ[g.FAULT_ENV]}})
        assert marker.exists(), f"the {stage} actor was not killed"
        res = verify_output(str(out))
        assert res["problems"] == [] and res["n_samples"] == N and manifest["n_samples"] == N
        assert _shard_bytes(out) == _shard_bytes(reference)
        (out / "manifest.json").unlink()
        for p in out.glob("shard-*.parquet"):
            p.unlink()


def test_s3_output_and_verify_cli(inputs, reference, s3_server, ray_session, capsys) -> None:
    import boto3

    bucket = s3_server()
    uri = f"s3://{bucket}/synth/v1"
    assert main(_args(inputs, uri, "--png", "--coco")) == 0
    capsys.readouterr()
    assert main(["verify", uri, "--quiet"]) == 0
    assert f"{uri}: OK, {N} samples in 4 shard(s)" in capsys.readouterr().out
    s3 = boto3.client("s3")
    body = s3.get_object(Bucket=bucket, Key="synth/v1/shard-000000000-000000003.parquet")["Body"].read()
    assert body == (reference / "shard-000000000-000000003.parquet").read_bytes()
    assert pq.read_table(io.BytesIO(body)).num_rows == 3


def test_verify_finds_problems(reference, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    p = out / "shard-000000003-000000006.parquet"
    p.write_bytes(p.read_bytes()[:-100])
    assert main(["verify", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "shard-000000003-000000006.parquet: size or SHA-256 differs" in err and "3 sample id(s) missing" in err
    (out / "manifest.json").unlink()
    assert main(["verify", str(out)]) == 2
    assert "no manifest.json (the run is incomplete" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--num-samples": "0"}, "--num-samples 0 must be at least 1"),
        ({"--stats": "/no/such/stats.json"}, "/no/such/stats.json: statistics JSON (from 'rbcray stats') not found"),
        ({"--shapes": "/no/such/shapes.parquet"}, "/no/such/shapes.parquet"),
        ({"--checkpoint": "/no/such/run"}, "/no/such/run"),
        ({"--style": "99"}, "--style 99: the model has 3 style clusters"),
        ({"--style": "blue"}, "--style 'blue' must be 'random' or a cluster index"),
        ({"--out": "s3://no-such-bucket-rbcray/x"}, "s3://no-such-bucket-rbcray/x: output location is not writable"),
    ],
)
def test_bad_inputs_fail_before_any_work(inputs, tmp_path, capsys, s3_server, change, message) -> None:
    argv = _args(inputs, str(tmp_path / "out"), "--local")
    for k, v in change.items():
        if k in argv:
            argv[argv.index(k) + 1] = v
        else:
            argv += [k, v]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "out" / "manifest.json").exists() and not list((tmp_path).glob("out/shard-*"))


def test_rerun_with_another_config_is_refused(inputs, reference, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    assert main(_args(inputs, str(out), "--local", "--png", "--coco", "--seed", "7")) == 2
    assert "holds a run with a different configuration (generate differ)" in capsys.readouterr().err


def test_run_local_api(inputs, tmp_path) -> None:
    cfg = from_dict(GenerateConfig, {**inputs, "out": str(tmp_path / "o"), "num_samples": 2, "width": 64, "height": 64,
                                     "cells_mean": 3.0, "cells_std": 0.0, "cell_size": 14.0})
    manifest = run_local(prepare(cfg, log=lambda m: None), log=lambda m: None)
    assert manifest["n_samples"] == 2 and manifest["config"]["synth"]["cells_mean"] == 3.0
    # what the generator, bank and statistics learned from (the whole 3-image folder here)
    prov = manifest["provenance"]
    assert set(prov) == {"generator", "shapes", "stats"}
    assert all(r["split"] == "all" and r["n_images"] == 3 for r in prov.values())
    assert prov["generator"]["stems"] == prov["shapes"]["stems"] == prov["stats"]["stems"]
