"""Mask synthesis engine: overlaps, colouring, counts, determinism, adhesion, bad inputs."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from synth_data import make_dataset

from rbcray.data.formats import adjacency_pairs, instance_boxes
from rbcray.data.stats import image_spatial
from rbcray.errors import ConfigError, DataError
from rbcray.synth.config import SynthConfig, resolve_config
from rbcray.synth.engine import CELL_COLUMNS, synthesize
from rbcray.synth.shapes import ShapeBank, build_shape_bank


@pytest.fixture(scope="module")
def bank_path(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bank")
    make_dataset(d / "ds", n_images=6, seed=1)
    build_shape_bank(d / "ds", d / "shapes.parquet")
    return d / "shapes.parquet"


@pytest.fixture(scope="module")
def bank(bank_path) -> ShapeBank:
    return ShapeBank.load(bank_path)


def _digest(s) -> str:
    h = hashlib.sha256(s.instances.tobytes())
    h.update(s.colors.tobytes())
    for k in CELL_COLUMNS:
        h.update(np.ascontiguousarray(s.cells[k]).tobytes())
    return h.hexdigest()


def _check_mask(s, cfg: SynthConfig, some_touch: bool = True) -> int:
    inst = s.instances
    assert inst.dtype == np.uint16 and inst.shape == (cfg.height, cfg.width)
    ids, boxes = instance_boxes(inst)
    n = s.n_cells
    assert ids.tolist() == list(range(1, n + 1))  # every placed cell shows, ids in placement order
    assert n + s.n_unplaced == s.n_requested
    # no overlaps: every cell still has all the pixels it was placed with (a later cell never
    # took any), and the table's boxes are the map's
    area = np.bincount(inst.ravel(), minlength=n + 1)[1:]
    assert area.tolist() == s.cells["area"].tolist()
    tb = np.stack([s.cells[k] for k in ("x0", "y0", "x1", "y1")], axis=1)
    assert np.array_equal(tb, boxes)
    # colouring: no two touching cells (8-connectivity) share a colour, all within K
    pairs = adjacency_pairs(inst)
    assert len(pairs) > 0 or n < 3 or not some_touch  # the colour check below is not vacuous
    assert not (s.colors[pairs[:, 0]] == s.colors[pairs[:, 1]]).any()
    return len(pairs)
    assert s.colors[0] == -1 and (s.colors[1:] >= 0).all() and (s.colors[1:] < cfg.colors).all()
    rgb = s.color_mask()
    assert rgb.shape == (cfg.height, cfg.width, 3) and (rgb[inst == 0] == 0).all()


@pytest.mark.parametrize("placement", ["adhesive", "uniform"])
@pytest.mark.parametrize("colors", [3, 8])
def test_masks_have_no_overlaps_and_valid_colouring(bank, placement, colors) -> None:
    cfg = SynthConfig(width=320, height=240, cells_mean=90, cells_std=10, cell_size=20, placement=placement, colors=colors, n_init=10)
    for i in range(6):
        _check_mask(synthesize(bank, cfg, 3, i), cfg)


@pytest.mark.parametrize("placement", ["adhesive", "uniform"])
def test_contact_cells_touch_more_and_stay_disjoint_and_properly_coloured(bank, placement) -> None:
    base = dict(width=320, height=240, cells_mean=80, cells_std=8, cell_size=20, placement=placement, n_init=5, colors=4)
    plain, touch = SynthConfig(**base), SynthConfig(**base, contact_prob=1.0, contact_overlap=0.2)
    frac = {}
    for name, cfg in (("plain", plain), ("contact", touch)):
        fr = []
        for i in range(4):
            s = synthesize(bank, cfg, 5, i)
            _check_mask(s, cfg)  # disjoint instances, table = map, no touching pair shares a colour
            fr.append(image_spatial(s.instances)["touching_fraction"])
        frac[name] = float(np.mean(fr))
    assert frac["contact"] > frac["plain"] + 0.15, frac
    # a split cell stays one connected piece and keeps most of its pixels
    from scipy import ndimage

    s = synthesize(bank, touch, 5, 0)
    for k, sl in enumerate(ndimage.find_objects(s.instances.astype(np.int32))):
        assert ndimage.label(s.instances[sl] == k + 1, structure=np.ones((3, 3)))[1] == 1


def test_reverted_kernel_and_kernel_scale_change_placement(bank) -> None:
    base = dict(width=320, height=240, cells_mean=40, cell_size=20, n_init=5)
    a = synthesize(bank, SynthConfig(**base, kernel_inside="constant"), 1, 0)
    b = synthesize(bank, SynthConfig(**base, kernel_inside="reverted"), 1, 0)
    c = synthesize(bank, SynthConfig(**base, kernel_scale=2.0), 1, 0)
    for s in (b, c):
        _check_mask(s, SynthConfig(**base))
        assert not np.array_equal(a.instances, s.instances)


def test_collisions_are_judged_on_visible_pixels(bank) -> None:
    # cells cut by the border may overlap each other off the canvas (rebuilt from the cell table:
    # every cell is its own augmentation), never where they show
    cfg = SynthConfig(width=40, height=40, cells_mean=30, cell_size=18, placement="uniform", colors=4, max_unplaced=0.95)
    row_of = {int(e): k for k, e in enumerate(bank.exemplar_id)}
    off_overlap = 0
    for i in range(80):
        s = synthesize(bank, cfg, 2, i)
        _check_mask(s, cfg, some_touch=False)  # uniform placement keeps cells apart: no pair may touch
        P = 40
        count = np.zeros((cfg.height + 2 * P, cfg.width + 2 * P), np.int32)
        c = s.cells
        for j in range(s.n_cells):
            cell = bank.augment(row_of[int(c["exemplar"][j])], float(c["angle"][j]), float(c["scale"][j]), bool(c["flip_h"][j]), bool(c["flip_v"][j]))
            x0, y0 = int(c["cx"][j]) - cell.ax + P, int(c["cy"][j]) - cell.ay + P
            h, w = cell.mask.shape
            count[y0 : y0 + h, x0 : x0 + w] += cell.mask
        assert (count[P:-P, P:-P] <= 1).all()
        off_overlap += int((count > 1).sum())
    assert off_overlap > 0


def test_no_free_colour_resamples_the_place(bank) -> None:
    # two colours on a dense canvas: some places leave no colour free and are drawn again
    cfg = SynthConfig(width=256, height=192, cells_mean=100, cells_std=0, cell_size=20, colors=2, n_init=10, max_unplaced=0.3)
    masks = [synthesize(bank, cfg, 1, i) for i in range(4)]
    assert sum(s.n_color_rejections for s in masks) > 0
    for s in masks:
        _check_mask(s, cfg)


def test_dense_masks_are_valid_and_prefilter_is_exact(bank) -> None:
    # near the jamming density: many rejected tries; the shortcut rejections change nothing
    for placement in ("adhesive", "uniform"):
        cfg = SynthConfig(width=256, height=192, cells_mean=115, cells_std=0, cell_size=20, placement=placement, colors=4, n_init=10, max_unplaced=0.2)
        for i in range(3):
            s = synthesize(bank, cfg, 11, i)
            _check_mask(s, cfg)
            slow = synthesize(bank, cfg, 11, i, _prefilter=False)
            assert _digest(s) == _digest(slow) and s.n_tries == slow.n_tries


def test_cell_counts_follow_the_requested_distribution(bank) -> None:
    cfg = SynthConfig(width=200, height=160, cells_mean=14, cells_std=4, cell_size=14, n_init=5)
    n = np.array([synthesize(bank, cfg, 5, i).n_requested for i in range(400)])
    assert abs(n.mean() - 14) < 0.6 and abs(n.std() - 4) < 0.6
    placed = [synthesize(bank, cfg, 5, i) for i in range(20)]
    assert all(s.n_unplaced == 0 and s.n_cells == s.n_requested for s in placed)
    fixed = SynthConfig(width=200, height=160, cells_mean=17, cells_std=0, cell_size=14)
    assert {synthesize(bank, fixed, 5, i).n_cells for i in range(10)} == {17}


def test_cells_have_the_configured_size(bank) -> None:
    for size in (14.0, 28.0):
        cfg = SynthConfig(width=400, height=300, cells_mean=30, cells_std=0, cell_size=size, scale_min=1.0, scale_max=1.0)
        s = synthesize(bank, cfg, 0, 0)
        whole = (s.cells["x0"] > 0) & (s.cells["y0"] > 0) & (s.cells["x1"] < 400) & (s.cells["y1"] < 300)
        w = s.cells["x1"] - s.cells["x0"]
        h = s.cells["y1"] - s.cells["y0"]
        # rotation grows bounding boxes of elongated cells a little; the mean stays near the target
        assert size * 0.9 < np.mean((w + h)[whole] / 2) < size * 1.25


def test_same_seed_and_index_give_same_bytes_in_another_process(bank, bank_path) -> None:
    cfg = SynthConfig(width=240, height=180, cells_mean=40, cells_std=5, cell_size=18)
    here = [_digest(synthesize(bank, cfg, 42, i)) for i in (0, 7, 3)]
    assert here == [_digest(synthesize(bank, cfg, 42, i)) for i in (0, 7, 3)]
    assert len(set(here)) == 3 and _digest(synthesize(bank, cfg, 43, 0)) != here[0]
    code = f"""
import hashlib, sys, numpy as np
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_synth_engine import _digest
from rbcray.synth.config import SynthConfig
from rbcray.synth.engine import synthesize
from rbcray.synth.shapes import ShapeBank
bank = ShapeBank.load({str(bank_path)!r})
cfg = SynthConfig.from_dict({cfg.to_dict()!r})
print(" ".join(_digest(synthesize(bank, cfg, 42, i)) for i in (3, 0, 7)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [here[2], here[0], here[1]]


def test_adhesive_masks_cluster_more_than_uniform_ones(bank) -> None:
    ce = {}
    for placement in ("adhesive", "uniform"):
        cfg = SynthConfig(width=480, height=360, cells_mean=70, cells_std=0, cell_size=16, placement=placement, n_init=10)
        vals = []
        for i in range(12):
            vals.append(image_spatial(synthesize(bank, cfg, 9, i).instances)["clark_evans"])
        ce[placement] = float(np.mean(vals))
    assert ce["adhesive"] < ce["uniform"] - 0.05, ce


def test_resolve_config_scales_counts_with_canvas_area() -> None:
    stats = {"synthesis": {"cells_mean": 60.0, "cells_std": 10.0, "cell_size": 40.0, "width": 640, "height": 480}}
    same = resolve_config(stats)
    assert (same.width, same.height, same.cells_mean, same.cells_std, same.cell_size) == (640, 480, 60.0, 10.0, 40.0)
    big = resolve_config(stats, width=1280, height=960, placement="uniform")
    assert big.cells_mean == pytest.approx(240.0) and big.cells_std == pytest.approx(40.0) and big.placement == "uniform"
    given = resolve_config(stats, width=1280, height=960, cells_mean=100, cell_size=30)
    assert given.cells_mean == 100 and given.cell_size == 30
    with pytest.raises(ConfigError, match="synthesis"):
        resolve_config({"table1": {}})
    with pytest.raises(ConfigError, match="cells-mean"):
        resolve_config(None, cell_size=20)


def test_bad_inputs_end_with_clear_errors(bank, bank_path, tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not fit the 100x80 canvas"):
        SynthConfig(width=100, height=80, cell_size=90)
    with pytest.raises(ConfigError, match="colors"):
        SynthConfig(colors=1)
    with pytest.raises(DataError, match="holds no cells"):
        ShapeBank([], np.zeros(0), np.zeros(0), {}, "empty.parquet")
    with pytest.raises(DataError, match="no cells of categories"):
        synthesize(bank, SynthConfig(width=100, height=80, cells_mean=3, cell_size=10, categories=(2,)), 0, 0)
    with pytest.raises(DataError, match="not found"):
        ShapeBank.load(tmp_path / "missing.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="not a readable Parquet"):
        ShapeBank.load(tmp_path / "junk.parquet")
    # a density that cannot be placed stops after a bounded number of tries, saying what to change
    t0 = time.perf_counter()
    impossible = SynthConfig(width=120, height=100, cells_mean=400, cell_size=16)
    with pytest.raises(DataError, match="density cannot be placed: lower --cells-mean"):
        synthesize(bank, impossible, 0, 0)
    assert time.perf_counter() - t0 < 30


def test_empty_shape_bank_file_is_an_error(tmp_path) -> None:
    # every cell cut by the border: nothing to keep
    import numpy as np

    from rbcray.data.dataset import DatasetWriter

    with DatasetWriter(tmp_path / "ds", name="cut", kind="test") as w:
        inst = np.zeros((40, 40), np.uint16)
        inst[0:10, 0:10] = 1
        w.add("a", inst)
    with pytest.raises(DataError, match="shape bank would be empty"):
        build_shape_bank(tmp_path / "ds", tmp_path / "s.parquet")
    assert not (tmp_path / "s.parquet").exists()


def test_bank_keeps_whole_isolated_regular_cells_and_reports_each_rule(tmp_path) -> None:
    import cv2
    import pyarrow.parquet as pq

    from rbcray.data.dataset import DatasetWriter
    from rbcray.synth.shapes import ShapeBank, solidity

    inst = np.zeros((120, 160), np.uint16)
    cv2.circle(inst, (20, 20), 10, 1, -1)  # 1: a disc: kept
    cv2.circle(inst, (60, 20), 10, 2, -1)  # 2: a disc: kept
    inst[40:70, 40:45] = 3  # 3: an L: solidity ~0.35 -> irregular
    inst[65:70, 45:70] = 3
    cv2.circle(inst, (100, 20), 10, 4, -1)  # 4, 5: a touching pair -> touching (both)
    cv2.circle(inst, (119, 20), 9, 5, -1)
    inst[40:44, 90:130] = 6  # 6: a thin bar: convex but perimeter^2 / area ~ 46 -> elongated
    inst[0:12, 140:152] = 7  # 7: cut by the border -> border
    inst[97:103, 17:23] = 8  # 8: a fragment (36 px, far below 0.4x the median) -> size
    cv2.circle(inst, (60, 100), 10, 9, -1)  # 9: a disc: kept
    assert solidity(inst == 1) > 0.9 and solidity(inst == 3) < 0.5 and solidity(inst == 6) > 0.9
    with DatasetWriter(tmp_path / "ds", name="t", kind="test") as w:
        w.add("a", inst)
    meta = build_shape_bank(tmp_path / "ds", tmp_path / "s.parquet")
    assert pq.read_table(tmp_path / "s.parquet").column("instance_id").to_pylist() == [1, 2, 9]
    f = meta["filter"]
    assert f["dropped"] == {"border": 1, "small": 0, "touching": 2, "irregular": 1, "elongated": 1, "size": 1}
    assert (f["seen"], f["kept"]) == (9, 3)
    assert ShapeBank.load(tmp_path / "s.parquet").meta["filter"]["dropped"]["touching"] == 2
    build_shape_bank(tmp_path / "ds", tmp_path / "all.parquet", min_solidity=0, isolated=False, max_roundness=float("inf"), size_range=None)
    assert pq.read_table(tmp_path / "all.parquet").column("instance_id").to_pylist() == [1, 2, 3, 4, 5, 6, 8, 9]


def test_augmented_cells_are_consistent(bank) -> None:
    import cv2

    rng = np.random.default_rng(0)
    for _ in range(300):
        k = int(rng.integers(len(bank)))
        cell = bank.augment(k, float(rng.uniform(0, 360)), float(rng.uniform(0.5, 2.0)), bool(rng.integers(2)), bool(rng.integers(2)))
        m = cell.mask
        assert m.any() and m[0].any() and m[-1].any() and m[:, 0].any() and m[:, -1].any()  # tight box
        padded = cv2.copyMakeBorder(m, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        assert np.array_equal(cell.dil, cv2.dilate(padded, np.ones((3, 3), np.uint8)))
        px, py = bank.probes_of(cell)
        assert len(px) > 0 and (m[py + cell.ay, px + cell.ax] == 1).all()  # probes are cell pixels
    # area scales with scale^2, flips and rotations keep it (up to resampling)
    base = cv2.countNonZero(bank.augment(0, 0.0, 1.0, False, False).mask)
    assert abs(cv2.countNonZero(bank.augment(0, 37.0, 2.0, True, True).mask) / base - 4.0) < 0.3


def test_grid_turns_are_exact(bank) -> None:
    from rbcray.synth.shapes import turn, turn_offsets

    cell = bank.augment(3, 31.0, 1.3, True, False)
    ref = lambda a, d: (a.T if d & 1 else a)[:, ::-1 if d & 2 else 1][:: -1 if d & 4 else 1]  # noqa: E731
    px, py = bank.probes_of(cell)
    for d in range(8):
        t = turn(cell, d)
        assert np.array_equal(t.mask, ref(cell.mask, d)) and np.array_equal(t.dil, ref(cell.dil, d))
        marker = np.zeros_like(cell.mask)
        marker[cell.ay, cell.ax] = 1
        assert ref(marker, d)[t.ay, t.ax] == 1  # the centroid pixel goes where the anchor says
        qx, qy = turn_offsets(px, py, d)
        assert (t.mask[qy + t.ay, qx + t.ax] == 1).all()
        rx, ry = bank.probes_of(t)  # the composed linear map gives the same probes
        assert sorted(zip(rx.tolist(), ry.tolist())) == sorted(zip(qx.tolist(), qy.tolist()))
        assert t.area == cell.area and t.centre_in == cell.centre_in


def test_threads_do_not_share_canvases(bank) -> None:
    import threading

    from rbcray.synth.engine import _workspace

    got = {}

    def grab(name: str) -> None:
        got[name] = _workspace(50, 60, 10, 5, np.uint8)[0]

    threads = [threading.Thread(target=grab, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got["a"] is not got["b"] and not np.shares_memory(got["a"], got["b"])
    assert _workspace(50, 60, 10, 5, np.uint8)[0] is _workspace(50, 60, 10, 5, np.uint8)[0]  # reused within a thread
    cfg = SynthConfig(width=200, height=160, cells_mean=40, cells_std=0, cell_size=16)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as ex:
        assert list(ex.map(lambda i: _digest(synthesize(bank, cfg, 4, i)), range(6))) == [_digest(synthesize(bank, cfg, 4, i)) for i in range(6)]
