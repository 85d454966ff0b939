"""Shared pytest fixtures: real data location and one Ray instance per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rbcray.data.registry import resolve_dataset

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def chula_root() -> Path:
    """Chula-RBC-12 through the project's own resolution (``../shared/data`` in CI, else download)."""
    return resolve_dataset("chula-rbc-12")


@pytest.fixture(scope="session")
def bccd_root() -> Path:
    """BCCD-TXL through the project's own resolution."""
    return resolve_dataset("bccd-txl-pbc")


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 protocol server (moto) on 127.0.0.1 with dummy credentials, for the whole session.

    Sets ``AWS_ENDPOINT_URL`` and dummy ``AWS_*`` credentials in the environment (before Ray starts,
    so Ray workers inherit them) and yields a function making a fresh bucket: ``bucket = make()``.
    """
    import logging
    import uuid

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log lines on stderr
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)

    def make_bucket() -> str:
        name = f"rbcray-{uuid.uuid4().hex[:12]}"
        boto3.client("s3").create_bucket(Bucket=name)
        return name

    yield make_bucket
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def ray_session(s3_server):
    """One local Ray instance for the whole test session (ray.init takes 6-8 s).

    Depends on ``s3_server`` so that Ray's workers inherit the S3 test endpoint.
    """
    import ray

    from rbcray.distributed.runtime import init_ray

    init_ray(num_cpus=2, object_store_memory=1_500_000_000)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def inputs(chula_root, tmp_path_factory) -> dict[str, str]:
    """Generation inputs from real data: 3 annotated Chula images, their stats and shape bank,
    and a tiny pix2pixHD trained on them (seconds on a CPU)."""
    from rbcray.data.annotate import annotate_source, config_for_source
    from rbcray.data.dataset import Dataset
    from rbcray.data.sources import open_source
    from rbcray.data.stats import dataset_stats
    from rbcray.io import write_json
    from rbcray.models.pix2pixhd.model import Pix2PixHDConfig
    from rbcray.synth.shapes import build_shape_bank
    from rbcray.train.pix2pixhd import Pix2PixHDTrainConfig, train

    tiny = Pix2PixHDTrainConfig(
        model=Pix2PixHDConfig(ngf=4, ndf=4, nef=4, n_down_global=3, n_blocks_global=1, n_blocks_local=1, n_down_E=3),
        crop_size=(64, 64), stage1_epochs=1, stage2_epochs=1, freeze_global_epochs=1, vgg_loss=False,
        samples_per_epoch=4, batch_size=2, style_clusters=3,
    )
    d = tmp_path_factory.mktemp("gen")
    src = open_source("chula-rbc-12", chula_root)
    ds_dir = annotate_source(src, d / "annotated", config_for_source(src.name), limit=3)
    write_json(d / "stats.json", dataset_stats(Dataset.open(ds_dir)))
    build_shape_bank(ds_dir, d / "shapes.parquet")
    train(tiny, ds_dir, str(d / "model"), log=lambda m: None)
    return {"checkpoint": str(d / "model"), "shapes": str(d / "shapes.parquet"), "stats": str(d / "stats.json")}
