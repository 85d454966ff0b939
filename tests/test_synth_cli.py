"""`rbcray shapes`, `rbcray masks`, `rbcray compare` end to end on a small dataset folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from synth_data import make_dataset

from rbcray.cli import main
from rbcray.data.dataset import Dataset
from rbcray.data.formats import adjacency_pairs
from rbcray.data.stats import dataset_stats
from rbcray.io import read_png_unchanged, write_json
from rbcray.synth.config import SynthConfig
from rbcray.synth.engine import synthesize
from rbcray.synth.shapes import ShapeBank


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    ds = make_dataset(d / "real", n_images=6, seed=2, width=240, height=180, n=24, size=22)
    stats = d / "stats.json"
    write_json(stats, dataset_stats(Dataset.open(ds)))
    return {"dir": d, "real": ds, "stats": stats}


def test_shapes_masks_compare_end_to_end(real, tmp_path, capsys) -> None:
    shapes = tmp_path / "shapes.parquet"
    assert main(["shapes", str(real["real"]), "--out", str(shapes)]) == 0
    # the bank is plain Parquet: readable and decodable without rbcray
    t = pq.read_table(shapes)
    assert {"exemplar_id", "source", "stem", "instance_id", "category", "height", "width", "area", "mask_png"} <= set(t.column_names)
    crop = cv2.imdecode(np.frombuffer(t.column("mask_png")[0].as_py(), np.uint8), cv2.IMREAD_UNCHANGED)
    assert crop.shape == (t.column("height")[0].as_py(), t.column("width")[0].as_py())
    assert int((crop > 0).sum()) == t.column("area")[0].as_py()
    assert b"rbcray.shape_bank" in t.schema.metadata

    outs = {}
    for placement in ("adhesive", "uniform"):
        out = tmp_path / placement
        args = ["masks", "--shapes", str(shapes), "--stats", str(real["stats"]), "--num", "5", "--seed", "3",
                "--out", str(out), "--placement", placement, "--colors", "6"]
        assert main(args) == 0
        outs[placement] = out
        ds = Dataset.open(out)
        meta = json.loads((out / "dataset.json").read_text())
        cfg = SynthConfig.from_dict(meta["config"]["synth"])
        assert (cfg.placement, cfg.colors, cfg.width, cfg.height) == (placement, 6, 240, 180)
        assert meta["config"]["seed"] == 3 and len(ds) == 5 and not ds.has_images
        bank = ShapeBank.load(shapes)
        cells = pq.read_table(out / "cells.parquet").to_pydict()
        assert len(cells["id"]) == sum(r["n_cells"] for r in ds.samples)
        for i, stem in enumerate(ds.stems):
            inst = read_png_unchanged(out / "instances" / f"{stem}.png")
            assert inst.dtype == np.uint16
            s = synthesize(bank, cfg, 3, i)  # the file holds exactly sample (seed, i)
            assert np.array_equal(inst, s.instances)
            rgb = read_png_unchanged(out / "masks" / f"{stem}.png")
            assert np.array_equal(rgb, s.color_mask())
            pairs = adjacency_pairs(inst)
            assert not (s.colors[pairs[:, 0]] == s.colors[pairs[:, 1]]).any()

    res_json, fig = tmp_path / "cmp.json", tmp_path / "fig4.png"
    capsys.readouterr()
    assert main(["compare", str(real["real"]), str(outs["adhesive"]), str(outs["uniform"]), "--json", str(res_json), "--figure", str(fig)]) == 0
    printed = capsys.readouterr().out
    assert "KS D" in printed and "adhesive" in printed and "uniform" in printed
    res = json.loads(res_json.read_text())
    assert [s["label"] for s in res["synthetic"]] == ["adhesive", "uniform"]
    for s in res["synthetic"]:
        assert set(s["ks"]) == {"cell_area", "nn_distance", "clark_evans", "touching_fraction", "cells_per_image"}
        assert all(0.0 <= v["D"] <= 1.0 for v in s["ks"].values())
    img = read_png_unchanged(fig)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 1000


def test_masks_in_another_process_are_the_same_bytes(real, tmp_path) -> None:
    shapes = tmp_path / "shapes.parquet"
    assert main(["shapes", str(real["real"]), "--out", str(shapes)]) == 0
    common = ["--shapes", str(shapes), "--cells-mean", "30", "--cells-std", "4", "--cell-size", "20",
              "--width", "256", "--height", "192", "--seed", "9"]
    assert main(["masks", *common, "--num", "4", "--out", str(tmp_path / "a")]) == 0
    # another process, another split of the sample range
    r = subprocess.run([sys.executable, "-m", "rbcray", "masks", *common, "--num", "2", "--start", "2", "--out", str(tmp_path / "b")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for stem in ("000002", "000003"):
        for sub in ("instances", "masks"):
            assert (tmp_path / "a" / sub / f"{stem}.png").read_bytes() == (tmp_path / "b" / sub / f"{stem}.png").read_bytes()


def _fails(args: list[str], capsys, *words: str) -> None:
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, err


def test_bad_inputs_are_one_line_errors(real, tmp_path, capsys) -> None:
    shapes = tmp_path / "shapes.parquet"
    assert main(["shapes", str(real["real"]), "--out", str(shapes)]) == 0
    out = tmp_path / "out"
    base = ["masks", "--shapes", str(shapes), "--stats", str(real["stats"]), "--num", "2", "--out", str(out)]
    _fails(["masks", "--shapes", str(tmp_path / "nope.parquet"), "--stats", str(real["stats"]), "--num", "2", "--out", str(out)],
           capsys, "nope.parquet", "not found")
    _fails([*base, "--cell-size", "500"], capsys, "does not fit")
    _fails([*base, "--cells-mean", "5000"], capsys, "density cannot be placed")
    bad_stats = tmp_path / "bad.json"
    bad_stats.write_text("{\"n_images\": 3}")
    _fails(["masks", "--shapes", str(shapes), "--stats", str(bad_stats), "--num", "2", "--out", str(out)], capsys, "bad.json", "synthesis")
    _fails(["masks", "--shapes", str(shapes), "--num", "2", "--out", str(out)], capsys, "--cells-mean", "--cell-size")
    assert not out.exists()  # nothing half-written
    (tmp_path / "empty").mkdir()
    _fails(["shapes", str(tmp_path / "empty"), "--out", str(tmp_path / "s.parquet")], capsys, "not a dataset folder")
    _fails(["compare", str(real["real"]), str(real["real"]), "--figure", str(tmp_path / "f.jpg")], capsys, "PNG")


def test_masks_config_file_and_flags(real, tmp_path, capsys) -> None:
    shapes = tmp_path / "shapes.parquet"
    assert main(["shapes", str(real["real"]), "--out", str(shapes)]) == 0
    cfg_file = tmp_path / "synth.yaml"
    cfg_file.write_text("placement: uniform\ncolors: 4\nshapes_per_mask: 0\nwidth: 200\n")
    out = tmp_path / "m"
    assert main(["masks", "--shapes", str(shapes), "--stats", str(real["stats"]), "--num", "2", "--out", str(out),
                 "--config", str(cfg_file), "--colors", "5"]) == 0
    cfg = SynthConfig.from_dict(json.loads((out / "dataset.json").read_text())["config"]["synth"])
    # the file's values, the flag over the file, the stats for the rest (count scaled by area)
    assert (cfg.placement, cfg.colors, cfg.shapes_per_mask, cfg.width, cfg.height) == ("uniform", 5, 0, 200, 180)
    stats = json.loads(real["stats"].read_text())["synthesis"]
    assert cfg.cells_mean == pytest.approx(stats["cells_mean"] * 200 / 240)
    cfg_file.write_text("placment: uniform\n")
    _fails(["masks", "--shapes", str(shapes), "--stats", str(real["stats"]), "--num", "2", "--out", str(tmp_path / "n"),
            "--config", str(cfg_file)], capsys, "synth.yaml", "placment")
