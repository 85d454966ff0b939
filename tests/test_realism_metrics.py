"""Realism metrics without downloaded weights, on constructed cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rbcray.evaluate.c2st import C2STParams, auc, c2st, c2st_crops, cell_centred_crops, median_cell_diameter
from rbcray.evaluate.data import Sample
from rbcray.evaluate.encoder import EncoderConfig, RealEncoder, targets
from rbcray.evaluate.frechet import frechet, frechet_distance
from rbcray.evaluate.kid import kid, mmd2_cubic
from rbcray.evaluate.mask_fidelity import mask_fidelity, predicted_instances, sample_quality
from rbcray.evaluate.prdc import prdc, prdc_with_ci

torch.set_num_threads(1)


def gauss(n: int, d: int, shift: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)) + shift


def test_kid_same_distribution_near_zero_and_shift_large() -> None:
    a, b, c = gauss(300, 16, 0, 1), gauss(300, 16, 0, 2), gauss(300, 16, 1.0, 3)
    same, shifted = kid(a, b, n_subsets=20, subset_size=100), kid(a, c, n_subsets=20, subset_size=100)
    assert abs(same["kid"]) < 3 * same["std"] + 1e-3  # consistent with 0
    assert shifted["kid"] > 20 * max(same["std"], 1e-4) and shifted["subset_size"] == 100
    assert abs(mmd2_cubic(a, a)) < 0.05 * mmd2_cubic(a, c)
    assert kid(a[:3], b)["kid"] is None


def test_frechet_matches_closed_form() -> None:
    a, b = gauss(2000, 4, 0, 1), gauss(2000, 4, 0, 2)
    assert frechet_distance(a, b) < 0.05
    # shifted by 2 in every coordinate: ||mu||^2 = 4 * 4 = 16, covariances equal
    assert frechet_distance(a, b + 2) == pytest.approx(16, rel=0.05)
    r = frechet(a[:300], b[:300] + 2, n_boot=30)
    assert r["ci"][0] < r["fd"] < r["ci"][1] + 1e-9 and 12 < r["fd"] < 20


def test_prdc_identical_and_disjoint() -> None:
    a = gauss(200, 8, 0, 1)
    same = prdc(a, a.copy(), k=5)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0 and same["density"] >= 1.0
    far = prdc(a, gauss(200, 8, 50, 2), k=5)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    ci = prdc_with_ci(a, gauss(200, 8, 0, 3), k=5, n_boot=20)
    assert 0.5 < ci["precision"] <= 1 and ci["coverage_ci"][0] <= ci["coverage"] + 0.1


def test_auc_rank_formula() -> None:
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert auc(np.array([0, 0, 1, 1]), np.array([0.4, 0.3, 0.2, 0.1])) == 0.0
    assert auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5


def _crop_sets(tint: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """12 images x 16 noisy 16x16 crops per side; side b tinted red by ``tint``."""
    rng = np.random.default_rng(seed)
    a = rng.normal(128, 30, (192, 16, 16, 3))
    b = rng.normal(128, 30, (192, 16, 16, 3))
    b[..., 0] += tint
    g = np.repeat(np.arange(12), 16)
    return np.clip(a, 0, 255).astype(np.uint8), g, np.clip(b, 0, 255).astype(np.uint8), g


def test_c2st_identical_near_half_disjoint_near_one() -> None:
    p = C2STParams(epochs=4, width=8, n_boot=200, n_perm=200)
    same = c2st_crops(*_crop_sets(0, 1), p)
    assert same["ci"][0] < 0.5 < same["ci"][1] and abs(same["auc"] - 0.5) < 0.15 and same["p_value"] > 0.05
    diff = c2st_crops(*_crop_sets(60, 2), p)
    assert diff["auc"] > 0.95 and diff["p_value"] < 0.01 and diff["n_images"] == [12, 12]


def disc_sample(seed: int, size: int = 96, shift: int = 0) -> Sample:
    """Dark discs (cells, radius 9) on a bright noisy background, with their instance map;
    ``shift`` moves the *mask* away from the drawn cells (a generator that ignores its mask)."""
    rng = np.random.default_rng(seed)
    img = rng.normal(220, 8, (size, size, 3))
    inst = np.zeros((size, size), np.uint16)
    yy, xx = np.mgrid[:size, :size]
    k = 0
    for cy in range(14, size - 10, 24):
        for cx in range(14, size - 10, 24):
            cy2, cx2 = cy + int(rng.integers(-3, 4)), cx + int(rng.integers(-3, 4))
            disc = (yy - cy2) ** 2 + (xx - cx2) ** 2 <= 81
            img[disc] = rng.normal([150, 90, 110], 8, (int(disc.sum()), 3))
            k += 1
            inst[np.roll(disc, shift, axis=1)] = k
    return Sample(f"s{seed}", "synthetic", np.clip(img, 0, 255).astype(np.uint8), inst)


def test_cell_centred_crops_are_centred_and_large_enough() -> None:
    s = disc_sample(0)
    d = median_cell_diameter([s])
    assert 17 < d < 20
    crops, groups = cell_centred_crops([s, s], 32, max_per_image=5, rng=np.random.default_rng(0))
    assert crops.shape == (10, 32, 32, 3) and list(groups) == [0] * 5 + [1] * 5
    assert (crops[:, 16, 16, 1] < 140).all()  # the centre pixel is inside a (green-poor) cell
    out = c2st([disc_sample(i) for i in range(4)], [disc_sample(10 + i) for i in range(4)],
               C2STParams(epochs=1, width=4, n_boot=20, n_perm=20))
    assert out["crop"] >= 1.5 * out["cell_diameter"] and out["crop"] % 8 == 0
    with pytest.raises(Exception, match="crop_factor must be >= 1.5"):
        C2STParams(crop_factor=1.0)


def test_encoder_segments_and_mask_fidelity_separates_matching_masks(tmp_path) -> None:
    t = targets(disc_sample(0).instances)
    assert set(np.unique(t)) == {0, 1, 2}
    enc = RealEncoder.train([disc_sample(i) for i in range(6)], EncoderConfig(width=8, crop=48, steps=150, batch=4),
                            provenance={"dataset": "constructed", "stems": ["s0"]})
    enc.save(str(tmp_path / "enc.pt"))
    enc = RealEncoder.load(str(tmp_path / "enc.pt"))
    assert enc.provenance["dataset"] == "constructed"
    good = mask_fidelity(enc, [disc_sample(20 + i) for i in range(4)], n_boot=50)
    bad = mask_fidelity(enc, [disc_sample(20 + i, shift=12) for i in range(4)], n_boot=50)
    assert good["dice"] > 0.9 and good["ap50"] > 0.8 and good["dice_ci"][0] <= good["dice"] <= good["dice_ci"][1]
    assert bad["dice"] < 0.6 and bad["ap50"] < 0.5
    s = disc_sample(30)
    assert sample_quality(enc, s.image, s.instances) > 0.9
    boxes, scores = predicted_instances(enc.segment(s.image))
    assert len(boxes) == s.instances.max() and (scores > 0.5).all()
    f = enc.features(np.stack([s.image[:48, :48], s.image[48:, 48:]]))
    assert f.shape == (2, 11 * 8) and np.isfinite(f).all()


def test_side_by_side_report_shape_and_order() -> None:
    """A 'family' whose images ignore their masks and are tinted scores worse than real vs real on
    every axis; the report has the demo's shape and renders as a table."""
    from rbcray.evaluate.families import CompareParams, markdown_table, side_by_side

    enc = RealEncoder.train([disc_sample(i) for i in range(6)], EncoderConfig(width=8, crop=48, steps=150, batch=4))
    ref = [disc_sample(40 + i) for i in range(6)]
    other = [disc_sample(50 + i) for i in range(6)]
    bad = []
    for i in range(6):
        s = disc_sample(60 + i, shift=12)
        img = s.image.astype(int)
        img[..., 2] = np.clip(img[..., 2] + 80, 0, 255)
        bad.append(Sample(s.name, "synthetic", img.astype(np.uint8), s.instances))
    p = CompareParams(c2st=C2STParams(epochs=5, width=8, n_boot=50, n_perm=50), kid_subsets=10, n_boot=30)
    r = side_by_side(enc, ref, other, {"bad": bad}, p)
    assert set(r) == {"real_vs_real", "bad", "_setup"}
    rr, b = r["real_vs_real"], r["bad"]
    assert b["c2st"]["auc"] > 0.9 > rr["c2st"]["auc"]
    assert b["kid"]["kid"] > rr["kid"]["kid"] + 3 * rr["kid"]["std"] and b["frechet"]["fd"] > rr["frechet"]["ci"][1]
    assert b["mask_fidelity"]["dice"] < rr["mask_fidelity"]["dice"] - 0.3
    assert rr["prdc"]["coverage"] > b["prdc"]["coverage"]
    table = markdown_table(r)
    assert table.count("\n") == 3 and "| real_vs_real |" in table and "| bad |" in table
