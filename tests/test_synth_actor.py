"""MaskActor in a Ray Data pipeline: same bytes as in-process synthesis, whatever the batching."""

from __future__ import annotations

import numpy as np
import pytest
from synth_data import make_dataset

from rbcray.distributed.masks import MaskActor, mask_dataset
from rbcray.errors import ConfigError
from rbcray.io import decode_png
from rbcray.synth.config import SynthConfig
from rbcray.synth.engine import synthesize
from rbcray.synth.shapes import ShapeBank, build_shape_bank


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("actor")
    make_dataset(d / "ds", n_images=4, seed=5)
    build_shape_bank(d / "ds", d / "shapes.parquet")
    return str(d / "shapes.parquet")


def test_actor_pool_matches_in_process_synthesis(ray_session, shapes) -> None:
    cfg = SynthConfig(width=160, height=128, cells_mean=25, cells_std=5, cell_size=16, shapes_per_mask=10)
    bank = ShapeBank.load(shapes)
    want = {i: synthesize(bank, cfg, 21, i) for i in range(7)}
    for batch_size in (2, 5):
        ds = mask_dataset(7, shapes, cfg.to_dict(), 21, actors=1, num_cpus=0.5, batch_size=batch_size,
                          outputs=("instances", "color_mask", "png", "cells"))
        rows = sorted(ds.take_all(), key=lambda r: r["sample_id"])
        assert [r["sample_id"] for r in rows] == list(range(7))
        for r in rows:
            s = want[r["sample_id"]]
            assert r["seed"] == 21 and (r["width"], r["height"]) == (160, 128)
            assert r["n_cells"] == s.n_cells and r["n_requested"] == s.n_requested
            assert np.array_equal(r["instances"], s.instances)
            assert np.array_equal(r["color_mask"], s.color_mask())
            assert np.array_equal(decode_png(r["instance_png"]), s.instances)
            assert np.array_equal(decode_png(r["color_png"]), s.color_mask())
            assert [b["instance_id"] for b in r["boxes"]] == list(range(1, s.n_cells + 1))
            assert [(b["x0"], b["y0"], b["x1"], b["y1"]) for b in r["boxes"]] == list(
                zip(s.cells["x0"].tolist(), s.cells["y0"].tolist(), s.cells["x1"].tolist(), s.cells["y1"].tolist()))
            assert list(r["colors"]) == s.colors[1:].tolist()
            assert [c["exemplar"] for c in r["cells"]] == s.cells["exemplar"].tolist()


def test_actor_rejects_bad_arguments(shapes) -> None:
    cfg = SynthConfig(width=160, height=128, cells_mean=5, cell_size=16)
    with pytest.raises(ConfigError, match="outputs"):
        MaskActor(shapes, cfg.to_dict(), 0, outputs=("pixels",))
    with pytest.raises(ConfigError, match="unknown config key"):
        MaskActor(shapes, {**cfg.to_dict(), "colours": 4}, 0)
    out = MaskActor(shapes, cfg.to_dict(), 0, outputs=())({"sample_id": np.array([3, 1])})
    assert out["sample_id"].tolist() == [3, 1] and "instances" not in out and "instance_png" not in out
