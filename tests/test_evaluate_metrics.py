"""Evaluation maths against hand-computed cases: Dice, COCO AP, bootstrap, DCAN cells, regimes,
augmentation (no data files, no Ray)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from rbcray.data.formats import instance_boxes
from rbcray.errors import ConfigError, DataError
from rbcray.evaluate.augment import AugmentConfig, Augmenter
from rbcray.evaluate.metrics import (
    ap_from_records,
    bootstrap_indices,
    coco_ap50,
    coco_match_records,
    dice,
    paired_bootstrap,
)
from rbcray.evaluate.postprocess import DCANPostConfig, contour_targets, dcan_cells
from rbcray.evaluate.regimes import REGIMES, regime_counts, regime_items, split_real, synthetic_needed


# ----------------------------------------------------------------------------- Dice
def test_dice_hand_cases():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :3] = True  # 3 pixels
    b[0, 1:] = True  # 3 pixels, 2 shared
    assert dice(a, b) == pytest.approx(2 * 2 / 6)
    assert dice(a, a) == 1.0
    assert dice(a, ~a) == 0.0
    assert dice(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0  # both empty: perfect


# ----------------------------------------------------------------------------- AP
GT = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)]
DET = [np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 31]], float)]
SCORES = [np.array([0.9, 0.8, 0.7])]


def test_ap_hand_computed():
    # ranked: TP (p=1, r=.5), FP, TP (p=2/3, r=1); COCO's 101-point interpolated precision is 1 at
    # recalls 0..0.50 (51 points) and 2/3 at 0.51..1.00 (50 points)
    assert coco_ap50(GT, DET, SCORES) == pytest.approx((51 + 50 * 2 / 3) / 101)
    # a box overlapping at IoU < 0.5 is a miss: AP of one TP among two cells, ranked first
    det = [np.array([[0, 0, 10, 10], [25, 25, 35, 35]], float)]
    assert coco_ap50(GT, det, [np.array([0.9, 0.8])]) == pytest.approx(51 / 101)
    assert coco_ap50(GT, [np.zeros((0, 4))], [np.zeros(0)]) == 0.0


def test_ap_matches_cocoeval_summarize():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    gts, dets, scores = [], [], []
    for _ in range(5):
        xy = rng.uniform(0, 200, (12, 2))
        g = np.concatenate([xy, xy + rng.uniform(15, 30, (12, 2))], 1)
        d = g[:9] + rng.normal(0, 3, (9, 4))
        d = np.concatenate([d, rng.uniform(0, 200, (4, 2)).repeat(2, 1) + [0, 0, 20, 20]])
        gts.append(g)
        dets.append(d)
        scores.append(rng.uniform(0, 1, len(d)))
    ours = coco_ap50(gts, dets, scores)
    # reference: the plain COCOeval pipeline, AP at IoU .50 = stats[1]
    images = [{"id": i + 1} for i in range(5)]
    anns = [{"id": k + 1, "image_id": i + 1, "category_id": 1, "bbox": [*b[:2], *(b[2:] - b[:2])],
             "area": float(np.prod(b[2:] - b[:2])), "iscrowd": 0}
            for k, (i, b) in enumerate((i, b) for i, g in enumerate(gts) for b in g)]
    res = [{"image_id": i + 1, "category_id": 1, "bbox": [*b[:2], *(b[2:] - b[:2])], "score": float(s)}
           for i, (d, sc) in enumerate(zip(dets, scores)) for b, s in zip(d, sc)]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "c"}]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(res), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ours == pytest.approx(ev.stats[1], abs=1e-9)


def test_ap_records_resample_equals_duplicated_images():
    recs = coco_match_records(GT * 2 + [np.zeros((0, 4))], [DET[0], DET[0][:1], DET[0][1:2]],
                              [SCORES[0], np.array([0.5]), np.array([0.95])])
    idx = [0, 0, 2, 1]
    direct = coco_ap50([GT[0], GT[0], np.zeros((0, 4)), GT[0]], [DET[0], DET[0], DET[0][1:2], DET[0][:1]],
                       [SCORES[0], SCORES[0], np.array([0.95]), np.array([0.5])])
    assert ap_from_records(recs, idx) == pytest.approx(direct)


def test_paired_bootstrap_interval_and_pairing():
    rng = np.random.default_rng(1)
    recs_a = [{"dice": float(v)} for v in rng.uniform(0.6, 0.9, 40)]
    recs_b = [{"dice": r["dice"] + 0.05} for r in recs_a]  # B beats A by 0.05 on every image
    img = bootstrap_indices(40, 300, np.random.default_rng(2))
    seeds = bootstrap_indices(1, 300, np.random.default_rng(3))
    ma, lo, hi, ra = paired_bootstrap("dice", [recs_a], img, seeds)
    mb, _, _, rb = paired_bootstrap("dice", [recs_b], img, seeds)
    assert lo < ma < hi and hi - lo < 0.1
    assert mb - ma == pytest.approx(0.05)
    # paired: every replicate sees the same images, so the difference has no spread at all
    assert np.allclose(rb - ra, 0.05)


# ----------------------------------------------------------------------------- DCAN
def test_dcan_cells_on_hand_made_prediction():
    inst = np.zeros((20, 30), np.uint16)
    inst[2:8, 2:8] = 1
    inst[2:8, 8:14] = 2  # touches cell 1: only the contour separates them
    inst[12:18, 20:26] = 3
    obj = np.where(inst > 0, 0.9, 0.1)
    obj[12:18, 20:26] = 0.7
    con = contour_targets(inst).astype(float) * 0.8
    out, boxes, scores = dcan_cells(obj, con, DCANPostConfig(min_area=2, grow=1))
    order = np.argsort(boxes[:, 0])
    assert len(boxes) == 3
    assert boxes[order].tolist() == [[2, 2, 8, 8], [8, 2, 14, 8], [20, 12, 26, 18]]
    assert np.sort(scores) == pytest.approx([0.7, 0.9, 0.9])
    assert coco_ap50([instance_boxes(inst)[1]], [boxes], [scores]) == pytest.approx(1.0)
    # without the contour head the two touching cells merge into one detection
    _, merged, _ = dcan_cells(obj, np.zeros_like(con), DCANPostConfig(min_area=2))
    assert len(merged) == 2
    # specks smaller than min_area are dropped
    _, none, _ = dcan_cells(obj, con, DCANPostConfig(min_area=100))
    assert len(none) == 0


# ----------------------------------------------------------------------------- regimes
def test_regime_counts_paper_scale():
    c = {r: regime_counts(r, 60, 960) for r in REGIMES}
    assert (c["RD"].real, c["RD"].synthetic, c["RD"].augmented) == (60, 0, 0)
    assert (c["SD"].real, c["SD"].synthetic, c["SD"].augmented) == (0, 60, 0)
    assert (c["RD+aug"].real, c["RD+aug"].augmented, c["RD+aug"].total) == (60, 900, 960)
    assert (c["RD+SD"].real, c["RD+SD"].synthetic, c["RD+SD"].total) == (60, 900, 960)
    assert (c["RD+SD+aug"].real, c["RD+SD+aug"].synthetic, c["RD+SD+aug"].augmented) == (60, 450, 450)
    assert synthetic_needed(REGIMES, 60, 960) == 900
    items = regime_items("RD+SD+aug", 60, 960)
    assert len(items) == 960
    assert {i.index for i in items if i.origin == "real"} == set(range(60))
    assert max(i.index for i in items if i.origin == "synthetic") == 449
    assert all(i.origin == "real" for i in items if i.augment)
    with pytest.raises(ConfigError, match="unknown regime"):
        regime_counts("RD+GAN", 60, 960)


def test_split_real_is_fixed_and_disjoint():
    test, train = split_real(100, 20, 60, split_seed=3)
    assert len(test) == 20 and len(train) == 60 and not set(test) & set(train)
    assert split_real(100, 20, 60, split_seed=3) == (test, train)
    test2, train2 = split_real(50, 5, 10, 0, test_pool=tuple(range(40, 50)))
    assert set(test2) <= set(range(40, 50)) and not set(train2) & set(range(40, 50))
    with pytest.raises(DataError, match="holds only 100"):
        split_real(100, 50, 60, 0)


# ----------------------------------------------------------------------------- augmentation
def test_augment_moves_masks_and_boxes_with_the_image():
    img = np.zeros((40, 50, 3), np.uint8)
    img[5:15, 3:20] = 200
    inst = np.zeros((40, 50), np.uint16)
    inst[5:15, 3:20] = 1
    boxes = instance_boxes(inst)[1].astype(np.float32)
    aug = Augmenter(AugmentConfig(p_flip=1.0, p_op=0.0))
    out_img, out_inst, out_boxes = aug(img, inst, boxes, np.random.default_rng(0))
    assert np.array_equal(out_inst, inst[::-1, ::-1])  # both flips, always
    assert np.array_equal(out_boxes, instance_boxes(out_inst)[1].astype(np.float32))
    assert np.array_equal(out_img, img[::-1, ::-1])
    # every photometric op on: the image changes, the mask does not, and the seed fixes the result
    full = Augmenter(AugmentConfig(p_flip=0.0, p_op=1.0))
    a = full(img, inst, None, np.random.default_rng([5, 1]))
    b = full(img, inst, None, np.random.default_rng([5, 1]))
    c = full(img, inst, None, np.random.default_rng([5, 2]))
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[0], c[0])
    assert np.array_equal(a[1], inst) and a[0].dtype == np.uint8 and a[0].shape == img.shape


def test_bootstrap_over_seeds():
    a = [{"dice": 0.6}, {"dice": 0.8}]
    b = [{"dice": 0.7}, {"dice": 0.9}]
    img = bootstrap_indices(2, 400, np.random.default_rng(0))
    seeds = bootstrap_indices(2, 400, np.random.default_rng(1))
    mean, lo, hi, reps = paired_bootstrap("dice", [a, b], img, seeds)
    assert mean == pytest.approx(0.75)  # mean over seeds of the whole-test-set metric
    # extremes: both seeds drawn as seed 0 with image 0 twice (0.6) ... seed 1, image 1 (0.9)
    assert reps.min() >= 0.6 - 1e-9 and reps.max() <= 0.9 + 1e-9 and lo < mean < hi
    assert len(set(np.round(reps, 6))) > 3  # seeds and images both vary across replicates
