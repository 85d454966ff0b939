"""Instance-mask formats round-trip exactly, and bad masks fail with clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rbcray.data import formats as F
from rbcray.data.dataset import Dataset, DatasetWriter
from rbcray.errors import DataError
from rbcray.io import encode_png, write_png


def touching_cells(seed: int = 0, h: int = 120, w: int = 160, n: int = 40) -> np.ndarray:
    """Voronoi cells clipped to discs: many cells touch, some stand alone, some hit the border."""
    rng = np.random.default_rng(seed)
    cy, cx = rng.uniform(0, h, n), rng.uniform(0, w, n)
    yy, xx = np.mgrid[0:h, 0:w]
    d = (yy[..., None] - cy) ** 2 + (xx[..., None] - cx) ** 2
    nearest = d.argmin(-1)
    inst = np.where(d.min(-1) < 11**2, nearest + 1, 0)
    return F.relabel_sequential(inst)


def test_adjacency_and_coloring_are_proper() -> None:
    inst = touching_cells()
    pairs = F.adjacency_pairs(inst)
    assert len(pairs) > 10
    colors = F.color_instances(inst)
    assert (colors[pairs[:, 0]] != colors[pairs[:, 1]]).all()
    assert colors[1:].max() < len(F.PALETTE)


def test_color_mask_round_trip(tmp_path) -> None:
    inst = touching_cells(1)
    rgb = F.encode_color_mask(inst)
    assert set(map(tuple, rgb.reshape(-1, 3))) <= set(map(tuple, F.PALETTE)) | {(0, 0, 0)}
    F.write_color_mask(tmp_path / "m.png", inst)
    back = F.read_color_mask(tmp_path / "m.png", image_shape=inst.shape)
    assert np.array_equal(back, F.relabel_sequential(inst))


def test_label_png_round_trip(tmp_path) -> None:
    inst = touching_cells(2).astype(np.uint16)
    inst[inst == 3] = 60000  # a large id survives
    F.write_instances(tmp_path / "i.png", inst)
    back = F.read_instances(tmp_path / "i.png")
    assert back.dtype == np.uint16 and np.array_equal(back, inst)


def test_coco_rle_round_trip() -> None:
    inst = touching_cells(3)
    cats = {i: (2 if i % 5 == 0 else 1) for i in range(1, int(inst.max()) + 1)}
    anns = F.instances_to_coco(inst, image_id=7, first_ann_id=100, category_of=cats)
    doc = json.loads(json.dumps(F.coco_document([{"id": 7, "width": 160, "height": 120, "file_name": "x"}], anns)))
    back, back_cats = F.coco_to_instances(doc["annotations"], 120, 160)
    assert np.array_equal(back, inst) and back_cats == cats
    assert [a["id"] for a in anns] == list(range(100, 100 + len(anns)))
    a = anns[0]
    ys, xs = np.nonzero(inst == a["instance_id"])
    assert a["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert a["area"] == len(xs)
    assert any(x["border"] for x in anns) and not all(x["border"] for x in anns)


def test_coco_polygons_are_accepted() -> None:
    ann = {"id": 1, "category_id": 1, "segmentation": [[10, 10, 30, 10, 30, 20, 10, 20]]}
    inst, cats = F.coco_to_instances([ann], 40, 50)
    assert inst.max() == 1 and 150 <= (inst == 1).sum() <= 250 and cats == {1: 1}


def test_dataset_folder_round_trip(tmp_path) -> None:
    inst = touching_cells(4)
    img = np.random.default_rng(0).integers(0, 255, (*inst.shape, 3), dtype=np.uint8)
    with DatasetWriter(tmp_path / "ds", name="t", kind="test") as w:
        w.add("s1", inst, image=img)
    ds = Dataset.open(tmp_path / "ds")
    assert ds.stems == ["s1"] and np.array_equal(ds.load_image("s1"), img)
    assert np.array_equal(ds.load_instances("s1"), inst)
    assert F.read_color_mask(tmp_path / "ds/masks/s1.png").max() == inst.max()
    coco = json.loads((tmp_path / "ds/coco.json").read_text())
    assert len(coco["annotations"]) == int(inst.max())
    assert set(ds.load_categories("s1").values()) == {1}


def test_failed_writer_leaves_nothing(tmp_path) -> None:
    with pytest.raises(DataError, match="share the name|appears twice"):
        with DatasetWriter(tmp_path / "ds", name="t", kind="test") as w:
            w.add("a", touching_cells())
            w.add("a", touching_cells())
    assert not (tmp_path / "ds").exists()
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- bad input
def test_size_mismatch_with_image(tmp_path) -> None:
    F.write_instances(tmp_path / "i.png", touching_cells())
    with pytest.raises(DataError, match=r"i\.png: mask size 160x120 does not match image size 100x80"):
        F.read_instances(tmp_path / "i.png", image_shape=(80, 100, 3))
    with pytest.raises(DataError, match="does not match image size"):
        with DatasetWriter(tmp_path / "ds", name="t", kind="test") as w:
            w.add("a", touching_cells(), image=np.zeros((10, 10, 3), np.uint8))


def test_color_not_in_palette(tmp_path) -> None:
    rgb = F.encode_color_mask(touching_cells())
    rgb[5, 7] = (1, 2, 3)
    write_png(tmp_path / "m.png", rgb)
    with pytest.raises(DataError, match=r"m\.png: colour \(1, 2, 3\) at pixel \(x=7, y=5\) is not in the palette"):
        F.read_color_mask(tmp_path / "m.png")


def test_touching_cells_with_one_colour() -> None:
    inst = np.zeros((10, 10), np.uint16)
    inst[2:5, 2:5] = 1
    inst[5:8, 5:8] = 2  # diagonal contact
    with pytest.raises(DataError, match="touching cells 1 and 2 share colour"):
        F.encode_color_mask(inst, colors=np.array([-1, 3, 3]))


def test_more_cells_than_the_format_holds() -> None:
    big = np.arange(70000, dtype=np.int64).reshape(280, 250) + 1
    with pytest.raises(DataError, match="does not fit a uint16 label map"):
        F.check_instances(big, "big.png")
    with pytest.raises(DataError, match="do not fit a uint16 label map"):
        F.relabel_sequential(big)
    tri = np.zeros((6, 6), np.uint16)
    tri[0:3, 0:3], tri[0:3, 3:6], tri[3:6, 0:6] = 1, 2, 3  # three mutually touching cells
    with pytest.raises(DataError, match="all 2 palette colours"):
        F.color_instances(tri, num_colors=2, name="tri")


def test_unreadable_files(tmp_path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"bad\.png: not a readable image"):
        F.read_instances(tmp_path / "bad.png")
    with pytest.raises(DataError, match=r"missing\.png: file not found"):
        F.read_color_mask(tmp_path / "missing.png")
    (tmp_path / "rgb.png").write_bytes(encode_png(np.zeros((4, 4, 3), np.uint8)))
    with pytest.raises(DataError, match="single-channel"):
        F.read_instances(tmp_path / "rgb.png")
    with pytest.raises(DataError, match="not a dataset folder"):
        Dataset.open(tmp_path)
