"""Independent random streams: one per (run seed, sample, purpose), each a pure function of them."""

from __future__ import annotations

import numpy as np
import pytest
from synth_data import make_dataset

from rbcray.models.pix2pixhd.styles import StyleBank
from rbcray.rng import MASK, MORPHOLOGY, NOISE, PURPOSES, QUALITY, STYLE, purpose_rng, sample_rng
from rbcray.synth.config import SynthConfig
from rbcray.synth.engine import synthesize
from rbcray.synth.shapes import ShapeBank, build_shape_bank

N = 2000


def first_draws(seed: int, purpose: int, k: int = 1) -> np.ndarray:
    return np.array([sample_rng(seed, i, purpose).random(k) for i in range(N)])


def test_purposes_are_uncorrelated_and_differ_from_the_shared_stream() -> None:
    draws = {p: first_draws(7, p, 3) for p in PURPOSES.values()}
    for a in PURPOSES.values():
        for b in PURPOSES.values():
            if a < b:
                for j in range(3):
                    r = np.corrcoef(draws[a][:, j], draws[b][:, j])[0, 1]
                    assert abs(r) < 0.1, (a, b, j, r)
    # the neighbour's stream too: mask of sample i vs style of sample i + 1
    r = np.corrcoef(draws[MASK][1:, 0], draws[STYLE][:-1, 0])[0, 1]
    assert abs(r) < 0.1
    # what the streams replace: default_rng([S, i]) and default_rng((S, i)) are one stream (r = 1)
    old_a = np.array([np.random.default_rng([7, i]).random() for i in range(200)])
    old_b = np.array([np.random.default_rng((7, i)).random() for i in range(200)])
    assert np.array_equal(old_a, old_b)


def test_streams_are_pure_functions_of_seed_index_purpose() -> None:
    a = sample_rng(3, 11, NOISE).random(5)
    assert np.array_equal(a, sample_rng(3, 11, NOISE).random(5))
    assert np.array_equal(a, purpose_rng((3, 11), NOISE).random(5))
    for other in (sample_rng(4, 11, NOISE), sample_rng(3, 12, NOISE), sample_rng(3, 11, QUALITY), purpose_rng(3, NOISE)):
        assert not np.array_equal(a, other.random(5))
    assert not np.array_equal(purpose_rng(3, MORPHOLOGY).random(5), purpose_rng(3, NOISE).random(5))
    with pytest.raises(ValueError, match="purpose"):
        sample_rng(0, 0, 99)


def test_mask_and_style_draws_of_a_sample_are_independent(tmp_path) -> None:
    """The masks' own first draw (cell count) against the style draw of the same (S, i)."""
    make_dataset(tmp_path / "ds", n_images=2, seed=1)
    build_shape_bank(tmp_path / "ds", tmp_path / "b.parquet")
    bank = ShapeBank.load(tmp_path / "b.parquet")
    cfg = SynthConfig(width=96, height=96, cells_mean=8.0, cells_std=3.0, cell_size=10.0, placement="uniform", max_tries=50,
                      max_unplaced=0.9)
    n = np.array([synthesize(bank, cfg, 5, i).n_requested for i in range(300)], dtype=float)
    # a two-class style bank with 2 clusters: the background's cluster is the first style draw
    styles = StyleBank(np.zeros((2, 2, 3), np.float32), np.array([[5, 5], [5, 5]]))
    lut = np.array([0, 1])
    k = np.array([styles.choose(lut, np.array([0, 1]), (5, i), None)[0] for i in range(300)], dtype=float)
    assert abs(np.corrcoef(n, k)[0, 1]) < 0.2
    # and still a pure function of (S, i): the same sample again, in another order
    assert synthesize(bank, cfg, 5, 17).instances.tobytes() == synthesize(bank, cfg, 5, 17).instances.tobytes()
    again = [styles.choose(lut, np.array([0, 1]), (5, i), None)[0] for i in (9, 3)]
    assert again == [int(k[9]), int(k[3])]
