"""Mask calibration: the objective's statistics, params.json, `rbcray calibrate` on Ray Tune and `masks --params`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from synth_data import make_dataset

from rbcray.cli import main
from rbcray.data.splits import make_splits, save_splits
from rbcray.errors import ConfigError
from rbcray.synth.calibrate import STATS, arrangement, config_for, ks_distances, load_params, sample_params, score
from rbcray.synth.config import SynthConfig
from rbcray.synth.shapes import ShapeBank, build_shape_bank


def test_arrangement_statistics_of_known_maps() -> None:
    inst = np.zeros((40, 60), np.uint16)
    inst[5:10, 5:10] = 1
    inst[5:10, 10:15] = 2  # touches 1
    inst[30:35, 40:45] = 3  # alone
    a = arrangement([inst, np.zeros((40, 60), np.uint16)])
    assert a["cells_per_image"].tolist() == [3, 0]
    assert a["touching_fraction"][0] == pytest.approx(2 / 3) and np.isnan(a["touching_fraction"][1])
    assert sorted(a["nn_distance"].round(3).tolist()) == [5.0, 5.0, pytest.approx(np.hypot(30, 25), abs=1e-3)]
    assert ks_distances(a, a) == dict.fromkeys(STATS, 0.0)


def test_config_for_applies_a_parameter_set_and_failures_score_worst(tmp_path) -> None:
    make_dataset(tmp_path / "ds", n_images=3, seed=2)
    build_shape_bank(tmp_path / "ds", tmp_path / "b.parquet")
    bank = ShapeBank.load(tmp_path / "b.parquet")
    base = SynthConfig(width=200, height=150, cells_mean=12, cells_std=2, cell_size=16)
    p = sample_params(np.random.default_rng(0))
    cfg = config_for(base, p)
    assert cfg.n_init == p["n_init"] and cfg.cells_mean == pytest.approx(12 * p["count_scale"])
    assert cfg.kernel_inside == ("constant", "reverted")[p["kernel_inside"]]
    real = arrangement([make_inst for make_inst in np.zeros((2, 150, 200), np.uint16)])  # two empty images
    r = score(bank, cfg, real, 0, 2)
    assert r["ks"]["cells_per_image"] == 1.0 and r["ks"]["nn_distance"] == 1.0  # masks have cells, real ones none
    # a density that cannot be placed scores 1 (the worst KS), it does not stop the search
    dense = SynthConfig.from_dict({**base.to_dict(), "cells_mean": 400, "max_unplaced": 0.0})
    bad = score(bank, dense, arrangement([np.zeros((150, 200), np.uint16)]), 0, 1)
    assert bad["objective"] == 1.0 and "error" in bad


def test_load_params_rejects_other_files(tmp_path) -> None:
    (tmp_path / "x.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ConfigError, match="not an rbcray calibration params file"):
        load_params(tmp_path / "x.json")
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "missing.json")
    (tmp_path / "y.json").write_text(json.dumps({"format": "rbcray-mask-params", "config": {"n_init": 0, "cells_mean": 5, "cell_size": 10}}))
    with pytest.raises(ConfigError, match="n_init"):
        load_params(tmp_path / "y.json")


@pytest.mark.slow
def test_calibrate_cli_fits_on_train_scores_held_out_resumes_and_feeds_masks(ray_session, tmp_path: Path, capsys) -> None:
    ds = make_dataset(tmp_path / "ds", n_images=10, seed=3, n=12)
    stems = [f"e{i}" for i in range(10)]
    sp = make_splits(stems, dataset="ellipses", val=0.2, test=0.2, seed=0)
    save_splits(sp, tmp_path / "splits.json")
    build_shape_bank(ds, tmp_path / "b.parquet")
    args = ["calibrate", str(ds), "--splits", str(tmp_path / "splits.json"), "--split", "train", "--shapes", str(tmp_path / "b.parquet"),
            "--out", str(tmp_path / "params.json"), "--trials", "3", "--masks", "2", "--eval-masks", "4", "--seed", "1"]
    assert main(args) == 0
    rec = json.loads((tmp_path / "params.json").read_text())
    assert rec["format"] == "rbcray-mask-params"
    assert rec["provenance"]["stems"] == sorted(sp.stems("train")) and rec["provenance"]["split"] == "train"
    assert rec["held_out_provenance"]["stems"] == sorted(sp.stems("val"))
    assert not set(rec["provenance"]["stems"]) & set(sp.stems("test"))
    for part in ("fit", "held_out"):
        o = rec["objective"][part]
        assert 0.0 <= o["objective"] <= 1.0 and set(o["ks"]) == set(STATS)
    assert rec["search"]["trials"] == 3
    # resumable: the same folder again finds the finished search and picks the same parameters
    assert main(args) == 0
    assert "resuming the search" in capsys.readouterr().out
    assert json.loads((tmp_path / "params.json").read_text())["search_params"] == rec["search_params"]
    # rbcray masks --params synthesizes with the fitted placement
    assert main(["masks", "--shapes", str(tmp_path / "b.parquet"), "--params", str(tmp_path / "params.json"), "--num", "2",
                 "--out", str(tmp_path / "m")]) == 0
    meta = json.loads((tmp_path / "m" / "dataset.json").read_text())
    synth = meta["config"]["synth"]
    for k in ("n_init", "kernel_inside", "kernel_scale", "contact_prob", "contact_overlap", "cells_mean"):
        assert synth[k] == rec["config"][k]
    # fitting without a split file on a folder fits on everything and has no held-out score
    assert main(args[:3] + args[7:] + ["--work", str(tmp_path / "w2")]) == 0
    rec2 = json.loads((tmp_path / "params.json").read_text())
    assert rec2["provenance"]["split"] == "all" and rec2["provenance"]["n_images"] == 10 and rec2["objective"]["held_out"] is None
