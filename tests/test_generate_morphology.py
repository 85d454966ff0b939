"""``rbcray generate --morphology``: rare red-cell classes by UNIT translation in generated smears.

Tiny untrained UNIT models and classifier (tests/morph_fixtures.py) drive the plumbing: which cells
are chosen, the pseudo-label filter (t = 0 keeps all, t = 1 keeps none and leaves every image
byte-identical to a run without --morphology), labels in boxes / COCO / manifest, determinism
across actor counts and micro-batch sizes. Nothing here measures morphology quality.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from morph_fixtures import make_classifier, make_unit

from rbcray.cli import main
from rbcray.errors import ConfigError
from rbcray.generate.morphology import choose_cells, parse_shares
from rbcray.generate.verify import verify_output
from rbcray.io import decode_png

N = 4
MORPH = "schistocyte:0.3,teardrop:0.2"


def _args(inputs: dict[str, str], out, *extra: str) -> list[str]:
    return ["generate", "--checkpoint", inputs["checkpoint"], "--shapes", inputs["shapes"], "--stats", inputs["stats"],
            "--num-samples", str(N), "--out", str(out), "--width", "160", "--height", "128", "--shard-size", "2",
            "--no-progress", *extra]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("morph models")
    return {"units": ",".join([make_unit(d / "u9", 9), make_unit(d / "u7", 7, seed=1)]), "clf": make_classifier(d / "clf")}


def _morph(models: dict[str, str], t: str | None = "0") -> list[str]:
    extra = ["--morphology", MORPH, "--morphology-model", models["units"], "--morphology-classifier", models["clf"]]
    return extra + (["--morphology-threshold", t] if t is not None else [])


@pytest.fixture(scope="module")
def runs(inputs, models, tmp_path_factory) -> dict[str, object]:
    """Local runs: without --morphology, with t = 0 (everything kept) and with t = 1 (nothing kept)."""
    d = tmp_path_factory.mktemp("morph runs")
    assert main(_args(inputs, d / "plain", "--local")) == 0
    assert main(_args(inputs, d / "all", "--local", "--coco", *_morph(models, "0"))) == 0
    assert main(_args(inputs, d / "none", "--local", *_morph(models, "1"))) == 0
    return {k: d / k for k in ("plain", "all", "none")}


def _rows(out) -> list[dict]:
    return sorted(pq.read_table(out).to_pylist(), key=lambda r: r["sample_id"])


def _manifest(out) -> dict:
    return json.loads((out / "_manifest.json").read_text())


def test_parse_shares() -> None:
    assert parse_shares(MORPH) == ((7, 0.2), (9, 0.3)) == parse_shares("teardrop:0.2, 9:0.3")
    for text, says in (("blob:0.1", "unknown class 'blob'"), ("normal:0.1", "cannot be a target"),
                       ("teardrop:1.5", "share 1.5 of teardrop must be within [0, 1]"), ("teardrop:-0.1", "within [0, 1]"),
                       ("teardrop:0.6,schistocyte:0.5", "sum to 1.1, more than 1"), ("teardrop", "use CLASS:SHARE"),
                       ("teardrop:x", "share 'x' of teardrop is not a number"), ("7:0.1,teardrop:0.1", "given twice")):
        with pytest.raises(ConfigError, match=says.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
            parse_shares(text)


def test_choose_cells_is_a_pure_function_of_the_sample() -> None:
    boxes = [{"x0": 5 + 10 * k, "y0": 5, "x1": 12 + 10 * k, "y1": 12, "instance_id": k + 1, "class": 1} for k in range(20)]
    boxes += [{"x0": 0, "y0": 30, "x1": 8, "y1": 38, "instance_id": 21, "class": 1},  # cut by the border
              {"x0": 50, "y0": 30, "x1": 60, "y1": 40, "instance_id": 22, "class": 2}]  # a WBC
    shares = ((7, 0.2), (9, 0.35))
    a = choose_cells(boxes, 300, 100, shares, 3, 17)
    assert a == choose_cells(boxes, 300, 100, shares, 3, 17)
    assert a != choose_cells(boxes, 300, 100, shares, 3, 18)
    chosen = a[7] + a[9]
    assert len(set(chosen)) == len(chosen) and not {21, 22} & set(chosen)
    assert len(a[7]) == 4 and len(a[9]) == 7  # 0.2 * 20 and 0.35 * 20 are whole: no rounding draw matters
    # stochastic rounding keeps the expected share: 0.03 of 20 cells is 0.6 cells per smear
    mean = np.mean([len(choose_cells(boxes, 300, 100, ((7, 0.03),), 0, i)[7]) for i in range(400)])
    assert 0.5 < mean < 0.7


def test_all_kept_labels_reach_boxes_coco_and_manifest(runs, tmp_path) -> None:
    from pycocotools.coco import COCO

    from rbcray.data.morphology import coco_from_subcategories, coco_with_subcategories
    from rbcray.generate.verify import check_shard

    out = runs["all"]
    assert verify_output(str(out))["problems"] == []
    assert all(check_shard(str(out), e) == [] for e in _manifest(out)["shards"])  # what verify --deep runs per shard
    rows = _rows(out)
    m = _manifest(out)["morphology"]
    tried = {7: 0, 9: 0}
    for r in rows:
        cells = {c["instance_id"]: c for c in r["morphology_cells"]}
        assert all(c["accepted"] and 0 <= c["p"] <= 1 for c in cells.values())
        tried[7] += sum(c["class"] == 7 for c in cells.values())
        tried[9] += sum(c["class"] == 9 for c in cells.values())
        for b in r["boxes"]:
            want = cells[b["instance_id"]]["class"] if b["instance_id"] in cells else -1
            assert b["morphology"] == (want if b["class"] == 1 else None)
    assert tried[9] > 0 and tried[7] > 0
    for name, c in (("teardrop", 7), ("schistocyte", 9)):
        assert m["classes"][name]["requested"] == m["classes"][name]["accepted"] == tried[c]
        assert m["classes"][name]["acceptance_rate"] == 1.0
    assert m["threshold"] == 0.0
    # COCO: the attribute on every RBC, the class names, and the one-category-per-class view
    frag = sorted((out / "_coco").glob("part-*.json"))[0]
    doc = json.loads(frag.read_text())
    assert doc["morphology_classes"][9] == "schistocyte"
    anns = [a for a in doc["annotations"] if a["image_id"] == 1]
    assert [a.get("morphology") for a in anns] == [b["morphology"] for b in rows[0]["boxes"]]
    assert coco_from_subcategories(coco_with_subcategories(doc)) == doc
    COCO(str(frag))  # still plain COCO
    merged = tmp_path / "merged.json"
    assert main(["export-coco", str(out), "--out", str(merged)]) == 0
    assert json.loads(merged.read_text())["morphology_classes"] == doc["morphology_classes"]


def test_translated_cells_change_only_their_windows(runs) -> None:
    for p, a in zip(_rows(runs["plain"]), _rows(runs["all"])):
        assert p["instance_mask"] == a["instance_mask"]  # the host shape is kept
        ip, ia = decode_png(p["image"]["bytes"]), decode_png(a["image"]["bytes"])
        inst = decode_png(a["instance_mask"]["bytes"])
        near = np.zeros(inst.shape, bool)
        for c in a["morphology_cells"]:
            ys, xs = np.nonzero(inst == c["instance_id"])
            cy, cx = int(round(ys.mean())), int(round(xs.mean()))
            near[max(cy - 41, 0) : cy + 42, max(cx - 41, 0) : cx + 42] = True  # the 80 px blending window
        assert np.array_equal(ip[~near], ia[~near])
        if a["morphology_cells"]:
            assert not np.array_equal(ip[near], ia[near])


def test_step_is_a_function_of_the_host_image(runs, models) -> None:
    """The step applied on its own to a run's plain images gives that run's --morphology images,
    byte for byte: nothing in it depends on shards, actors or micro-batches."""
    from rbcray.generate.morphology import make_step
    from rbcray.generate.pngenc import encode_png_fast

    units = dict(zip((9, 7), models["units"].split(",")))
    step = make_step({"shares": [(7, 0.2), (9, 0.3)], "models": units, "classifier": models["clf"], "threshold": 0.0,
                      "n": 2.0, "seed": 0})
    for p, a in zip(_rows(runs["plain"]), _rows(runs["all"])):
        img, boxes, cells = step.apply(p["sample_id"], decode_png(p["image"]["bytes"]), decode_png(p["instance_mask"]["bytes"]), p["boxes"])
        assert encode_png_fast(img) == a["image"]["bytes"]
        assert boxes == a["boxes"] and [(c["instance_id"], c["class"]) for c in cells] == [
            (c["instance_id"], c["class"]) for c in a["morphology_cells"]]


def test_rejected_cells_leave_the_host_unchanged(runs) -> None:
    plain, none = _rows(runs["plain"]), _rows(runs["none"])
    m = _manifest(runs["none"])["morphology"]
    assert all(v["accepted"] == 0 and v["requested"] > 0 and v["acceptance_rate"] == 0.0 and v["p_max"] < 1
               for v in m["classes"].values())
    for p, n in zip(plain, none):
        assert p["image"] == n["image"]  # byte for byte
        assert all(b["morphology"] == -1 for b in n["boxes"] if b["class"] == 1)
        assert all(not c["accepted"] for c in n["morphology_cells"])
        assert p["morphology_cells"] is None and all(b["morphology"] is None for b in p["boxes"])


@pytest.mark.slow
def test_same_bytes_for_any_actor_count_and_batch_size(inputs, models, runs, tmp_path, ray_session) -> None:
    out = tmp_path / "ray"
    assert main(_args(inputs, out, "--coco", "--mask-actors", "2", "--gen-actors", "1:2", *_morph(models, "0"))) == 0
    ref = {p.name: p.read_bytes() for p in runs["all"].glob("train-*.parquet")}
    assert {p.name: p.read_bytes() for p in out.glob("train-*.parquet")} == ref
    # another micro-batch size: the same cells chosen, scored and labelled. (The generator's own
    # pixels may differ in float rounding with the micro-batch, which is why it is part of the plan;
    # the morphology step adds no such dependence: test_step_is_a_function_of_the_host_image.)
    b1 = tmp_path / "b1"
    assert main(_args(inputs, b1, "--local", "--batch-size", "1", *_morph(models, "0"))) == 0
    cols = ["sample_id", "instance_mask", "boxes", "morphology_cells"]
    assert pq.read_table(b1, columns=cols).sort_by("sample_id").equals(pq.read_table(runs["all"], columns=cols).sort_by("sample_id"))
