"""Dataset statistics against label maps with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from rbcray.data.dataset import Dataset, DatasetWriter
from rbcray.data.stats import cell_table, clark_evans, dataset_stats, image_spatial, nn_distances, to_markdown


def _three_cells() -> np.ndarray:
    inst = np.zeros((100, 120), np.uint16)
    inst[10:20, 10:30] = 1  # 10 x 20, area 200, centre (19.5, 14.5)
    inst[20:30, 10:20] = 2  # touches cell 1 (shares an edge), 10 x 10
    inst[60:80, 100:120] = 3  # cut by the right border, 20 x 20
    return inst


def test_cell_table_known_values() -> None:
    t = cell_table(_three_cells())
    assert t["id"].tolist() == [1, 2, 3]
    assert t["area"].tolist() == [200, 100, 400]
    assert t["height"].tolist() == [10, 10, 20]
    assert t["width"].tolist() == [20, 10, 20]
    assert t["cx"].tolist() == pytest.approx([19.5, 14.5, 109.5])
    assert t["cy"].tolist() == pytest.approx([14.5, 24.5, 69.5])
    assert t["border"].tolist() == [False, False, True]
    assert t["touching"].tolist() == [True, True, False]


def test_image_spatial_known_values() -> None:
    s = image_spatial(_three_cells())
    assert s["n_cells"] == 3
    assert sorted(s["areas"].tolist()) == [100, 200]  # the border cell is excluded from shapes
    assert s["touching_fraction"] == pytest.approx(2 / 3)
    d12 = np.hypot(5, 10)
    assert s["nn_distances"].tolist() == pytest.approx([d12, d12, np.hypot(109.5 - 14.5, 69.5 - 24.5)])  # cell 3 is nearest to cell 2


def test_diagonal_contact_counts_as_touching() -> None:
    inst = np.zeros((10, 10), np.uint16)
    inst[2, 2] = 1
    inst[3, 3] = 2
    assert cell_table(inst)["touching"].tolist() == [True, True]


def test_clark_evans_orders_regular_random_clustered() -> None:
    rng = np.random.default_rng(0)
    g = np.arange(25, 1000, 50.0)
    gx, gy = np.meshgrid(g, g)
    regular = clark_evans(gx.ravel(), gy.ravel(), 1000, 1000)
    rx, ry = rng.uniform(0, 1000, (2, 400))
    random = clark_evans(rx, ry, 1000, 1000)
    cx = rng.normal(500, 40, 400)
    cy = rng.normal(500, 40, 400)
    clustered = clark_evans(cx, cy, 1000, 1000)
    assert regular > 1.8 and 0.9 < random < 1.1 and clustered < 0.5
    assert np.isnan(clark_evans(np.array([1.0]), np.array([1.0]), 10, 10))
    assert len(nn_distances(np.array([1.0]), np.array([2.0]))) == 0


def test_dataset_stats_and_markdown(tmp_path) -> None:
    out = tmp_path / "ds"
    img = np.full((100, 120, 3), 200, np.uint8)
    img[_three_cells() > 0] = (180, 60, 90)
    with DatasetWriter(out, name="toy", kind="test") as w:
        w.add("a", _three_cells(), image=img)
        w.add("b", _three_cells()[:, ::-1].copy(), image=img[:, ::-1].copy())
    st = dataset_stats(Dataset.open(out))
    assert st["n_images"] == 2 and st["n_cells"] == 6
    assert st["table1"]["cells_per_image"]["mean"] == 3 and st["table1"]["cells_per_image"]["std"] == 0
    assert st["table1"]["cell_height"]["mean"] == pytest.approx(10)
    assert st["table1"]["cell_width"]["mean"] == pytest.approx(15)
    assert st["table1"]["rgb_inside_cells"]["mean"] == pytest.approx([180, 60, 90])
    assert st["table1"]["rgb_inside_cells"]["std"] == pytest.approx([0, 0, 0], abs=1e-6)
    assert st["synthesis"]["cell_size"] == pytest.approx(12.5)
    assert st["synthesis"]["width"] == 120 and st["synthesis"]["height"] == 100
    md = to_markdown(st)
    assert "| RBCs per image | 3.0 | 0.0 |" in md and "Clark-Evans" in md


def test_non_rbc_cells_are_not_counted(tmp_path) -> None:
    out = tmp_path / "ds"
    with DatasetWriter(out, name="toy", kind="test") as w:
        w.add("a", _three_cells(), categories={1: 1, 2: 2, 3: 1})
    st = dataset_stats(Dataset.open(out))
    assert st["n_cells"] == 2
    assert st["table1"]["rgb_inside_cells"] is None
