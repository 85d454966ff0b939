"""UNIT building blocks: the cosine window, blending, the pseudo-label filter, the networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rbcray.errors import ConfigError, DataError
from rbcray.models.registry import create_model
from rbcray.models.unit.blend import blend_cells, blend_patch, cosine_window
from rbcray.models.unit.filter import acceptance_rate, grid_search_threshold, pseudo_label_filter
from rbcray.models.unit.networks import UNIT, UNITConfig


@pytest.mark.parametrize("n", [1.0, 2.0, 4.0])
def test_window_is_one_at_centre_zero_on_border(n: float) -> None:
    a = cosine_window(33, 21, n)
    assert a[16, 10] == pytest.approx(1.0)
    assert (a[0] == 0).all() and (a[-1] == 0).all() and (a[:, 0] == 0).all() and (a[:, -1] == 0).all()
    assert ((a >= 0) & (a <= 1)).all()
    # separable and symmetric, and monotone from the centre outwards
    assert np.allclose(a, a[::-1, ::-1])
    assert (np.diff(a[16, 10:]) <= 1e-12).all()
    # alpha(i, j) = cos(|i|^n pi/2) cos(|j|^n pi/2) at a known point
    i, j = np.linspace(-1, 1, 33)[8], np.linspace(-1, 1, 21)[15]
    assert a[8, 15] == pytest.approx(np.cos(abs(i) ** n * np.pi / 2) * np.cos(abs(j) ** n * np.pi / 2))


def test_larger_n_keeps_more_of_the_patch() -> None:
    assert cosine_window(31, 31, 4.0).mean() > cosine_window(31, 31, 2.0).mean() > cosine_window(31, 31, 1.0).mean()
    with pytest.raises(DataError, match="n = 0"):
        cosine_window(9, 9, 0)


def test_blend_patch_centre_replaced_border_kept() -> None:
    host = np.full((40, 40, 3), 200, np.uint8)
    patch = np.full((11, 11, 3), 10, np.uint8)
    out = blend_patch(host, patch, 5, 7, cosine_window(11, 11))
    assert (out[10, 12] == 10).all()  # centre: the patch
    assert (out[5, 7:18] == 200).all() and (out[5:16, 7] == 200).all()  # window border: the host
    assert (out[:5] == 200).all() and (out[16:] == 200).all()  # outside: the host
    assert (host == 200).all()  # not in place
    # clipped at the image edge
    edge = blend_patch(host, patch, -5, -5, cosine_window(11, 11))
    assert (edge[0, 0] == 10).all() and edge.shape == host.shape


def test_rejected_cell_leaves_host_unchanged() -> None:
    rng = np.random.default_rng(0)
    host = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    patches = [rng.integers(0, 256, (15, 15, 3), dtype=np.uint8) for _ in range(2)]
    centres = [(20.0, 20.0), (55.0, 40.0)]
    none = blend_cells(host, patches, centres, [False, False])
    assert np.array_equal(none, host) and none is not host
    one = blend_cells(host, patches, centres, [True, False])
    assert not np.array_equal(one[13:28, 13:28], host[13:28, 13:28])
    assert np.array_equal(one[:, 40:], host[:, 40:])  # the rejected second cell's region is untouched
    both = blend_cells(host, patches, centres, [True, True])
    assert np.array_equal(both[:, :40], one[:, :40]) and not np.array_equal(both[33:48, 48:63], host[33:48, 48:63])
    with pytest.raises(DataError, match="2 patches, 2 centres, 1 decisions"):
        blend_cells(host, patches, centres, [True])


def test_pseudo_label_filter() -> None:
    p = np.array([[0.1, 0.9], [0.5, 0.5], [0.95, 0.05], [0.2, 0.8]])
    assert pseudo_label_filter(p, 1, 0.8).tolist() == [True, False, False, True]
    assert pseudo_label_filter(p, 1, 0.5).tolist() == [True, True, False, True]  # p >= t is kept
    assert pseudo_label_filter(p, 1, 0.0).all()
    assert acceptance_rate(p, 1, 0.9) == 0.25
    with pytest.raises(ConfigError, match="t = 1.5"):
        pseudo_label_filter(p, 1, 1.5)
    with pytest.raises(DataError, match="no class 2"):
        pseudo_label_filter(p, 2, 0.5)


def test_grid_search_picks_best_smallest_t() -> None:
    best, scores = grid_search_threshold(lambda t: -((t - 0.8) ** 2), (0.5, 0.8, 0.9))
    assert best == 0.8 and set(scores) == {0.5, 0.8, 0.9}
    best, _ = grid_search_threshold(lambda t: 1.0 if t >= 0.7 else float("nan"), (0.5, 0.7, 0.9))
    assert best == 0.7
    with pytest.raises(DataError, match="NaN"):
        grid_search_threshold(lambda t: float("nan"), (0.5,))


def test_unit_shapes_sharing_weights_and_phases() -> None:
    torch.manual_seed(0)
    cfg = UNITConfig(dim=8, n_down=2, n_res=2, dis_dim=8, dis_layers=2)
    model = create_model("unit", dim=8, n_down=2, n_res=2, dis_dim=8, dis_layers=2)
    assert isinstance(model, UNIT) and model.cfg == cfg
    assert (model.cfg.gan_w, model.cfg.kl_w, model.cfg.recon_w, model.cfg.cycle_kl_w, model.cfg.cycle_w) == (10, 0.1, 100, 0.1, 100)
    g = model.opt_gen.param_groups[0]
    assert g["lr"] == 1e-4 and g["betas"] == (0.5, 0.999)
    x_a, x_b = torch.rand(4, 3, 32, 32) * 2 - 1, torch.rand(4, 3, 32, 32) * 2 - 1
    assert model.encode(x_a, "a").shape == (4, 32, 8, 8)
    assert model.translate(x_a, "b").shape == x_a.shape
    # the shared blocks are one module used by both domains; the per-domain ones are distinct
    ids_gen = {id(p) for p in model.opt_gen.param_groups[0]["params"]}
    ids_dis = {id(p) for p in model.opt_dis.param_groups[0]["params"]}
    assert not ids_gen & ids_dis
    assert all(id(p) in ids_gen for p in model.enc_shared.parameters())
    # phase 1 moves only the discriminators, phase 2 only the generators
    enc0 = model.enc_a.net[0].weight.clone()
    dis0 = model.dis_a.net[0].weight.clone()
    model.dis_step(x_a, x_b)
    assert torch.equal(model.enc_a.net[0].weight, enc0) and not torch.equal(model.dis_a.net[0].weight, dis0)
    dis1 = model.dis_a.net[0].weight.clone()
    losses = model.gen_step(x_a, x_b)
    assert torch.equal(model.dis_a.net[0].weight, dis1) and not torch.equal(model.enc_a.net[0].weight, enc0)
    assert model.dis_a.net[0].weight.grad is None  # phase 2 leaves no stale discriminator gradients
    assert set(losses) == {"gan", "kl", "recon", "cycle_kl", "cycle", "total"}
    c = model.cfg
    expect = c.gan_w * losses["gan"] + c.kl_w * losses["kl"] + c.recon_w * losses["recon"] + c.cycle_kl_w * losses["cycle_kl"] + c.cycle_w * losses["cycle"]
    assert losses["total"] == pytest.approx(expect, rel=1e-5)


def test_unit_learns_to_reconstruct() -> None:
    torch.manual_seed(0)
    model = UNIT(UNITConfig(dim=8, n_down=1, n_res=2, dis_dim=8, dis_layers=2, lr=1e-3))
    x_a = torch.zeros(8, 3, 16, 16) - 0.5
    x_b = torch.zeros(8, 3, 16, 16) + 0.5
    first = model.gen_losses(x_a, x_b)["recon"].item()
    for _ in range(30):
        model.dis_step(x_a, x_b)
        model.gen_step(x_a, x_b)
    assert model.gen_losses(x_a, x_b)["recon"].item() < 0.5 * first
    # translation A->B lands nearer B's colour than A's
    t = model.translate(x_a, "b").mean().item()
    assert abs(t - 0.5) < abs(t + 0.5)


def test_unit_config_validation() -> None:
    with pytest.raises(ConfigError, match="n_res"):
        UNITConfig(n_res=0)
    with pytest.raises(ConfigError, match="unknown config key"):
        create_model("unit", lambda0=3)


def disc_patch(r: float, ry: float | None = None, size: int = 40) -> np.ndarray:
    """A (4, S, S) crop: pale background, a dark ellipse at the centre (mask channel = the ellipse)."""
    yy, xx = np.mgrid[0:size, 0:size] - size // 2
    m = (xx / r) ** 2 + (yy / (ry or r)) ** 2 <= 1
    out = np.full((4, size, size), 230, np.uint8)
    out[:3, m] = 120
    out[3] = np.where(m, 255, 0)
    return out


def test_threshold_mask_and_shape_features() -> None:
    from rbcray.models.unit.masks import shape_features, threshold_mask

    p = disc_patch(8)
    p[:3, 18:22, 18:22] = 230  # a pale centre (as a target cell's ring) is filled
    m = threshold_mask(p[:3])
    assert m[20, 20] and np.array_equal(m, p[3] > 0)
    f = shape_features(np.stack([disc_patch(8)[3] > 0, disc_patch(10, 5)[3] > 0]))
    assert f["elongation"][0] == pytest.approx(1.0, abs=0.02) and f["elongation"][1] == pytest.approx(0.5, abs=0.05)
    assert f["area"][0] == pytest.approx(np.pi * 64, rel=0.1)


def test_mask_option_comparison_prefers_the_matching_shape() -> None:
    from rbcray.models.unit.masks import compare_mask_options

    rng = np.random.default_rng(0)
    round_cells = np.stack([disc_patch(rng.uniform(7, 9)) for _ in range(40)])
    long_cells = np.stack([disc_patch(rng.uniform(10, 12), rng.uniform(4, 5)) for _ in range(40)])
    translated = long_cells.copy()
    translated[:, 3] = round_cells[:, 3]  # the host masks are round; the translated look is long
    res = compare_mask_options(round_cells, translated, long_cells)
    assert res["threshold_of_translated"]["elongation"] < res["host_shape_kept"]["elongation"]
    assert res["host_shape_kept"]["elongation"] > 0.9
    assert res["baseline_real_vs_real_halves"]["area"] < 0.5


def test_translate_smear_blends_only_accepted_cells() -> None:
    from rbcray.models.morphology import MorphologyNet, MorphologyNetConfig
    from rbcray.models.unit.apply import translate_smear

    torch.manual_seed(0)
    unit = UNIT(UNITConfig(dim=8, n_down=2, n_res=2, dis_dim=8, dis_layers=2)).eval()
    clf = MorphologyNet(MorphologyNetConfig(width=4, blocks=2)).eval()
    img = np.full((120, 160, 3), 220, np.uint8)
    inst = np.zeros((120, 160), np.uint16)
    yy, xx = np.mgrid[0:120, 0:160]
    for k, (cx, cy) in enumerate([(40, 40), (120, 80)], start=1):
        m = (xx - cx) ** 2 + (yy - cy) ** 2 < 12**2
        inst[m] = k
        img[m] = (190, 110, 120)
    all_in = translate_smear(unit, clf, img, inst, [1, 2], target=4, t=0.0, window=40, size=24)
    assert all_in.accepted.all() and all_in.image.shape == img.shape
    assert not np.array_equal(all_in.image[25:55, 25:55], img[25:55, 25:55])
    assert np.array_equal(all_in.image[:, 62:98], img[:, 62:98])  # between the windows: untouched
    only_one = translate_smear(unit, clf, img, inst, [1], target=4, t=0.0, window=40, size=24)
    assert np.array_equal(only_one.image[:, 80:], img[:, 80:])  # the cell not chosen is untouched
    t = float(all_in.p_target.max()) + 1e-6
    assert t < 1.0  # an untrained classifier is far from certain
    none = translate_smear(unit, clf, img, inst, [1, 2], target=4, t=t, window=40, size=24)
    assert not none.accepted.any() and np.array_equal(none.image, img)
    # without a classifier every translation is kept (the unfiltered regime) and no p is known
    free = translate_smear(unit, None, img, inst, [1, 2], target=4, t=0.9, window=40, size=24)
    assert free.accepted.all() and np.isnan(free.p_target).all() and np.array_equal(free.image, all_in.image)
