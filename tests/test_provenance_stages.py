"""Every stage that learns from real data takes a split and records the image stems it used."""

from __future__ import annotations

import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from _p2p_data import make_dataset as make_real_dataset  # noqa: E402
from synth_data import make_dataset  # noqa: E402

from rbcray.cli import main  # noqa: E402
from rbcray.data.provenance import flatten, read_provenance  # noqa: E402
from rbcray.data.splits import Splits, load_splits, save_splits  # noqa: E402
from rbcray.errors import DataError  # noqa: E402
from rbcray.io import read_json  # noqa: E402
from rbcray.models.pix2pixhd.model import Pix2PixHDConfig  # noqa: E402
from rbcray.train.pix2pixhd import Pix2PixHDTrainConfig, train  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ellipses(tmp_path_factory):
    d = tmp_path_factory.mktemp("prov")
    make_dataset(d / "ds", n_images=8, seed=2)
    assert main(["split", str(d / "ds"), "--out", str(d / "splits.json"), "--val", "0.25", "--test", "0.25", "--seed", "1"]) == 0
    return d


def test_shapes_stats_masks_record_the_split(ellipses, tmp_path, capsys) -> None:
    d = ellipses
    sp = load_splits(d / "splits.json")
    train_stems = sorted(sp.stems("train"))
    assert len(train_stems) == 4
    sel = ["--splits", str(d / "splits.json"), "--split", "train"]
    assert main(["shapes", str(d / "ds"), "--out", str(tmp_path / "b.parquet"), *sel]) == 0
    assert "split train" in capsys.readouterr().out
    rec = read_provenance(tmp_path / "b.parquet")
    assert rec["stems"] == train_stems and rec["split"] == "train" and rec["splits_sha256"] == sp.sha256()
    assert rec["dataset"] == "ellipses" and rec["n_images"] == 4
    assert set(pq.read_table(tmp_path / "b.parquet").column("stem").to_pylist()) <= set(train_stems)

    assert main(["stats", str(d / "ds"), "--json", str(tmp_path / "s.json"), "--markdown", str(tmp_path / "s.md"), *sel]) == 0
    st = read_json(tmp_path / "s.json")
    assert st["n_images"] == 4 and st["provenance"]["stems"] == train_stems
    assert read_provenance(tmp_path / "s.json") == st["provenance"]

    assert main(["masks", "--shapes", str(tmp_path / "b.parquet"), "--stats", str(tmp_path / "s.json"), "--num", "2",
                 "--out", str(tmp_path / "m")]) == 0
    prov = read_json(tmp_path / "m" / "dataset.json")["provenance"]
    assert prov["shapes"]["stems"] == train_stems and prov["stats"]["stems"] == train_stems
    assert read_provenance(tmp_path / "m") == prov
    assert {p for p, _ in flatten(prov)} == {"shapes", "stats"}

    # without a split: the whole folder, recorded as such
    assert main(["shapes", str(d / "ds"), "--out", str(tmp_path / "all.parquet")]) == 0
    rec = read_provenance(tmp_path / "all.parquet")
    assert rec["split"] == "all" and rec["splits_sha256"] is None and len(rec["stems"]) == 8
    assert main(["stats", str(d / "ds"), "--json", str(tmp_path / "a.json"), "--markdown", str(tmp_path / "a.md")]) == 0
    assert read_provenance(tmp_path / "a.json")["split"] == "all"


def test_split_arguments_are_checked(ellipses, tmp_path, capsys) -> None:
    d = ellipses
    assert main(["shapes", str(d / "ds"), "--out", str(tmp_path / "b.parquet"), "--split", "train"]) == 2
    assert "needs --splits FILE" in capsys.readouterr().err
    assert main(["stats", str(d / "ds"), "--json", str(tmp_path / "s.json"), "--splits", str(d / "splits.json")]) == 2
    assert "--split" in capsys.readouterr().err
    other = Splits(dataset="ellipses", roles={"train": ("e0", "nope"), "val": ("e1",), "test": ("e2",)})
    save_splits(other, tmp_path / "other.json")
    assert main(["shapes", str(d / "ds"), "--out", str(tmp_path / "b.parquet"), "--splits", str(tmp_path / "other.json"),
                 "--split", "train"]) == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and err.count("\n") == 1 and not (tmp_path / "b.parquet").exists()


TINY = Pix2PixHDTrainConfig(
    model=Pix2PixHDConfig(ngf=4, ndf=4, nef=4, n_down_global=3, n_blocks_global=1, n_blocks_local=1, n_down_E=3),
    crop_size=(64, 64), stage1_epochs=1, stage2_epochs=1, freeze_global_epochs=1, vgg_loss=False,
    samples_per_epoch=2, batch_size=2, style_clusters=2,
)


def test_train_records_its_images_and_refuses_another_selection(chula_root, tmp_path) -> None:
    ds = make_real_dataset(chula_root, tmp_path / "ds", ("1", "2", "3", "4"))
    sp = Splits(dataset="chula-test", roles={"train": ("c1", "c3"), "val": ("c2",), "test": ("c4",)})
    save_splits(sp, tmp_path / "splits.json")
    cfg_file = tmp_path / "tiny.json"
    cfg_file.write_text(json.dumps({"model": {"ngf": 4, "ndf": 4, "nef": 4, "n_down_global": 3, "n_blocks_global": 1,
                                              "n_blocks_local": 1, "n_down_E": 3},
                                    "crop_size": [64, 64], "stage1_epochs": 1, "stage2_epochs": 1, "freeze_global_epochs": 1,
                                    "vgg_loss": False, "samples_per_epoch": 2, "batch_size": 2, "style_clusters": 2}))
    out = tmp_path / "run"
    assert main(["train", "--data", str(ds), "--out", str(out), "--config", str(cfg_file), "--no-ray",
                 "--splits", str(tmp_path / "splits.json"), "--split", "train"]) == 0
    model = read_json(out / "model" / "model.json")
    assert model["provenance"]["stems"] == ["c1", "c3"] and model["provenance"]["split"] == "train"
    assert read_provenance(out) == model["provenance"] == read_provenance(out / "model")
    # the training statistics saved with the model describe the same images
    stats = read_json(out / "model" / "stats.json")
    assert stats["n_samples"] == 2 and stats["stats"]["provenance"] == model["provenance"]
    # resuming the run on other images is refused
    longer = Pix2PixHDTrainConfig(**{**TINY.__dict__, "stage2_epochs": 2})
    with pytest.raises(DataError, match="trained on other images"):
        train(longer, ds, str(out), log=lambda m: None)
    # without a split: every image of the folder, recorded as 'all'
    summary = train(TINY, ds, str(tmp_path / "all"), log=lambda m: None)
    assert read_provenance(summary["model"])["stems"] == ["c1", "c2", "c3", "c4"]
    assert read_provenance(summary["model"])["split"] == "all"
