"""Tests of ``rbcray annotate``: the segmentation kernel, the dataset writer path, the quality metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from rbcray.config import to_dict
from rbcray.data.annotate import PRESETS, AnnotateConfig, annotate_image, annotate_source, config_for_source
from rbcray.data.dataset import Dataset
from rbcray.data.quality import box_recall, median_cell_diameter, point_quality
from rbcray.data.sources import open_source
from rbcray.errors import ConfigError, DataError, RbcrayError
from rbcray.io import read_image

BG = (205, 212, 208)
RBC = (185, 120, 150)
PALLOR = (200, 160, 180)


def _synthetic() -> tuple[np.ndarray, list[tuple[int, int]], tuple[int, int], tuple[int, int]]:
    """A drawn smear: 12 lone RBCs, 3 touching pairs, one WBC, one platelet (centres returned)."""
    rng = np.random.default_rng(0)
    img = np.zeros((360, 480, 3), np.uint8)
    img[:] = BG
    centres = [(50 + 75 * (k % 6), 45 + 70 * (k // 6)) for k in range(12)]
    centres += [(60, 215), (100, 215), (190, 215), (230, 218), (320, 212), (358, 222)]
    for k, (cx, cy) in enumerate(centres):
        r = 22 if k % 2 == 0 else 19  # unequal partners: no tie between the pair's peaks
        cv2.circle(img, (cx, cy), r, RBC, -1, lineType=cv2.LINE_AA)
        cv2.circle(img, (cx, cy), 8, PALLOR, -1, lineType=cv2.LINE_AA)
    wbc = (120, 305)
    cv2.circle(img, wbc, 34, (175, 160, 205), -1, lineType=cv2.LINE_AA)
    cv2.circle(img, wbc, 20, (95, 60, 165), -1, lineType=cv2.LINE_AA)
    platelet = (300, 310)
    cv2.circle(img, platelet, 4, (110, 70, 165), -1, lineType=cv2.LINE_AA)
    noisy = img.astype(np.int16) + rng.integers(-3, 4, img.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8), centres, wbc, platelet


def test_synthetic_smear_counts_and_categories() -> None:
    img, centres, wbc, platelet = _synthetic()
    inst, cats = annotate_image(img, AnnotateConfig(cell_size=44))
    assert inst.dtype == np.uint16 and inst.shape == img.shape[:2]
    ids = [int(inst[y, x]) for x, y in centres]
    assert all(i > 0 for i in ids), "every drawn RBC centre lies in a cell"
    assert len(set(ids)) == len(centres), "touching discs are split, one cell each"
    assert all(cats[i] == 1 for i in ids)
    assert cats[int(inst[wbc[1], wbc[0]])] == 2
    assert cats[int(inst[platelet[1], platelet[0]])] == 3
    assert int(inst.max()) == len(centres) + 2 == len(cats)
    # Labels are 1..N with nothing else: a canonical map.
    assert set(np.unique(inst).tolist()) == set(range(int(inst.max()) + 1))


def test_touching_pairs_need_the_splitting() -> None:
    img, centres, _, _ = _synthetic()
    inst, _ = annotate_image(img, AnnotateConfig(cell_size=44, h_maxima=1.0, split_overlaps=False))
    assert len({int(inst[y, x]) for x, y in centres}) == len(centres) - 3  # the 3 pairs stay merged


def test_cell_size_is_estimated_when_not_given() -> None:
    img, centres, _, _ = _synthetic()
    inst, _ = annotate_image(img, AnnotateConfig(cell_size=None, cell_size_range=(20.0, 120.0)))
    ids = [int(inst[y, x]) for x, y in centres]
    assert min(ids) > 0 and len(set(ids)) == len(centres)
    assert 38 <= median_cell_diameter(inst) <= 50


def test_border_cells_are_kept() -> None:
    img, _, _, _ = _synthetic()
    cut = np.ascontiguousarray(img[:, 30:])  # the first column of discs now crosses the left edge
    inst, _ = annotate_image(cut, AnnotateConfig(cell_size=44))
    assert (inst[:, 0] > 0).any()


def test_real_chula_points(chula_root: Path) -> None:
    src = open_source("chula-rbc-12", chula_root)
    cfg = config_for_source("chula-rbc-12")
    images = [s for s in src.images if s.points is not None and len(s.points)][:4]
    n = alone = bg = 0.0
    for s in images:
        inst, cats = annotate_image(read_image(s.path), cfg)
        assert set(cats) == set(range(1, int(inst.max()) + 1))
        q = point_quality(inst, s.points)
        n += q["n_points"]
        alone += q["one_to_one"] * q["n_points"]
        bg += q["background"] * q["n_points"]
    assert n > 100
    assert alone / n >= 0.9
    assert bg / n <= 0.05


def test_annotate_source_writes_a_complete_dataset(chula_root: Path, tmp_path: Path) -> None:
    src = open_source("chula-rbc-12", chula_root)
    cfg = config_for_source("chula-rbc-12")
    calls = []
    out = annotate_source(src, tmp_path / "ds", cfg, limit=2, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 2), (2, 2)]
    ds = Dataset.open(out)
    assert ds.stems == ["1", "2"] and ds.meta["kind"] == "annotated"
    assert ds.meta["config"] == to_dict(cfg)
    assert ds.meta["source"]["dataset"] == "chula-rbc-12" and ds.meta["source"]["n_available"] == len(src.images)
    for stem, s in zip(ds.stems, src.images):
        rec = ds.record(stem)
        assert rec["source_file"] == "Dataset/" + s.path.name and rec["split"] is None
        assert ds.image_path(stem).read_bytes() == s.path.read_bytes()  # the original JPEG, untouched
        inst, cats = annotate_image(read_image(s.path), cfg)
        assert np.array_equal(ds.load_instances(stem), inst)
        assert ds.load_categories(stem) == cats
    coco = json.loads((out / "coco.json").read_text())
    assert len(coco["annotations"]) == ds.meta["n_cells"] > 50
    border = [a["border"] for a in coco["annotations"]]
    assert any(border) and not all(border)
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        at_edge = x == 0 or y == 0 or x + w == 640 or y + h == 480
        assert a["border"] == at_edge


def test_workers_do_not_change_output(chula_root: Path, tmp_path: Path) -> None:
    src = open_source("chula-rbc-12", chula_root)
    cfg = config_for_source("chula-rbc-12")
    a = annotate_source(src, tmp_path / "w1", cfg, limit=3, workers=1)
    b = annotate_source(src, tmp_path / "w2", cfg, limit=3, workers=2)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != "dataset.json")
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name != "dataset.json")
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    ma, mb = (json.loads((d / "dataset.json").read_text()) for d in (a, b))
    ma.pop("created"), mb.pop("created")
    assert ma == mb


def test_folder_source_and_unreadable_image(chula_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "smears"
    folder.mkdir()
    shutil.copy(chula_root / "Dataset" / "1.jpg", folder / "a.jpg")
    shutil.copy(chula_root / "Dataset" / "2.jpg", folder / "my smear (2).jpg")
    src = open_source(str(folder))
    ds = Dataset.open(annotate_source(src, tmp_path / "ok", config_for_source(src.name)))
    assert ds.stems == ["a", "my_smear__2_"]  # names made safe for the dataset format
    assert [ds.record(s)["source_file"] for s in ds.stems] == ["a.jpg", "my smear (2).jpg"]
    (folder / "b.jpg").write_bytes(b"this is not a JPEG")
    src = open_source(str(folder))
    with pytest.raises(DataError, match="b.jpg"):
        annotate_source(src, tmp_path / "out", config_for_source(src.name))
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")], "no staging left behind"


def test_bad_arguments(chula_root: Path, tmp_path: Path) -> None:
    src = open_source("chula-rbc-12", chula_root)
    cfg = config_for_source("chula-rbc-12")
    for bad in (0, -3):
        with pytest.raises(ConfigError, match="limit"):
            annotate_source(src, tmp_path / "x", cfg, limit=bad)
    with pytest.raises(ConfigError, match="workers"):
        annotate_source(src, tmp_path / "x", cfg, limit=1, workers=0)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(RbcrayError, match="not empty"):
        annotate_source(src, full, cfg, limit=1)
    assert (full / "keep.txt").read_text() == "mine"
    out = annotate_source(src, full, cfg, limit=1, overwrite=True)
    assert Dataset.open(out).stems == ["1"] and not (full / "keep.txt").exists()
    with pytest.raises(DataError, match="RGB uint8"):
        annotate_image(np.zeros((64, 64), np.uint8), cfg)
    with pytest.raises(DataError, match="RGB uint8"):
        annotate_image(np.zeros((64, 64, 3), np.float32), cfg)


def test_config_validation_and_presets() -> None:
    assert set(PRESETS) == {"chula-rbc-12", "bccd-txl-pbc"}
    assert config_for_source("some-folder") == AnnotateConfig()
    assert config_for_source("chula-rbc-12", cell_size=50).cell_size == 50.0
    assert config_for_source("chula-rbc-12", cell_size=None) == PRESETS["chula-rbc-12"]
    with pytest.raises(ConfigError, match="cell_size"):
        config_for_source("chula-rbc-12", cell_size=-5)
    with pytest.raises(ConfigError, match="unknown config key"):
        config_for_source("chula-rbc-12", cell_diameter=50)
    with pytest.raises(ConfigError, match="cell_size_range"):
        AnnotateConfig(cell_size_range=(90.0, 30.0))


def test_point_quality_and_box_recall() -> None:
    inst = np.zeros((20, 30), np.uint16)
    inst[2:8, 2:8] = 1
    inst[2:8, 8:14] = 2
    inst[10:18, 20:28] = 3
    pts = np.array([[3, 3, 0], [5, 5, 0], [10, 4, 0], [24, 14, 0], [0, 19, 0], [100, 100, 0]])
    q = point_quality(inst, pts, cut_radius=3.0)
    assert q["n_points"] == 6 and q["n_cells"] == 3
    assert q["in_cell"] == pytest.approx(4 / 6)  # the far-away point is clamped to (29, 19): background
    assert q["one_to_one"] == pytest.approx(2 / 6)  # two points share cell 1
    assert q["background"] == pytest.approx(2 / 6)
    assert q["near_cut"] == pytest.approx(2 / 6)  # (5, 5) and (10, 4) lie 3 px from the 1/2 boundary
    assert point_quality(inst, np.zeros((0, 3)))["one_to_one"] == 1.0
    boxes = np.array([[2, 2, 8, 8], [8, 2, 14, 8], [20, 10, 26, 16], [0, 0, 1, 1]], dtype=float)
    assert box_recall(inst, boxes) == (3, 4)  # the last box overlaps nothing; (20,10,26,16) has IoU 0.5625
    assert box_recall(inst, boxes, iou=0.6) == (2, 4)
    assert box_recall(inst, boxes, cell_ids=np.array([3])) == (1, 4)
    assert box_recall(inst, np.zeros((0, 4))) == (0, 0)


@pytest.mark.parametrize("which", ["drawn", "chula"])
def test_cell_size_estimate_follows_magnification(which: str, chula_root: Path) -> None:
    """Other magnifications work: a 2x-downscaled smear gets a cell-size estimate about half as
    large (the estimate comes from the image, not from the preset's range)."""
    from rbcray.data.segment import foreground

    if which == "drawn":
        img = _synthetic()[0]
    else:
        img = read_image(chula_root / "Dataset" / "1.jpg")
    small = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
    cfg = AnnotateConfig(cell_size=None, cell_size_range=(10.0, 160.0))
    full, half = float(foreground(img, cfg)["d"]), float(foreground(small, cfg)["d"])
    assert 30 <= full <= 70, full
    assert 0.4 <= half / full <= 0.6, (full, half)
    # The whole annotator follows: derived cells at half scale are about half as wide.
    ratio = median_cell_diameter(annotate_image(small, cfg)[0]) / median_cell_diameter(annotate_image(img, cfg)[0])
    assert 0.4 <= ratio <= 0.6, ratio


def test_split_scoring_and_preset_selection(chula_root: Path, bccd_root: Path) -> None:
    """Scores per split; presets are chosen on train and decided on val, never on test."""
    from dataclasses import replace

    from rbcray.data.annotate_eval import (
        grid,
        objective,
        ratio_interval,
        score_points,
        select_preset,
        source_splits,
        split_images,
    )

    bccd = open_source("bccd-txl-pbc", bccd_root)
    sp = source_splits(bccd)
    assert sp.method == "source" and {len(sp.stems(r)) for r in ("train", "val", "test")} == {150, 43, 27}
    chula = open_source("chula-rbc-12", chula_root)
    sp = source_splits(chula)
    assert sp.method == "seeded" and sp == source_splits(chula)  # seeded: the same every time
    parts = [set(sp.stems(r)) for r in ("train", "val", "test")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    train, val = split_images(chula, "train", 2), split_images(chula, "val", 2)
    assert {s.stem for s in train} <= parts[0] and {s.stem for s in val} <= parts[1]
    assert all(s.points is not None and len(s.points) for s in train + val)

    assert grid({"b": [1, 2], "a": [3]}) == [{"a": 3, "b": 1}, {"a": 3, "b": 2}]
    assert objective("boxes", {"recall": 0.8, "precision": 0.6}) == pytest.approx(2 * 0.48 / 1.4)
    assert objective("points", {"in_one": 0.9, "background": 0.05}) == pytest.approx(0.8)
    base = config_for_source("chula-rbc-12")
    # A threshold far too high loses cells; the search must prefer the sane one on val.
    cfg, records = select_preset(base, {"threshold_scale": [1.0, 3.0]}, "points", train, val, top=2)
    assert cfg.threshold_scale == 1.0 and len(records) == 3
    assert records[0]["change"] == {} and records[0]["val"]["n_images"] == 2
    s = score_points(val, replace(base, threshold_scale=3.0))
    assert s["background"] > records[0]["val"]["background"]
    lo, hi = ratio_interval(records[0]["val"]["per_image"], 1, 0)
    assert lo <= records[0]["val"]["in_one"] <= hi
