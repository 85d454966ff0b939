"""Gupta et al.'s evaluation (real vs real + synthetic rare cells): paired bootstrap, t selection,
determinism of the synthetic set, leak refusal, config checks, and one tiny end-to-end run through
the sweep (a morphology-only sweep: no image models, no Ray).

Tiny untrained UNITs (tests/morph_fixtures.py) and one-epoch classifiers: plumbing, not figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from morph_fixtures import make_classifier, make_unit
from test_morphology_classifier import toy_dataset

from rbcray.config import from_dict
from rbcray.data.cells import extract_cells
from rbcray.data.dataset import Dataset
from rbcray.data.splits import make_splits, save_splits
from rbcray.errors import ConfigError, DataError
from rbcray.evaluate.config import sweep_from_dict
from rbcray.evaluate.morphology_aug import (
    draw_sources,
    evaluate_augmentation,
    paired_image_bootstrap,
    regime_key,
    select_threshold,
    synthesize,
)
from rbcray.evaluate.morphology_aug_config import MorphologyAugConfig
from rbcray.evaluate.morphology_aug_report import key_line, to_markdown
from rbcray.models.morphology import MorphologyNetConfig
from rbcray.train.morphology import MorphologyTrainConfig

TINY = {"model": {"width": 4, "blocks": 1}, "epochs": 1, "batch_size": 16}


def _preds(seed: int, n_img: int = 12, per: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n_img * per)
    probs = rng.dirichlet(np.ones(3), n_img * per)
    probs[np.arange(len(labels)), labels] += 0.3  # better than chance
    return probs / probs.sum(1, keepdims=True), labels, np.repeat(np.arange(n_img), per)


def test_paired_bootstrap_of_identical_predictions_is_exactly_zero() -> None:
    probs, labels, img = _preds(0)
    res = paired_image_bootstrap({"real": probs, "same": probs.copy()}, labels, img, [0, 1, 2], "real", n_boot=200)
    d = res["diff"]["same"]
    assert d["auc"] == [0.0, 0.0, 0.0] and d["auc_ci"] == [[0.0, 0.0]] * 3
    assert d["macro"] == 0.0 and d["macro_ci"] == [0.0, 0.0]
    m = res["models"]["real"]
    for j in range(3):  # a real interval around a better-than-chance AUC
        lo, hi = m["auc_ci"][j]
        assert 0.5 < lo <= m["auc"][j] <= hi < 1.0 and hi > lo
    assert res["n_images"] == 12 and res["n_test"] == [int((labels == c).sum()) for c in range(3)]


def test_paired_bootstrap_difference_is_paired() -> None:
    probs, labels, img = _preds(1)
    worse = 0.5 * probs + 0.5 * np.random.default_rng(9).dirichlet(np.ones(3), len(labels))
    res = paired_image_bootstrap({"real": probs, "worse": worse}, labels, img, [0, 1, 2], "real", n_boot=300)
    d, m = res["diff"]["worse"], res["models"]
    assert all(a < 0 for a in d["auc"])
    assert d["auc"] == pytest.approx([w - r for w, r in zip(m["worse"]["auc"], m["real"]["auc"])])
    assert all(lo < hi for lo, hi in d["auc_ci"])
    # pairing: a model ranking every class's cells as the reference does (a monotone transform of
    # its scores) has difference exactly 0 in every replicate, although each AUC varies across them
    res = paired_image_bootstrap({"real": probs, "cubed": probs**3}, labels, img, [0, 1, 2], "real", n_boot=300)
    assert res["diff"]["cubed"]["auc_ci"] == [[0.0, 0.0]] * 3
    assert res["models"]["cubed"]["auc_ci"] == res["models"]["real"]["auc_ci"]
    with pytest.raises(ConfigError, match="reference"):
        paired_image_bootstrap({"a": probs}, labels, img, [0], "real", n_boot=10)


def test_threshold_selection_picks_the_best_val_t_ties_to_smaller() -> None:
    scores = {"real": 0.80, "unfiltered": 0.99, "t=0.5": 0.81, "t=0.7": 0.90, "t=0.9": 0.90, "t=0.95": 0.85}
    assert select_threshold(scores, (0.5, 0.7, 0.9, 0.95)) == 0.7  # unfiltered is not a t; tie -> 0.7
    assert select_threshold({**scores, "t=0.95": 0.95}, (0.5, 0.7, 0.9, 0.95)) == 0.95
    assert regime_key(None) == "unfiltered" and regime_key(0.9) == "t=0.9"


def test_synthetic_set_is_deterministic_and_keeps_the_source_mask(tmp_path: Path) -> None:
    from rbcray.train.unit import load_unit

    ds = Dataset.open(toy_dataset(tmp_path / "toy", 4))
    normal = extract_cells(ds, ds.stems, window=80, size=32, classes=[0])
    unit, _, _ = load_unit(make_unit(tmp_path / "u", 4))
    a, b = synthesize(unit, normal, 7, 3, 4), synthesize(unit, normal, 7, 3, 4)
    assert np.array_equal(a.crops, b.crops) and np.array_equal(a.cell_id, b.cell_id) and (a.labels == 4).all()
    src = draw_sources(len(normal), 7, 3, 4)
    assert np.array_equal(a.crops[:, 3], normal.crops[src, 3])  # mask channel = the source cell's
    assert not np.array_equal(a.crops[:, :3], normal.crops[src, :3])  # RGB is translated
    assert not np.array_equal(draw_sources(len(normal), 7, 4, 4), src)  # another seed, another draw
    assert not np.array_equal(draw_sources(len(normal), 7, 3, 7), src)  # another class, its own stream
    assert len(set(src.tolist())) == 7  # without replacement while there are enough
    assert len(draw_sources(3, 10, 0, 4)) == 10


@pytest.mark.parametrize(
    "change, message",
    [
        ({"thresholds": [0.5, 1.5]}, "t = 1.5 must be within"),
        ({"thresholds": [0.0]}, "unfiltered regime is always run"),
        ({"thresholds": [0.9, 0.9]}, "repeat"),
        ({"units": []}, "at least one UNIT"),
        ({"n_synthetic": 0}, "n_synthetic = 0"),
        ({"n_boot": 3}, "n_boot = 3"),
        ({"train": {"epochs": 0}}, "epochs = 0"),
        ({"thresholds": "0.9"}, "must be a list"),
        ({"bogus": 1}, "unknown config key"),
    ],
)
def test_bad_config_values_give_one_clear_error(change: dict, message: str) -> None:
    base = {"classifier": "clf", "units": ["unit-target"]}
    with pytest.raises(ConfigError, match=message):
        from_dict(MorphologyAugConfig, {**base, **change}, where="morphology")


def test_sweep_config_morphology_section_parses_and_rejects_bad_values() -> None:
    sweep = {"datasets": [{"name": "chula", "real": "chula", "splits": "s.json"}], "models": [],
             "morphology": {"classifier": "clf", "units": ["u"], "thresholds": [0.8, 0.9], "train": {"epochs": 3}}}
    cfg = sweep_from_dict(sweep)
    assert cfg.morphology is not None and cfg.morphology.thresholds == (0.8, 0.9) and cfg.morphology.train.epochs == 3
    assert cfg.morphology_dataset().name == "chula" and cfg.trials() == []
    with pytest.raises(ConfigError, match="morphology.thresholds: t = 2.0"):
        sweep_from_dict({**sweep, "morphology": {**sweep["morphology"], "thresholds": [2]}})
    with pytest.raises(ConfigError, match="morphology.dataset 'nope'"):
        sweep_from_dict({**sweep, "morphology": {**sweep["morphology"], "dataset": "nope"}})
    with pytest.raises(ConfigError, match="'models' must list at least one model"):
        sweep_from_dict({**sweep, "morphology": None})
    with pytest.raises(ConfigError, match="'models' must list at least one model"):
        sweep_from_dict({**sweep, "morphology": {**sweep["morphology"], "enabled": False}})


def _setup(tmp_path: Path) -> tuple[Path, Path, dict]:
    root = toy_dataset(tmp_path / "toy", 12)
    sp = save_splits(make_splits(Dataset.open(root).stems, dataset="toy", val=0.25, test=0.25, seed=0), tmp_path / "s.json")
    section = {"classifier": make_classifier(tmp_path / "clf"), "units": [make_unit(tmp_path / "u4", 4)],
               "thresholds": [0.5, 0.9], "train": TINY, "n_boot": 20}
    return root, sp, section


def test_overlap_with_val_or_test_is_refused(tmp_path: Path) -> None:
    from rbcray.train.morphology import load_classifier, save_classifier

    root, sp, section = _setup(tmp_path)
    test_stem = json.loads(sp.read_text())["roles"]["test"][0]
    model, ccfg, meta = load_classifier(section["classifier"])
    leaky = {**meta["provenance"], "dataset": "toy", "stems": [test_stem]}
    save_classifier(tmp_path / "leaky", model, ccfg, leaky)
    cfg = from_dict(MorphologyAugConfig, {**section, "classifier": str(tmp_path / "leaky")})
    with pytest.raises(DataError, match=f"leak: classifier was built from test image\\(s\\) {test_stem}"):
        evaluate_augmentation(root, sp, cfg, log=lambda m: None)
    # a crop the pseudo-labeller does not use: one clear error
    cfg = from_dict(MorphologyAugConfig, {**section, "train": {**TINY, "size": 40}})
    with pytest.raises(ConfigError, match="crop window/size 80/40 differ"):
        evaluate_augmentation(root, sp, cfg, log=lambda m: None)


def test_morphology_only_sweep_end_to_end(tmp_path: Path) -> None:
    from rbcray.distributed.sweep import run_sweep

    root, sp, section = _setup(tmp_path)
    cfg = sweep_from_dict({"datasets": [{"name": "toy", "real": str(root), "splits": str(sp)}], "models": [], "morphology": section})
    paths = run_sweep(cfg, str(tmp_path / "out"), log=lambda m: None)
    assert set(paths) == {"morphology.md", "table.md", "report.json"}
    rep = json.loads(Path(paths["report.json"]).read_text())["morphology"]
    assert rep["targets"] == ["target"] and rep["t_star"] in (0.5, 0.9)
    assert set(rep["val"]) == {"real", "unfiltered", "t=0.5", "t=0.9"}
    assert set(rep["test"]["models"]) == {"real", "unfiltered", rep["regime_star"]}
    ds = Dataset.open(root)
    n_target = len(extract_cells(ds, json.loads(sp.read_text())["roles"]["train"], window=80, size=32, classes=[4]))
    assert n_target > 0 and rep["n_train"]["unfiltered"]["target"] == n_target  # as many as real train target cells
    assert rep["n_train"]["real"] == {"real": rep["cells"]["train"], "target": 0}
    acc = rep["acceptance"][0]
    assert acc["translated"] == n_target and [r["t"] for r in acc["by_t"]] == [0.5, 0.9]
    assert acc["by_t"][0]["accepted"] >= acc["by_t"][1]["accepted"]
    for name, same in rep["shared_models"].items():  # shared models only where the training cells are the same
        assert rep["n_train"][name] == rep["n_train"][same]
    md = Path(paths["table.md"]).read_text()
    assert "| target * |" in md and "auc_real=" in md and f"t* = {rep['t_star']:g}" in md
    # the same run again: the same numbers (deterministic synthetic set and training)
    again = evaluate_augmentation(root, sp, cfg.morphology, log=lambda m: None)
    assert again["test"]["models"]["unfiltered"]["auc"] == rep["test"]["models"]["unfiltered"]["auc"]
    assert key_line(again) == key_line(rep) and to_markdown(again).split("How:")[0] == to_markdown(rep).split("How:")[0]
    assert MorphologyTrainConfig(**{**TINY, "model": MorphologyNetConfig(width=4, blocks=1)}) == cfg.morphology.train


def _constructed_result() -> dict:
    """A result as evaluate_augmentation returns it, from constructed predictions: t* = 0.9 kept
    no synthetic cell, so its model is the real one."""
    probs, labels, img = _preds(2)
    labels = np.where(labels == 2, 4, labels)  # classes normal, macrocyte, target
    p = np.zeros((len(labels), 13))
    p[:, [0, 1, 4]] = probs
    boot = paired_image_bootstrap({"real": p, "unfiltered": p**2, "t=0.9": p}, labels, img, [4, 0, 1], "real", n_boot=50)
    return {
        "targets": ["target"], "t_star": 0.9, "regime_star": "t=0.9", "test": boot,
        "val": {"real": {"target_auc": [0.9], "mean": 0.9}, "unfiltered": {"target_auc": [0.8], "mean": 0.8},
                "t=0.9": {"target_auc": [0.9], "mean": 0.9}},
        "acceptance": [{"class": "target", "translated": 10, "mean_p": 0.1, "max_p": 0.6, "by_t": [{"t": 0.9, "accepted": 0}]}],
        "n_train": {"real": {"real": 100, "target": 0}, "unfiltered": {"real": 100, "target": 10}, "t=0.9": {"real": 100, "target": 0}},
        "shared_models": {"t=0.9": "real"}, "n_trained": 2, "cells": {"train": 100, "val": 50, "test": len(labels)},
        "images": {"train": 5, "val": 3, "test": 12}, "config": {"train": {"epochs": 3, "seed": 0}}, "seconds": 1.0,
    }


def test_sweep_reports_carry_the_morphology_section(tmp_path: Path) -> None:
    """A sweep with image models and a morphology section: morphology.md, its section at the end of
    table.md, and report.json['morphology'] (write_reports, constructed results)."""
    from test_evaluate_report import cfg, results

    from rbcray.evaluate.report import OutputWriter, write_reports

    c = cfg()
    res = _constructed_result()
    md = to_markdown(res)
    paths = write_reports(OutputWriter(str(tmp_path)), c, results(c), {"chula": "derived"}, morphology=res, morphology_md=md)
    assert (tmp_path / "morphology.md").read_text() == md and "morphology.md" in paths
    table = (tmp_path / "table.md").read_text()
    assert table.index("# constructed") < table.index("## Morphology: real vs real + synthetic rare cells")
    assert json.loads((tmp_path / "report.json").read_text())["morphology"]["t_star"] == 0.9
    assert "kept the same training cells as real" in md and "| t=0.9 (= real) | 0.9000 | 0 |" in md
    assert "| target * | " in md and "+0.000 [+0.000, +0.000] |\n| normal" in md  # t* - real of target: exactly 0
    assert key_line(res).endswith("t_star=0.9 targets=target")


def test_evaluate_check_validates_the_morphology_inputs(tmp_path: Path, capsys) -> None:
    import yaml

    from rbcray.cli import main

    root, sp, section = _setup(tmp_path)
    sweep = {"datasets": [{"name": "toy", "real": str(root), "splits": str(sp)}], "models": [], "morphology": section}
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(sweep))
    assert main(["evaluate", "--config", str(good), "--out", str(tmp_path / "o"), "--check"]) == 0
    assert "UNIT(s) for target OK" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**sweep, "morphology": {**section, "units": [str(tmp_path / "nope")]}}))
    assert main(["evaluate", "--config", str(bad), "--out", str(tmp_path / "o"), "--check"]) == 2
    assert "nope: not a UNIT checkpoint" in capsys.readouterr().err
    bad.write_text(yaml.safe_dump({**sweep, "morphology": {**section, "n_boot": 1}}))
    assert main(["evaluate", "--config", str(bad), "--out", str(tmp_path / "o"), "--check"]) == 2
    assert "n_boot = 1: must be >= 10" in capsys.readouterr().err
    assert main(["evaluate", "--config", str(good), "--out", str(tmp_path / "o"), "--partial"]) == 2
    assert "--partial: a morphology-only sweep has no trials" in capsys.readouterr().err
