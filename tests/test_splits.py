"""Splits by image and the provenance overlap check."""

from __future__ import annotations

import json

import pytest

from rbcray.data.provenance import check_no_overlap, overlaps, provenance_record
from rbcray.data.splits import Splits, load_splits, make_splits, save_splits, select
from rbcray.errors import ConfigError, DataError

STEMS = [str(i) for i in range(1, 41)]


def test_every_image_in_exactly_one_role_and_seeded():
    a = make_splits(STEMS, dataset="d", val=0.2, test=0.3, seed=3)
    b = make_splits(list(reversed(STEMS)), dataset="d", val=0.2, test=0.3, seed=3)
    c = make_splits(STEMS, dataset="d", val=0.2, test=0.3, seed=4)
    assert a == b and a.roles != c.roles
    flat = [s for r in ("train", "val", "test") for s in a.stems(r)]
    assert sorted(flat) == sorted(STEMS)
    assert (len(a.stems("train")), len(a.stems("val")), len(a.stems("test"))) == (20, 8, 12)


def test_source_split_kept_unless_reshuffled():
    given = {s: ("test" if int(s) <= 5 else "val" if int(s) <= 9 else "train") for s in STEMS}
    sp = make_splits(STEMS, dataset="d", given=given)
    assert sp.method == "source" and set(sp.stems("test")) == {"1", "2", "3", "4", "5"}
    assert make_splits(STEMS, dataset="d", given=given, reshuffle=True).method == "seeded"


def test_round_trip_and_bad_files(tmp_path):
    sp = make_splits(STEMS, dataset="d", seed=1)
    p = save_splits(sp, tmp_path / "s.json")
    assert load_splits(p) == sp and load_splits(p).sha256() == sp.sha256()
    with pytest.raises(DataError, match="not found"):
        load_splits(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(DataError, match="bad.json"):
        load_splits(tmp_path / "bad.json")
    with pytest.raises(DataError, match="both train and test"):
        Splits(dataset="d", roles={"train": ("1",), "test": ("1",)})
    with pytest.raises(ConfigError):
        make_splits(STEMS, dataset="d", val=0.5, test=0.5)


def test_select_and_overlap():
    sp = make_splits(STEMS, dataset="d", seed=0)
    assert select(STEMS, None, None) == STEMS
    assert set(select(STEMS, sp, "train")) == set(sp.stems("train"))
    with pytest.raises(DataError, match="not in it"):
        select(STEMS[:5], sp, "train")
    clean = {"generator": provenance_record("d", sp.stems("train"), splits=sp, role="train")}
    check_no_overlap(clean, sp)
    leaked = {"inputs": {"shapes": provenance_record("d", [*sp.stems("train"), sp.stems("test")[0]])}, **clean}
    assert overlaps(leaked, sp) == [("inputs.shapes", "test", [sp.stems("test")[0]])]
    with pytest.raises(DataError, match=f"inputs.shapes was built from test image\\(s\\) {sp.stems('test')[0]}"):
        check_no_overlap(leaked, sp)
    other = {"g": provenance_record("other-dataset", sp.stems("test"))}
    check_no_overlap(other, sp)  # stems of another dataset are not comparable


def test_split_cli(tmp_path, capsys):
    import numpy as np

    from rbcray.cli import main
    from rbcray.data.dataset import DatasetWriter

    inst = np.zeros((16, 16), np.uint16)
    inst[2:6, 2:6] = 1
    with DatasetWriter(tmp_path / "ds", name="toy", kind="annotated") as w:
        for s in STEMS[:10]:
            w.add(s, inst)
    assert main(["split", str(tmp_path / "ds"), "--out", str(tmp_path / "s.json"), "--seed", "2"]) == 0
    sp = load_splits(tmp_path / "s.json")
    assert sp.dataset == "toy" and sum(len(v) for v in sp.roles.values()) == 10
    assert main(["split", str(tmp_path / "ds"), "--out", str(tmp_path / "t.json"), "--val", "0.9"]) == 2
    assert "leaves no training images" in capsys.readouterr().err
