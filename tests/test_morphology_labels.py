"""Red-cell morphology labels: points onto derived instances, and every format they pass through."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rbcray.data import formats as F
from rbcray.data import morphology as M
from rbcray.data.dataset import Dataset, DatasetWriter
from rbcray.data.stats import dataset_stats, to_markdown
from rbcray.errors import DataError


def four_cells() -> np.ndarray:
    """Four separate square cells: ids 1..4 in raster order."""
    inst = np.zeros((40, 60), np.uint16)
    inst[2:12, 2:12] = 1
    inst[2:12, 30:40] = 2
    inst[20:30, 2:12] = 3
    inst[20:30, 30:40] = 4
    return inst


def test_one_point_labels_two_points_do_not() -> None:
    inst = four_cells()
    cats = {1: 1, 2: 1, 3: 1, 4: 2}  # cell 4 is a WBC
    pts = np.array(
        [
            [5, 5, 9],  # cell 1: schistocyte
            [33, 5, 4],  # cell 2: two points -> unlabelled
            [35, 8, 4],
            [35, 25, 0],  # on the WBC: labels nothing
            [50, 35, 7],  # background
            [200, 5, 1],  # off the image
        ]
    )
    morph, rep = M.assign_morphology(inst, cats, pts)
    assert morph == {1: 9, 2: M.UNLABELLED, 3: M.UNLABELLED}  # no entry for the WBC
    assert rep == {"used": 1, "background": 1, "off_image": 1, "non_rbc": 1, "shared": 2}
    counts = M.counts_by_name(morph)
    assert counts["schistocyte"] == 1 and counts["unlabelled"] == 2 and sum(counts.values()) == 3
    assert list(counts)[:13] == list(M.CLASSES)


def test_no_points_and_bad_points() -> None:
    inst = four_cells()
    morph, rep = M.assign_morphology(inst, None, None)
    assert morph == {i: M.UNLABELLED for i in (1, 2, 3, 4)} and rep["used"] == 0
    with pytest.raises(DataError, match="class 13"):
        M.assign_morphology(inst, None, np.array([[5, 5, 13]]))
    with pytest.raises(DataError, match=r"\(N, 3\)"):
        M.assign_morphology(inst, None, np.array([[5, 5]]))


def test_class_names_and_ids() -> None:
    assert len(M.CLASSES) == 13 and M.CLASSES[4] == "target" and M.CLASSES[9] == "schistocyte"
    assert M.class_id("Teardrop") == 7 and M.class_id("12") == 12 and M.class_id("unlabelled") == -1
    assert M.class_name(-1) == "unlabelled" and M.class_name(0) == "normal"
    with pytest.raises(DataError, match="morphology class 'blob'"):
        M.class_id("blob")
    with pytest.raises(DataError, match="morphology class 13"):
        M.class_name(13)


def test_coco_round_trip_keeps_classes() -> None:
    inst = four_cells()
    cats = {1: 1, 2: 1, 3: 1, 4: 3}
    morph = {1: 9, 2: -1, 3: 7}
    anns = F.instances_to_coco(inst, 1, 1, cats, morph)
    assert "morphology" not in anns[3]  # the platelet carries none
    doc = json.loads(json.dumps(F.coco_document([{"id": 1, "width": 60, "height": 40, "file_name": "x"}], anns)))
    assert doc["morphology_classes"] == list(M.CLASSES)
    back, back_cats = F.coco_to_instances(doc["annotations"], 40, 60)
    assert np.array_equal(back, inst) and back_cats == cats
    assert M.morphology_from_coco(doc["annotations"]) == morph
    # without labels: no attribute, no class list (older readers see the same document as before)
    plain = F.coco_document([], F.instances_to_coco(inst, 1, 1, cats))
    assert "morphology_classes" not in plain and all("morphology" not in a for a in plain["annotations"])


def test_coco_subcategory_scheme_round_trip() -> None:
    inst = four_cells()
    cats = {1: 1, 2: 1, 3: 2, 4: 3}
    anns = F.instances_to_coco(inst, 1, 1, cats, {1: 4, 2: -1})
    doc = F.coco_document([{"id": 1, "width": 60, "height": 40, "file_name": "x"}], anns)
    sub = json.loads(json.dumps(M.coco_with_subcategories(doc)))
    by_id = {c["id"]: c["name"] for c in sub["categories"]}
    got = [by_id[a["category_id"]] for a in sub["annotations"]]
    assert got == ["RBC:target", "RBC:unlabelled", "WBC", "Platelet"]
    assert M.coco_from_subcategories(sub) == json.loads(json.dumps(doc))
    with pytest.raises(DataError, match="rbcray_categories"):
        M.coco_from_subcategories(doc)


def write_labelled(out: Path) -> Path:
    inst = four_cells()
    with DatasetWriter(out, name="t", kind="annotated") as w:
        w.add("a", inst, categories={4: 2}, morphology={1: 4, 2: 4, 3: -1})
        w.add("b", inst, morphology={1: 0, 2: 9, 3: -1, 4: -1})
        w.add("c", inst)  # a sample without labels
    return out


def test_dataset_folder_round_trip_and_stats(tmp_path: Path) -> None:
    root = write_labelled(tmp_path / "ds")
    ds = Dataset.open(root)
    assert ds.record("a")["morphology_counts"]["target"] == 2
    assert "morphology_counts" not in ds.record("c")
    per = M.load_dataset_morphology(root)
    assert per == {"a": {1: 4, 2: 4, 3: -1}, "b": {1: 0, 2: 9, 3: -1, 4: -1}}
    assert ds.load_categories("a") == {1: 1, 2: 1, 3: 1, 4: 2}
    st = dataset_stats(ds, with_color=False)
    m = st["morphology"]
    assert (m["target"], m["normal"], m["schistocyte"], m["unlabelled"]) == (2, 1, 1, 3)
    assert "| target | 2 |" in to_markdown(st)
    assert M.dataset_counts(root, ["b"])["target"] == 0


def test_unlabelled_dataset_has_no_morphology(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path / "ds", name="t", kind="annotated") as w:
        w.add("a", four_cells())
    st = dataset_stats(Dataset.open(tmp_path / "ds"), with_color=False)
    assert st["morphology"] is None and "morphology" not in to_markdown(st)


def test_bad_morphology_value_names_the_file(tmp_path: Path) -> None:
    root = write_labelled(tmp_path / "ds")
    coco = json.loads((root / "coco.json").read_text())
    coco["annotations"][0]["morphology"] = 42
    (root / "coco.json").write_text(json.dumps(coco))
    with pytest.raises(DataError, match=r"coco.json: morphology class 42"):
        M.load_dataset_morphology(root)


def test_annotate_carries_chula_points(chula_root: Path, tmp_path: Path) -> None:
    from rbcray.data.annotate import annotate_source, config_for_source
    from rbcray.data.sources import open_source

    src = open_source("chula-rbc-12")
    out = annotate_source(src, tmp_path / "a", config_for_source(src.name), limit=2)
    ds = Dataset.open(out)
    per = M.load_dataset_morphology(out)
    for rec in ds:
        rep = rec["morphology_points"]
        pts = next(s for s in src.images if s.stem == rec["stem"]).points
        assert sum(rep.values()) == len(pts)
        labelled = sum(v != M.UNLABELLED for v in per[rec["stem"]].values())
        assert labelled == rep["used"] > 0.8 * len(pts)
        assert sum(rec["morphology_counts"].values()) == sum(1 for c in ds.load_categories(rec["stem"]).values() if c == 1)


def test_shape_bank_rows_join_to_their_class(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from rbcray.synth.shapes import build_shape_bank

    root = write_labelled(tmp_path / "ds")
    build_shape_bank(root, tmp_path / "bank.parquet", min_solidity=0)
    t = pq.read_table(tmp_path / "bank.parquet", columns=["stem", "instance_id"]).to_pydict()
    cls = M.exemplar_morphology(root, t["stem"], t["instance_id"])
    got = {(s, int(i)): int(c) for s, i, c in zip(t["stem"], t["instance_id"], cls)}
    assert got[("a", 1)] == 4 and got[("b", 2)] == 9 and got[("a", 4)] == -1 and got[("c", 1)] == -1
    with pytest.raises(DataError, match="2 stems but 1"):
        M.exemplar_morphology(root, ["a", "b"], [1])


def test_shape_bank_class_column_round_trips(tmp_path: Path) -> None:
    """The bank stores each cell's class; it reads back equal to the dataset's (join) and to the
    loaded bank's ``morphology``; a bank of an unlabelled dataset has none (nulls, ``None``)."""
    import pyarrow.parquet as pq

    from rbcray.synth.shapes import ShapeBank, build_shape_bank

    root = write_labelled(tmp_path / "ds")
    meta = build_shape_bank(root, tmp_path / "bank.parquet", min_solidity=0, isolated=False, size_range=None)
    t = pq.read_table(tmp_path / "bank.parquet").to_pydict()
    joined = M.exemplar_morphology(root, t["stem"], t["instance_id"]).tolist()
    assert t["morphology"] == [j if c == M.RBC else None for j, c in zip(joined, t["category"])]
    assert None in t["morphology"]  # the dataset's WBC / platelet: no class
    assert {4, 9, -1} <= set(t["morphology"])
    assert sum(meta["per_morphology"].values()) == sum(v is not None for v in t["morphology"]) and meta["per_morphology"]["schistocyte"] >= 1
    bank = ShapeBank.load(tmp_path / "bank.parquet")
    assert bank.morphology is not None and bank.morphology.tolist() == [-2 if v is None else v for v in t["morphology"]]

    from synth_data import make_dataset

    plain = make_dataset(tmp_path / "plain", n_images=1)
    build_shape_bank(plain, tmp_path / "plain.parquet", min_solidity=0)
    p = pq.read_table(tmp_path / "plain.parquet").to_pydict()
    assert set(p["morphology"]) == {None} and ShapeBank.load(tmp_path / "plain.parquet").morphology is None
