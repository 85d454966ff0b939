"""The demo's split step and the steps that learn from real data use its train role only."""

from __future__ import annotations

from synth_data import make_dataset

from rbcray.data.demo_steps import annotated_dir, split_step, splits_json, stats_step
from rbcray.data.provenance import read_provenance
from rbcray.data.splits import load_splits
from rbcray.demo import STEPS, DemoContext
from rbcray.io import read_json
from rbcray.synth.demo_step import masks_step


def test_split_right_after_annotate_and_train_only_inputs(tmp_path) -> None:
    names = [n for n, _ in STEPS]
    assert names[:3] == ["annotate", "split", "stats"]
    ctx = DemoContext(out=tmp_path, log=lambda m: None)
    make_dataset(annotated_dir(ctx), n_images=10, seed=3, width=160, height=120, n=10)
    res = split_step(ctx)
    sp = load_splits(splits_json(ctx))
    assert res["test"] == "3 images" and res["val"] == "2 images" and res["train"] == "5 images"
    split_step(ctx)  # seeded: the same file again
    assert load_splits(splits_json(ctx)) == sp
    train = sorted(sp.stems("train"))
    stats_step(ctx)
    assert read_json(tmp_path / "stats" / "stats.json")["provenance"]["stems"] == train
    masks_step(ctx)
    assert read_provenance(tmp_path / "masks" / "shapes.parquet")["stems"] == train
    prov = read_json(tmp_path / "masks" / "adhesive" / "dataset.json")["provenance"]
    assert prov["shapes"]["split"] == prov["stats"]["split"] == "train"
