"""Leak-free evaluation: the split drives the roles, synthetic inputs that saw val/test images are
refused with one line, --allow-overlap is said everywhere (no training: --check and the planner)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from eval_fixtures import generator_provenance, make_chula_dataset, write_shards

from rbcray.cli import main
from rbcray.data.splits import make_splits, save_splits
from rbcray.evaluate.config import sweep_from_dict
from rbcray.evaluate.plan import plan_sweep


@pytest.fixture(scope="module")
def data(tmp_path_factory, chula_root) -> dict:
    root = tmp_path_factory.mktemp("leakdata")
    real = make_chula_dataset(chula_root, root / "chula", 12)
    stems = sorted(p.stem for p in (real / "images").iterdir())
    sp = make_splits(stems, dataset="chula", val=0.25, test=0.25, seed=0)
    save_splits(sp, root / "splits.json")
    return {"root": root, "real": real, "splits": root / "splits.json", "sp": sp, "chula_root": chula_root}


def config(data: dict, shards: Path, **over) -> dict:
    cfg = {
        "name": "leak",
        "datasets": [{"name": "chula", "real": str(data["real"]), "synthetic": str(shards), "splits": str(data["splits"]),
                      "scale": 0.25, "n_test": None, "n_val": 2}],
        "models": [{"label": "FCN-8s", "model": "fcn8s", "dataset": "chula", "params": {"width": 4, "fc_channels": 16},
                    "train": {"epochs": 2, "steps_per_epoch": 1, "batch_size": 2, "crop": 64, "val_every": 1}}],
        "regimes": ["RD", "SD", "RD+aug", "RD+SD"],
        "n_real": 2, "total": 4, "bootstrap": 20, "rd_subsets": [0, 1, 2],
        "learning_curve": {"model": "FCN-8s", "sizes": [1, 2, 4]},
    }
    cfg.update(over)
    return cfg


def run_check(tmp_path: Path, cfg: dict, *extra: str) -> int:
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return main(["evaluate", "--config", str(p), "--out", str(tmp_path / "out"), "--check", *extra])


def test_generator_trained_on_a_test_image_is_refused(data, tmp_path, capsys):
    bad = data["sp"].stems("test")[0]
    shards = write_shards(data["chula_root"], tmp_path / "shards", 4, per_shard=2,
                          provenance=generator_provenance(["c100", bad]))
    assert run_check(tmp_path, config(data, shards)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("rbcray evaluate: error:"), err
    assert "leak" in err and bad in err and "test image(s)" in err and "generator" in err
    assert not (tmp_path / "out").exists()
    # a val image is refused alike
    val = data["sp"].stems("val")[0]
    shards2 = write_shards(data["chula_root"], tmp_path / "shards2", 4, per_shard=2,
                           provenance={"generator": generator_provenance(["c100"])["generator"],
                                       "shapes": generator_provenance([val])["shapes"]})
    assert run_check(tmp_path, config(data, shards2)) == 2
    err = capsys.readouterr().err
    assert val in err and "val image(s)" in err and "shapes" in err


def test_allow_overlap_runs_and_says_so(data, tmp_path, capsys):
    bad = data["sp"].stems("test")[0]
    shards = write_shards(data["chula_root"], tmp_path / "shards", 4, per_shard=2, provenance=generator_provenance([bad]))
    cfg = config(data, shards)
    assert run_check(tmp_path, cfg, "--allow-overlap") == 0
    assert "--allow-overlap" in capsys.readouterr().err
    plan = plan_sweep(sweep_from_dict({**cfg, "allow_overlap": True}))
    syn = plan.datasets["chula"].provenance["synthetic"]
    assert syn["allow_overlap"] and bad in syn["overlaps"][0]


def test_inputs_without_provenance_are_refused(data, tmp_path, capsys):
    shards = write_shards(data["chula_root"], tmp_path / "shards", 4, per_shard=2, provenance={})
    assert run_check(tmp_path, config(data, shards)) == 2
    err = capsys.readouterr().err
    assert "records no source images" in err and "--allow-overlap" in err


def test_provenance_read_from_the_artefacts_the_manifest_names(data, tmp_path, capsys):
    """No provenance in the manifest: the checkpoint's model.json, the bank's Parquet metadata and
    stats.json are read; a test image in the shape bank alone is found."""
    shards = write_shards(data["chula_root"], tmp_path / "shards", 4, per_shard=2, provenance={})
    rec = generator_provenance(["c100"])["generator"]
    bad = {**rec, "stems": [data["sp"].stems("test")[1]]}
    (tmp_path / "p2p" / "model").mkdir(parents=True)
    (tmp_path / "p2p" / "model" / "model.json").write_text(json.dumps({"format": "x", "provenance": rec}))
    (tmp_path / "stats.json").write_text(json.dumps({"synthesis": {}, "provenance": rec}))
    table = pa.table({"stem": ["a"]}).replace_schema_metadata({b"rbcray_provenance": json.dumps(bad).encode()})
    pq.write_table(table, tmp_path / "shapes.parquet")
    m = json.loads((shards / "manifest.json").read_text())
    m.update(checkpoint=str(tmp_path / "p2p"), shapes=str(tmp_path / "shapes.parquet"), stats=str(tmp_path / "stats.json"))
    (shards / "manifest.json").write_text(json.dumps(m))
    assert run_check(tmp_path, config(data, shards)) == 2
    err = capsys.readouterr().err
    assert "shapes" in err and bad["stems"][0] in err
    # the same bank built from train images passes
    pq.write_table(table.replace_schema_metadata({b"rbcray_provenance": json.dumps(rec).encode()}), tmp_path / "shapes.parquet")
    assert run_check(tmp_path, config(data, shards)) == 0


def test_roles_come_from_the_split(data, tmp_path):
    shards = write_shards(data["chula_root"], tmp_path / "shards", 4, per_shard=2)
    cfg = sweep_from_dict(config(data, shards))
    p = plan_sweep(cfg).datasets["chula"]
    names = p.real.names
    sp = data["sp"]
    assert sorted(names[i] for i in p.test_idx) == sorted(sp.stems("test"))
    assert {names[i] for i in p.val_idx} <= set(sp.stems("val")) and len(p.val_idx) == 2
    train = set(sp.stems("train"))
    draws = {k: [names[i] for i in d] for k, d in p.draws.items()}
    assert set(draws) == {0, 1, 2} and all(len(d) == 4 and set(d) <= train for d in draws.values())
    assert len({tuple(d) for d in draws.values()}) == 3  # the subsets differ
    roles = p.role_stems()
    assert roles["split_file"]["sha256"] == sp.sha256() and roles["rd_subsets"]["1"] == draws[1]
    # table trials x 3 subsets, then the curve's sizes 1 and 4 (size 2 is the table's)
    trials = cfg.trials()
    assert len(trials) == 4 * 3 + 2 * 2 * 3
    assert {t["n_real"] for t in trials if t["regime"] == "RD"} == {1, 2, 4}


def test_splits_flag_and_mismatched_split(data, tmp_path, capsys):
    shards = write_shards(data["chula_root"], tmp_path / "shards", 4, per_shard=2)
    cfg = config(data, shards)
    cfg["datasets"][0]["splits"] = None
    cfg["datasets"][0]["n_val"] = 0
    cfg["models"][0]["train"].pop("val_every")
    assert run_check(tmp_path, cfg, "--splits", str(data["splits"])) == 0
    assert "3 test + 0 val" in capsys.readouterr().out
    other = make_splits(data["sp"].stems("train") + data["sp"].stems("val") + data["sp"].stems("test"), dataset="other")
    save_splits(other, tmp_path / "other.json")
    assert run_check(tmp_path, cfg, "--splits", f"chula={tmp_path / 'other.json'}") == 2
    assert "a split of 'other'" in capsys.readouterr().err
