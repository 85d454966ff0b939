"""White cells and platelets in synthetic masks (rbcray.synth.others, issue 14 item 7).

Off by default and then byte-identical; their draws have their own streams; counts follow the
configured per-image rates; categories survive masks -> dataset folder and masks -> shards -> COCO.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from synth_data import make_dataset

from rbcray.data.formats import adjacency_pairs
from rbcray.errors import ConfigError, DataError
from rbcray.synth.config import SynthConfig, resolve_config
from rbcray.synth.engine import synthesize
from rbcray.synth.others import draw_count, from_stats, parse_spec, scaled
from rbcray.synth.shapes import ShapeBank, build_shape_bank

RATES = ((2, 0.6, 1.0), (3, 2.0, math.sqrt(2.0)))  # WBC overdispersed (Gamma-Poisson), platelets Poisson


def _category(c: int) -> int:
    return 2 if c % 7 == 0 else (3 if c % 5 == 0 else 1)


@pytest.fixture(scope="module")
def bank_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("others")
    make_dataset(d / "ds", n_images=6, n=16, category_of=_category)
    build_shape_bank(d / "ds", d / "bank.parquet", size_range=None)
    return d / "bank.parquet"


@pytest.fixture(scope="module")
def bank(bank_path):
    return ShapeBank.load(bank_path)


def _cfg(**kw) -> SynthConfig:
    return SynthConfig(width=200, height=150, cells_mean=20, cells_std=4, cell_size=16, **kw)


def _bytes(s) -> list[bytes]:
    return [s.instances.tobytes(), s.colors.tobytes(), s.color_mask().tobytes()] + [s.cells[k].tobytes() for k in sorted(s.cells)]


def test_off_is_the_paper_mask_and_on_is_deterministic(bank) -> None:
    # zero rates take the new code path (placement order, per-category streams) and draw nothing:
    # the masks are the RBC-only ones, byte for byte
    zero = ((2, 0.0, 0.0), (3, 0.0, 0.0))
    for kw in ({}, {"contact_prob": 0.5, "contact_overlap": 0.1}, {"shapes_per_mask": 3}):
        for i in range(4):
            assert _bytes(synthesize(bank, _cfg(other_cells=zero, **kw), 5, i)) == _bytes(synthesize(bank, _cfg(**kw), 5, i))
    a, b = synthesize(bank, _cfg(other_cells=RATES), 5, 1), synthesize(bank, _cfg(other_cells=RATES), 5, 1)
    assert _bytes(a) == _bytes(b)
    assert _cfg().to_dict()["other_cells"] == [] and SynthConfig.from_dict(_cfg(other_cells=RATES).to_dict()) == _cfg(other_cells=RATES)


def test_other_cells_have_their_own_streams(bank) -> None:
    on, off = _cfg(other_cells=RATES), _cfg()
    wbc_only = _cfg(other_cells=RATES[:1])
    cols = ("exemplar", "angle", "scale", "flip_h", "flip_v")
    seen = 0
    for i in range(12):
        s_on, s_off, s_w = (synthesize(bank, c, 9, i) for c in (on, off, wbc_only))
        assert s_on.n_unplaced == s_off.n_unplaced == 0
        c = s_on.cells["category"]
        seen += int((c > 1).sum())
        # placed first: instance ids 1..k are the white cells, then the platelets, then the red cells
        assert np.all(np.diff(np.where(c == 1, 4, c)) >= 0)
        red, rows = c == 1, s_on.cells
        for k in cols:  # the red cells drew the same shapes as without them (placement differs)
            np.testing.assert_array_equal(rows[k][red], s_off.cells[k])
            np.testing.assert_array_equal(rows[k][c == 2], s_w.cells[k][s_w.cells["category"] == 2])  # platelets change no WBC draw
    assert seen > 12


def test_masks_with_other_cells_are_valid(bank) -> None:
    for kw in ({}, {"contact_prob": 0.6, "contact_overlap": 0.15}, {"placement": "uniform"}):
        cfg = _cfg(other_cells=((2, 2.0, 1.5), (3, 3.0, 2.0)), **kw)
        for i in range(6):
            s = synthesize(bank, cfg, 2, i)
            ids = np.unique(s.instances)
            assert ids[0] == 0 and ids[1:].tolist() == s.cells["id"].tolist()
            assert all(s.colors[a] != s.colors[b] for a, b in adjacency_pairs(s.instances))
            assert set(s.categories.values()) <= {1, 2, 3} and s.n_requested == s.n_cells + s.n_unplaced


def test_count_law_matches_mean_and_variance() -> None:
    rng = np.random.default_rng(0)
    for m, sd in ((0.4, 0.9), (2.5, math.sqrt(2.5)), (1.2, 0.5), (1.05, 0.225), (2.0, 0.0)):
        k = np.array([draw_count(rng, m, sd) for _ in range(20000)])
        # 20000 draws: the mean's standard error is sd / 141 < 0.007; 0.05 is > 7 of them
        assert abs(k.mean() - m) < 0.05
        f = m - math.floor(m)
        want_var = max(sd * sd, f * (1 - f))  # no integer law of mean m varies less than f (1 - f)
        assert abs(k.var() - want_var) < 0.12 * want_var + 1e-9, (m, sd, k.var())
    assert draw_count(rng, 0.0, 1.0) == 0


def test_masks_hold_the_configured_rates(bank) -> None:
    cfg = _cfg(other_cells=RATES)
    n = 300
    counts = np.zeros((n, 2))
    for i in range(n):
        c = synthesize(bank, cfg, 11, i).cells["category"]
        counts[i] = (c == 2).sum(), (c == 3).sum()
    for j, (_, m, sd) in enumerate(RATES):
        se = sd / math.sqrt(n)  # seeded, so the run is fixed; 5 standard errors leave room for any seed
        assert abs(counts[:, j].mean() - m) < 5 * se, (j, counts[:, j].mean(), m)
    assert counts[:, 0].var() > counts[:, 1].var() / 2  # the overdispersed WBC law is not Poisson(0.6)


def test_spec_parsing_scaling_and_errors(bank, bank_path, tmp_path) -> None:
    assert parse_spec("2:0.3:0.6,3:2") == ((2, 0.3, 0.6), (3, 2.0, math.sqrt(2.0))) and parse_spec("off") == ()
    for bad, msg in (("2:x", "expected"), ("1:0.5", "must be one of"), ("2:1,2:1", "twice"), ("3:-1", "in \\[0, 1000\\]")):
        with pytest.raises(ConfigError, match=msg):
            parse_spec(bad)
    with pytest.raises(ConfigError, match="other_cells"):
        SynthConfig.from_dict({"other_cells": [[2, 0.5]]})
    # area scaling: mean x r; Poisson part of the variance x r, field part x r^2
    m, s = scaled(0.5, 1.0, 4.0)
    assert m == 2.0 and math.isclose(s * s, 2.0 + 16 * 0.5)
    stats = {"synthesis": {"cells_mean": 30.0, "cells_std": 5.0, "cell_size": 16.0, "width": 100, "height": 75,
                           "other_cells": {"2": {"mean": 0.5, "std": 1.0}, "3": {"mean": 0.0, "std": 0.0}}}}
    cfg = resolve_config(stats, width=200, height=150, other_cells="stats")
    assert cfg.other_cells == ((2, 2.0, math.sqrt(10.0)),) and cfg.cells_mean == 120.0
    assert resolve_config(stats, other_cells="3:1.5").other_cells == ((3, 1.5, math.sqrt(1.5)),)
    assert resolve_config(stats).other_cells == ()
    with pytest.raises(ConfigError, match="no synthesis.other_cells"):
        from_stats({"synthesis": {}}, 1.0)
    with pytest.raises(ConfigError, match="needs --stats"):
        resolve_config(None, cells_mean=3, cell_size=10, other_cells="stats")
    from rbcray.config import from_dict
    from rbcray.generate.config import GenerateConfig

    gen = {"checkpoint": "c", "shapes": "s", "stats": "t", "out": "o", "num_samples": 1}
    with pytest.raises(ConfigError, match="expected 'stats'"):
        from_dict(GenerateConfig, {**gen, "other_cells": "2:x"})
    assert from_dict(GenerateConfig, {**gen, "other_cells": "stats"}).synth_overrides()["other_cells"] == "stats"
    # a bank without the category: a clear error before any mask
    from rbcray.synth.others import check_bank

    red_only = tmp_path / "red.parquet"
    make_dataset(tmp_path / "red", n_images=2, n=8)
    build_shape_bank(tmp_path / "red", red_only, size_range=None)
    with pytest.raises(DataError, match="no cells of category 2 \\(WBC"):
        check_bank(ShapeBank.load(red_only), _cfg(other_cells=RATES))
    check_bank(bank, _cfg(other_cells=RATES))


def test_masks_cli_records_categories_and_stats_count_them(bank_path, tmp_path) -> None:
    from rbcray.cli import main
    from rbcray.data.dataset import Dataset
    from rbcray.data.stats import dataset_stats, to_markdown

    real = make_dataset(tmp_path / "real", n_images=5, n=16, category_of=_category)
    st = dataset_stats(Dataset.open(real), with_color=False)
    per = []
    ds = Dataset.open(real)
    for stem in ds.stems:
        cats = ds.load_categories(stem)
        per.append([sum(1 for v in cats.values() if v == c) for c in (2, 3)])
    per = np.array(per)
    oc = st["synthesis"]["other_cells"]
    assert oc["2"]["mean"] == pytest.approx(per[:, 0].mean()) and oc["3"]["std"] == pytest.approx(per[:, 1].std())
    assert oc["2"]["share_with_any"] == pytest.approx((per[:, 0] > 0).mean()) and sum(oc["3"]["histogram"]) == 5
    assert "White cells and platelets per image" in to_markdown(st)
    stats_path = tmp_path / "stats.json"
    stats_path.write_text(json.dumps(st))
    out = tmp_path / "masks"
    assert main(["masks", "--shapes", str(bank_path), "--stats", str(stats_path), "--num", "6", "--out", str(out),
                 "--other-cells", "stats"]) == 0
    syn = Dataset.open(out)
    cfg = json.loads((out / "dataset.json").read_text())["config"]["synth"]
    assert [c for c, _, _ in cfg["other_cells"]] == [c for c in (2, 3) if oc[str(c)]["mean"] > 0]
    cats = [syn.load_categories(s) for s in syn.stems]
    assert any(2 in c.values() or 3 in c.values() for c in cats)
    coco = json.loads((out / "coco.json").read_text())
    assert {a["category_id"] for a in coco["annotations"]} == set().union(*(set(c.values()) for c in cats))


def test_preset_generators_know_the_four_classes() -> None:
    from rbcray.cli.train_cmds import resolve_config as train_config

    for spec, model in (("demo", "pix2pixhd"), ("paper", "pix2pixhd"), ("demo", "unet-wgangp"), ("paper", "unet-wgangp")):
        assert train_config(spec, model).model.num_classes >= 4  # background, RBC, WBC, platelet


def test_categories_survive_shards_and_coco(inputs, bank_path, tmp_path) -> None:
    """masks with white cells and platelets -> a tiny pix2pixHD -> shards and COCO, classes intact."""
    import pandas as pd
    from pycocotools.coco import COCO

    from rbcray.cli import main
    from rbcray.io import decode_png

    out = tmp_path / "out"
    assert main(["generate", "--checkpoint", inputs["checkpoint"], "--shapes", str(bank_path), "--stats", inputs["stats"],
                 "--num-samples", "4", "--out", str(out), "--width", "128", "--height", "96", "--cells-mean", "6",
                 "--cells-std", "0", "--cell-size", "20", "--other-cells", "2:1.5,3:2.5", "--shard-size", "2",
                 "--local", "--coco", "--no-progress"]) == 0
    df = pd.read_parquet(out).sort_values("sample_id")
    classes = set()
    for _, row in df.iterrows():
        inst = decode_png(row["instance_mask"]["bytes"])
        boxes = {int(b["instance_id"]): int(b["class"]) for b in row["boxes"]}
        assert sorted(boxes) == [int(v) for v in np.unique(inst) if v]
        classes |= set(boxes.values())
    assert classes == {1, 2, 3}
    for frag in sorted((out / "_coco").glob("part-*.json")):
        coco = COCO(str(frag))
        assert {c["id"] for c in coco.loadCats(coco.getCatIds())} >= {1, 2, 3}
        for img in coco.loadImgs(coco.getImgIds()):
            row = df[df.sample_id == img["id"] - 1].iloc[0]
            got = sorted((a["id"] % 65536, a["category_id"]) for a in coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]])))
            assert got == sorted((int(b["instance_id"]), int(b["class"])) for b in row["boxes"])


def test_bank_keeps_white_cells_among_red_ones_and_platelets(tmp_path) -> None:
    import cv2
    import pyarrow.parquet as pq

    from rbcray.data.dataset import DatasetWriter

    inst = np.zeros((120, 160), np.uint16)
    for k, x in enumerate((20, 60, 100), start=1):
        cv2.circle(inst, (x, 20), 10, k, -1)  # 1-3: isolated red cells: kept
    cv2.circle(inst, (40, 80), 14, 4, -1)  # 4: a white cell touching red cell 5: kept (5 is dropped)
    cv2.circle(inst, (65, 80), 10, 5, -1)
    cv2.circle(inst, (120, 80), 6, 6, -1)  # 6: a platelet, a third of a red cell: kept (size is per category)
    inst[100:104, 10:14] = 7  # 7: a red fragment: size
    with DatasetWriter(tmp_path / "ds", name="t", kind="test") as w:
        w.add("a", inst, categories={4: 2, 6: 3})
    meta = build_shape_bank(tmp_path / "ds", tmp_path / "s.parquet")
    t = pq.read_table(tmp_path / "s.parquet")
    assert list(zip(t.column("instance_id").to_pylist(), t.column("category").to_pylist())) == [(1, 1), (2, 1), (3, 1), (4, 2), (6, 3)]
    assert meta["filter"]["dropped"]["touching"] == 1 and meta["filter"]["dropped"]["size"] == 1
