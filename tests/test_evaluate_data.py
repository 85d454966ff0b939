"""Evaluation data and training on real images: shard reader, bundles, models, resumable trials,
realism measures (plain library, no Ray except the Ray Data reader)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_fixtures import make_chula_dataset, write_shards

from rbcray.errors import ConfigError, DataError
from rbcray.evaluate.config import sweep_from_dict
from rbcray.evaluate.data import decode_synthetic_row, load_synthetic, open_real, open_synthetic
from rbcray.evaluate.plan import DataBundle, load_bundles, plan_sweep
from rbcray.evaluate.realism import colour_stats, fid_kid
from rbcray.evaluate.train import run_trial
from rbcray.models import create_model


@pytest.fixture(scope="module")
def data(tmp_path_factory, chula_root) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evaldata")
    return {
        "real": make_chula_dataset(chula_root, root / "chula", 10),
        "shards": write_shards(chula_root, root / "shards", 10, per_shard=4),
        "synfolder": make_chula_dataset(chula_root, root / "synfolder", 4, start=300, kind="synthetic"),
    }


def tiny_sweep(data: dict[str, Path], **over) -> dict:
    cfg = {
        "name": "t",
        "datasets": [{"name": "chula", "real": str(data["real"]), "synthetic": str(data["shards"]), "scale": 0.25, "n_test": 3}],
        "models": [{"label": "FCN", "model": "fcn8s", "dataset": "chula", "params": {"width": 4, "fc_channels": 16},
                    "train": {"epochs": 3, "steps_per_epoch": 2, "batch_size": 2, "crop": 64}}],
        "n_real": 3, "total": 6, "bootstrap": 20,
    }
    cfg.update(over)
    return cfg


def test_shard_reader_follows_issue5_schema(data):
    src = open_synthetic(str(data["shards"]))
    assert src.kind == "parquet" and src.count == 10 and list(src.ids) == list(range(10))
    got = load_synthetic(src, 5, scale=0.5)
    assert [s.name for s in got] == [f"synthetic-{i}" for i in range(5)]  # lowest ids, in order
    assert all(s.origin == "synthetic" and s.image.shape == (240, 320, 3) and s.instances.shape == (240, 320) for s in got)
    with pytest.raises(DataError, match="11 synthetic samples needed but only 10"):
        load_synthetic(open_synthetic(str(data["shards"])), 11)
    folder = open_synthetic(str(data["synfolder"]))
    assert folder.kind == "folder" and len(load_synthetic(folder, 4)) == 4


def test_shard_reader_errors(tmp_path, data, chula_root):
    incomplete = write_shards(chula_root, tmp_path / "inc", 2, manifest=False)
    with pytest.raises(DataError, match="no _manifest.json"):
        open_synthetic(str(incomplete))
    with pytest.raises(DataError, match="not found"):
        open_synthetic(str(tmp_path / "nothing"))
    with pytest.raises(DataError, match="synthetic-3 image"):
        decode_synthetic_row({"sample_id": 3, "image": b"not a png", "instance_mask": b""})


def test_ray_data_reader_matches_pyarrow(ray_session, data):
    from rbcray.distributed.sweep import read_synthetic_ray

    src = open_synthetic(str(data["shards"]))
    a = read_synthetic_ray(src, 6, 0.25)
    b = load_synthetic(src, 6, 0.25)
    assert [s.name for s in a] == [s.name for s in b]
    assert all(np.array_equal(x.image, y.image) and np.array_equal(x.instances, y.instances) for x, y in zip(a, b))


def test_bccd_boxes_and_bundles(data):
    bccd = open_real("bccd-txl-pbc")
    assert not bccd.has_masks and len(bccd.test_pool) > 0
    s = bccd.load(bccd.test_pool[0], 0.5)
    assert s.instances is None and len(s.boxes) > 5 and s.boxes.max() <= 320
    plan = plan_sweep(sweep_from_dict(tiny_sweep(data)))
    b = load_bundles(plan)["chula"]
    assert len(b.train) == 3 and len(b.test) == 3 and len(b.synthetic) == 3
    assert all(x.origin == "real" for x in b.test + b.train) and "DERIVED" in b.provenance
    assert not {x.name for x in b.test} & {x.name for x in b.train}
    with pytest.raises(DataError, match="non-real sample"):
        DataBundle("x", b.train, b.test + b.synthetic[:1], (), "")


def test_models_shapes_and_weights(tmp_path):
    x = torch.rand(2, 3, 50, 70)
    assert create_model("fcn8s", width=4, fc_channels=8)(x).shape == (2, 1, 50, 70)
    dcan = create_model("dcan", width=4, fc_channels=8)
    out = dcan(x)
    assert out["objectness"].shape == out["contour"].shape == (2, 1, 50, 70)
    t = torch.zeros(2, 1, 50, 70)
    assert float(dcan.loss(out, t, t).detach()) > 0
    det = create_model("faster_rcnn", backbone="resnet18", fpn_channels=16, representation_size=32).eval()
    with torch.no_grad():
        pred = det([torch.rand(3, 64, 64)])
    assert set(pred[0]) == {"boxes", "labels", "scores"}
    fcn = create_model("fcn8s", width=4, fc_channels=8)
    torch.save(fcn.state_dict(), tmp_path / "fcn.pt")
    again = create_model("fcn8s", width=4, fc_channels=8, weights=str(tmp_path / "fcn.pt"))
    assert all(torch.equal(a, b) for a, b in zip(fcn.state_dict().values(), again.state_dict().values()))
    with pytest.raises(DataError, match="do not fit"):
        create_model("fcn8s", width=8, fc_channels=8, weights=str(tmp_path / "fcn.pt"))
    with pytest.raises(DataError, match="never downloads"):
        create_model("faster_rcnn", backbone_weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ConfigError, match="not one of"):
        create_model("faster_rcnn", backbone="vgg")


def test_trial_resumes_exactly(data):
    """A trial stopped after an epoch and resumed from its state ends exactly like one run straight."""
    cfg = sweep_from_dict(tiny_sweep(data))
    bundle = load_bundles(plan_sweep(cfg))["chula"]
    trial = {"model": "FCN", "regime": "RD+SD", "seed": 1}
    states = {}
    # the state holds the live tensors: a checkpoint must copy them when it is made
    full = run_trial(cfg, trial, bundle, torch.device("cpu"),
                     on_epoch=lambda e, s, loss: states.__setitem__(e, copy.deepcopy(s)))
    resumed = run_trial(cfg, trial, bundle, torch.device("cpu"), resume=states[0])
    assert resumed.losses == pytest.approx(full.losses) and resumed.value == pytest.approx(full.value)
    assert full.metric == "dice" and len(full.records) == 3 and 0 <= full.value <= 1
    assert full.train_items == 6


def test_realism_measures(data):
    from dataclasses import replace

    cfg = sweep_from_dict(tiny_sweep(data, n_real=7, total=7))
    b = load_bundles(plan_sweep(cfg))["chula"]
    st = colour_stats(b.train)
    pix = np.concatenate([s.image[s.instances > 0] for s in b.train]).astype(float)
    assert st["mean"] == pytest.approx(pix.mean(0), abs=0.01) and st["std"] == pytest.approx(pix.std(0), abs=0.01)
    fake = [replace(s, image=255 - s.image, origin="synthetic") for s in b.train]
    assert "weights not found" in fid_kid(b.train, fake, str(Path("/nonexistent/inception.pth")))["note"]


def test_realism_sources_are_checked_at_planning(data):
    """realism.compare: every listed source is opened and leak-checked before any training."""
    cfg = sweep_from_dict(tiny_sweep(data, realism={"compare": {"a": str(data["shards"]), "b": str(data["shards"])}}))
    rp = plan_sweep(cfg).datasets["chula"].provenance["realism"]
    assert set(rp) == {"a", "b"} and rp["a"]["count"] == 10 and rp["a"]["overlaps"] == []
    # a source that records nothing it learned from cannot be checked: refused like the sweep's own
    unrec = sweep_from_dict(tiny_sweep(data, realism={"compare": {"a": str(data["synfolder"])}}))
    with pytest.raises(DataError, match="records no source images"):
        plan_sweep(unrec)
    default = plan_sweep(sweep_from_dict(tiny_sweep(data))).datasets["chula"].provenance["realism"]
    assert list(default) == ["synthetic"] and default["synthetic"]["uri"] == str(data["shards"])  # no family recorded
    bad = sweep_from_dict(tiny_sweep(data, realism={"compare": {"a": str(data["shards"]) + "-missing"}}))
    with pytest.raises(DataError, match="-missing"):
        plan_sweep(bad)
