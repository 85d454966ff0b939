"""The morphology classifier: crops, metrics, training on a learnable toy set, checkpoint, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from rbcray.cli import main
from rbcray.data.cells import crop_cell, extract_cells
from rbcray.data.dataset import Dataset, DatasetWriter
from rbcray.data.splits import make_splits, save_splits
from rbcray.errors import DataError
from rbcray.evaluate.morphology import auc, class_metrics, f1, image_bootstrap, to_markdown
from rbcray.models.morphology import MorphologyNetConfig, predict_proba
from rbcray.models.registry import create_model, list_models
from rbcray.train.morphology import (
    MorphologyTrainConfig,
    class_weights,
    load_classifier,
    save_classifier,
    train_classifier,
)


def toy_dataset(root: Path, n_images: int = 10, seed: int = 0) -> Path:
    """Smears of two classes told apart by look: class 0 large pale discs, class 4 small dark ones
    (with a third of the cells unlabelled and one WBC per image)."""
    rng = np.random.default_rng(seed)
    with DatasetWriter(root, name="toy", kind="annotated") as w:
        for k in range(n_images):
            img = np.full((240, 240, 3), 225, np.uint8)
            inst = np.zeros((240, 240), np.uint16)
            yy, xx = np.mgrid[0:240, 0:240]
            morph, cats, cid = {}, {}, 0
            for gy in range(5):
                for gx in range(5):
                    cid += 1
                    cls = int(rng.integers(2)) * 4
                    r = 17 if cls == 0 else 10
                    cy, cx = 24 + gy * 48, 24 + gx * 48
                    disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
                    inst[disc] = cid
                    img[disc] = (200, 120, 130) if cls == 0 else (150, 60, 90)
                    morph[cid] = cls if cid % 3 else -1
            cats[cid] = 2  # the last cell is a WBC: no morphology
            del morph[cid]
            w.add(f"s{k}", inst, image=img, categories=cats, morphology=morph)
    return root


def test_crop_is_centred_and_padded() -> None:
    img = np.zeros((50, 50, 3), np.uint8)
    inst = np.zeros((50, 50), np.uint16)
    inst[0:6, 0:6] = 1  # a corner cell: the window runs off the image
    c = crop_cell(img, inst, 1, 2.5, 2.5, window=20, size=20)
    assert c.shape == (4, 20, 20) and c.dtype == np.uint8
    assert c[3, 10, 10] == 255 and c[3, 0, 0] == 0 and c[3, 19, 19] == 0


def test_extract_cells_labels_and_refusal(tmp_path: Path) -> None:
    ds = Dataset.open(toy_dataset(tmp_path / "toy", 2))
    crops = extract_cells(ds, ds.stems, window=48, size=24)
    assert set(np.unique(crops.labels)) <= {0, 4} and crops.crops.shape[1:] == (4, 24, 24)
    # 24 RBCs per image, every third unlabelled (ids 3, 6, ... 24 -> 8 of them)
    assert len(crops) == 2 * (24 - 8)
    everything = extract_cells(ds, ds.stems, window=48, size=24, labelled_only=False)
    assert len(everything) == 2 * 24 and (everything.labels == -1).sum() == 16
    only = extract_cells(ds, ds.stems, window=48, size=24, classes=[4])
    assert (only.labels == 4).all() and 0 < len(only) < len(crops)
    with DatasetWriter(tmp_path / "plain", name="p", kind="annotated") as w:
        w.add("a", np.ones((20, 20), np.uint16), image=np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(DataError, match="no morphology labels"):
        extract_cells(Dataset.open(tmp_path / "plain"), ["a"])


def test_auc_f1_match_references() -> None:
    rng = np.random.default_rng(1)
    s = rng.random(300)
    y = rng.random(300) < s  # informative scores
    s[:20] = 0.5  # ties
    assert auc(s, y) == pytest.approx(roc_auc_score(y, s))
    assert np.isnan(auc(s, np.zeros(300, bool)))
    assert f1(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool)) == pytest.approx(0.5)
    probs = np.eye(3)[[0, 1, 2, 2]]
    m = class_metrics(probs, np.array([0, 1, 2, 1]))
    assert m["f1"].tolist() == pytest.approx([1.0, 2 / 3, 2 / 3])


def test_image_bootstrap_intervals_contain_the_point() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 400)
    logits = np.eye(6)[labels] * 1.5 + rng.normal(size=(400, 6))  # classes 3..5 absent
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    res = image_bootstrap(probs, labels, np.repeat(np.arange(40), 10), n_boot=200, seed=0)
    for r in res["classes"][:3]:
        assert r["auc_ci"][0] <= r["auc"] <= r["auc_ci"][1] and r["auc"] > 0.7
        assert r["auc_ci"][1] - r["auc_ci"][0] > 0.01
    assert res["classes"][5]["n_test"] == 0 and "n/a" in to_markdown(res)
    assert "†" not in to_markdown(res)
    few = image_bootstrap(probs[:50], labels[:50], np.arange(50), n_boot=20)
    assert "† fewer than 20 test cells" in to_markdown(few)
    assert res["n_images"] == 40 and res["n_cells"] == 400


def test_registry_and_class_weights() -> None:
    assert "morphology_cnn" in list_models()
    net = create_model("morphology_cnn", width=8, blocks=2)
    assert net(torch.zeros(2, 4, 24, 24)).shape == (2, 13)
    w = class_weights(np.array([0] * 100 + [4] * 4), 13, 0.5)
    assert w[1] == 0 and w[4] / w[0] == pytest.approx(5.0)


def test_training_learns_and_checkpoint_round_trips(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    ds = Dataset.open(toy_dataset(tmp_path / "toy", 10))
    train = extract_cells(ds, ds.stems[:7], window=48, size=24)
    test = extract_cells(ds, ds.stems[7:], window=48, size=24)
    cfg = MorphologyTrainConfig(window=48, size=24, epochs=4, batch_size=16, lr=3e-3, model=MorphologyNetConfig(width=8, blocks=2))
    model, hist = train_classifier(train, cfg)
    assert len(hist) == 4 and hist[-1]["loss"] < hist[0]["loss"]
    p = predict_proba(model, test.crops)
    assert auc(p[:, 4], test.labels == 4) > 0.95
    save_classifier(tmp_path / "ckpt", model, cfg, {"dataset": "toy", "stems": ds.stems[:7]})
    back, back_cfg, meta = load_classifier(tmp_path / "ckpt")
    assert back_cfg == cfg and meta["classes"][4] == "target"
    assert np.allclose(predict_proba(back, test.crops), p, atol=1e-6)
    with pytest.raises(DataError, match="not a morphology classifier checkpoint"):
        load_classifier(tmp_path / "toy")


def test_cli_train_eval_and_leak_refusal(tmp_path: Path, capsys) -> None:
    root = toy_dataset(tmp_path / "toy", 12)
    sp = save_splits(make_splits(Dataset.open(root).stems, dataset="toy", val=0.2, test=0.3, seed=0), tmp_path / "s.json")
    ck = tmp_path / "ck"
    assert main(["morphology", "train", str(root), "--out", str(ck), "--splits", str(sp), "--split", "train", "--epochs", "1", "--batch-size", "16", "--threads", "1"]) == 0
    meta = json.loads((ck / "model.json").read_text())
    train_stems = json.loads(sp.read_text())["roles"]["train"]
    assert meta["provenance"]["stems"] == sorted(train_stems) and meta["provenance"]["split"] == "train"
    out = tmp_path / "res.json"
    assert main(["morphology", "eval", str(root), "--checkpoint", str(ck), "--splits", str(sp), "--n-boot", "20", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["split"] == "test" and res["n_images"] == len(json.loads(sp.read_text())["roles"]["test"])
    assert "macro_auc=" in capsys.readouterr().out
    # a checkpoint trained on every image has seen the test images: refused
    ck2 = tmp_path / "ck2"
    assert main(["morphology", "train", str(root), "--out", str(ck2), "--epochs", "1", "--batch-size", "16", "--threads", "1"]) == 0
    assert main(["morphology", "eval", str(root), "--checkpoint", str(ck2), "--splits", str(sp)]) == 2
    assert "leak" in capsys.readouterr().err
    assert main(["morphology", "eval", str(root), "--checkpoint", str(tmp_path / "nope"), "--splits", str(sp)]) == 2


def test_cli_unit_trains_scores_and_draws(tmp_path: Path, capsys) -> None:
    root = toy_dataset(tmp_path / "toy", 12)
    sp = save_splits(make_splits(Dataset.open(root).stems, dataset="toy", val=0.25, test=0.25, seed=0), tmp_path / "s.json")
    ck = tmp_path / "ck"
    assert main(["morphology", "train", str(root), "--out", str(ck), "--splits", str(sp), "--split", "train", "--epochs", "1", "--batch-size", "16", "--threads", "1"]) == 0
    out = tmp_path / "unit"
    args = ["morphology", "unit", str(root), "--classifier", str(ck), "--splits", str(sp), "--out", str(out), "--target", "target", "--iterations", "2", "--dim", "8", "--threads", "1"]
    assert main(args) == 0
    assert {p.name for p in out.iterdir()} == {"unit.pt", "unit.json", "figure.png", "smear.png", "scores.json"}
    meta = json.loads((out / "unit.json").read_text())
    assert meta["config"]["target"] == 4 and meta["summary"]["iterations"] == 2
    assert meta["crop"] == {"window": 80, "size": 32}  # the crop UNIT learned on (generate --morphology uses it)
    assert meta["provenance"]["unit"]["stems"] == sorted(json.loads(sp.read_text())["roles"]["train"])
    rows = meta["summary"]["acceptance"]
    assert rows[0]["t"] == 0.0 and rows[0]["translated"] == 1.0  # t = 0 keeps everything
    assert "accept09_translated=" in capsys.readouterr().out
    assert meta["summary"]["example_smear"]["cells"] > 0
    from rbcray.train.unit import load_unit

    model, cfg, _ = load_unit(out)
    assert cfg.model.dim == 8
    assert main([*args, "--overwrite", "--target", "normal"]) == 2  # normal is the source domain
    assert "must be a rare class" in capsys.readouterr().err
