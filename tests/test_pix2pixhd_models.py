"""pix2pixHD networks, inputs, losses and style clusters (no Ray, random-initialised networks)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from rbcray.errors import ConfigError, DataError  # noqa: E402
from rbcray.models.pix2pixhd.inputs import (  # noqa: E402
    boundary_map,
    category_lut,
    class_map,
    features_from_table,
    generator_input,
    instance_features,
    instance_mean,
)
from rbcray.models.pix2pixhd.losses import VGGLoss, feature_matching_loss, gan_loss, resolve_vgg_weights  # noqa: E402
from rbcray.models.pix2pixhd.model import Pix2PixHD, Pix2PixHDConfig, build_discriminator  # noqa: E402
from rbcray.models.pix2pixhd.styles import StyleBank, fit_styles  # noqa: E402
from rbcray.models.registry import create_model, list_models  # noqa: E402

torch.set_num_threads(1)


@pytest.mark.parametrize("hw", [(64, 64), (48, 80), (37, 53)])
def test_network_shapes(hw) -> None:
    h, w = hw
    assert {"pix2pixhd_global", "pix2pixhd_local", "pix2pixhd_discriminator", "pix2pixhd_encoder"} <= set(list_models())
    x = torch.randn(2, 8, h, w)
    g1 = create_model("pix2pixhd_global", input_nc=8, ngf=4, n_down=3, n_blocks=2)
    assert g1(x).shape == (2, 3, h, w)
    assert g1.forward_features(torch.randn(2, 8, 64, 64)).shape == (2, 4, 64, 64)
    g2 = create_model("pix2pixhd_local", input_nc=8, ngf=8, n_down_global=3, n_blocks_global=1, n_blocks_local=1)
    y = g2(x)
    assert y.shape == (2, 3, h, w) and y.abs().max() <= 1
    e = create_model("pix2pixhd_encoder", feat_nc=3, nef=4, n_down=3)
    assert e(torch.randn(2, 3, h, w)).shape == (2, 3, h, w)
    d = create_model("pix2pixhd_discriminator", input_nc=6, ndf=4, n_layers=3, num_D=2)
    outs = d(torch.randn(2, 6, h, w))
    assert len(outs) == 2 and all(len(o) == 5 for o in outs)  # 3 + first + score map per scale
    assert [o[-1].shape[1] for o in outs] == [1, 1]
    assert outs[1][0].shape[-1] < outs[0][0].shape[-1]  # the second scale sees a pooled input


def test_model_stages_and_discriminator() -> None:
    cfg = Pix2PixHDConfig(ngf=4, ndf=4, nef=4, n_down_global=3, n_blocks_global=1, n_blocks_local=1, n_down_E=3)
    m = Pix2PixHD(cfg)
    inst = torch.zeros(1, 40, 56, dtype=torch.long)
    inst[0, 5:20, 5:25] = 1
    inst[0, 22:38, 30:50] = 2
    classes = (inst > 0).long()
    img = torch.rand(1, 3, 40, 56) * 2 - 1
    assert m(inst, classes, img).shape == (1, 3, 40, 56)
    g1_state = {k: v.clone() for k, v in m.global_generator.state_dict().items()}
    m.to_stage2()
    assert m.stage == 2 and m.stride == 16
    assert m(inst, classes, img).shape == (1, 3, 40, 56)
    # stage 2 keeps the trained G1 weights (its output head is dropped)
    kept = m.global_generator.state_dict()
    assert all(torch.equal(kept[k], v) for k, v in g1_state.items() if k in kept)
    d = build_discriminator(cfg)
    assert d(torch.cat([generator_input(inst, classes, None, 4), img], 1))[0][0].shape[1] == 4


def test_instance_mean_equals_naive_mean() -> None:
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 3, 17, 23, generator=g)
    inst = torch.randint(0, 6, (2, 17, 23), generator=g)
    inst[1][inst[1] == 4] = 0  # an id present in one image only
    got = instance_mean(feat, inst)
    want = torch.empty_like(feat)
    for b in range(2):
        for i in inst[b].unique():
            m = inst[b] == i
            want[b][:, m] = feat[b][:, m].mean(dim=1, keepdim=True)
    assert torch.allclose(got, want, atol=1e-6)
    img_idx, ids, means = instance_features(feat, inst)
    for b, i, v in zip(img_idx.tolist(), ids.tolist(), means):
        assert i > 0
        assert torch.allclose(v, feat[b][:, inst[b] == i].mean(dim=1), atol=1e-6)
    assert len(ids) == sum(len(inst[b].unique()) - int((inst[b] == 0).any()) for b in range(2))


def test_boundary_map_hand_made() -> None:
    inst = torch.tensor(
        [[0, 0, 0, 0, 0],
         [0, 1, 1, 2, 0],
         [0, 1, 1, 2, 0],
         [0, 0, 0, 0, 0]]
    )
    want = torch.tensor(
        [[0, 1, 1, 1, 0],
         [1, 1, 1, 1, 1],
         [1, 1, 1, 1, 1],
         [0, 1, 1, 1, 0]], dtype=torch.float32
    )
    assert torch.equal(boundary_map(inst[None])[0, 0], want)
    inner = torch.zeros(1, 6, 6, dtype=torch.long)
    inner[0, 1:5, 1:5] = 3  # a 4x4 cell: its 2x2 core has no differing 4-neighbour
    e = boundary_map(inner)[0, 0]
    assert e[2:4, 2:4].sum() == 0 and e[1, 1] == 1 and e[0, 0] == 0 and e.sum() == 6 * 6 - 4 - 4


def test_labels_and_categories() -> None:
    inst = np.array([[0, 1, 2], [3, 3, 0]], dtype=np.uint16)
    lut = category_lut(inst, {2: 2}, num_classes=4)
    assert lut.tolist() == [0, 1, 2, 1]
    with pytest.raises(DataError, match="cell 3 has category id 7"):
        category_lut(inst, {3: 7}, num_classes=4, name="m.png")
    t = torch.from_numpy(inst.astype(np.int64))[None]
    cls = class_map(t, [lut])
    assert cls[0].tolist() == [[0, 1, 2], [1, 1, 0]]
    x = generator_input(t, cls, torch.ones(1, 3, 2, 3), 4)
    assert x.shape == (1, 4 + 1 + 3, 2, 3) and x[0, :4].sum(0).eq(1).all()
    table = torch.arange(4 * 2, dtype=torch.float32).view(1, 4, 2)
    f = features_from_table(t, table)
    assert f[0, :, 1, 0].tolist() == [6.0, 7.0]


def test_losses() -> None:
    real = [[torch.zeros(1, 2, 3, 3), torch.ones(1, 1, 2, 2)], [torch.zeros(1, 2, 2, 2), torch.ones(1, 1, 1, 1)]]
    assert gan_loss(real, True).item() == 0.0  # LSGAN: score 1 for real is perfect
    assert gan_loss(real, False).item() == pytest.approx(2.0)
    assert gan_loss(real, True, "hinge").item() == 0.0
    assert gan_loss(real, False, "hinge").item() == pytest.approx(4.0)
    assert gan_loss(real, True, "hinge", for_d=False).item() == pytest.approx(-2.0)
    with pytest.raises(ConfigError):
        gan_loss(real, True, "wgan")
    fake = [[t + 1 for t in s] for s in real]
    assert feature_matching_loss(real, real, 3).item() == 0.0
    assert feature_matching_loss(fake, real, 3).item() == pytest.approx(1.0)  # 2 scales x 1 layer x 4/4/2


def test_vgg_loss_weights(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ConfigError, match="VGG19 weights for the perceptual loss not found.*--vgg-weights FILE.*--no-vgg-loss"):
        resolve_vgg_weights(None)
    with pytest.raises(ConfigError, match="nope.pth not found"):
        resolve_vgg_weights(str(tmp_path / "nope.pth"))
    from torchvision.models import vgg19

    torch.manual_seed(0)
    path = tmp_path / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    path.parent.mkdir(parents=True)
    torch.save(vgg19(weights=None).state_dict(), path)  # a random VGG19 in torchvision's file layout
    assert resolve_vgg_weights(None) == path
    loss = VGGLoss(path)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert loss(x, x).item() == 0.0
    y = x.clone().requires_grad_(True)
    v = loss(y, -x)
    v.backward()
    assert v.item() > 0 and y.grad is not None and all(not p.requires_grad for p in loss.parameters())
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="bad.pth: not a readable VGG19 weights file"):
        VGGLoss(bad)


def test_style_clusters_fit_and_sample_deterministically() -> None:
    rng = np.random.default_rng(0)
    bg = np.tile([0.5, 0.5, 0.5], (20, 1))  # one distinct vector: one cluster
    cells = np.concatenate([rng.normal(c, 0.01, size=(30, 3)) for c in ([-0.5, 0, 0], [0.5, 0, 0], [0, 0.5, 0])])
    bank = fit_styles({0: bg, 1: cells}, num_classes=4, feat_nc=3, k=3, seed=0)
    assert bank.k == 3 and bank.n_clusters(1) == 3 and bank.n_clusters(0) == 1 and bank.n_clusters(2) == 0
    centers = sorted(map(tuple, np.round(bank.centers[1], 1)))
    assert centers == [(-0.5, 0.0, 0.0), (0.0, 0.5, 0.0), (0.5, 0.0, 0.0)]
    again = StyleBank.from_bytes(bank.to_bytes())
    assert np.array_equal(again.centers, bank.centers) and np.array_equal(again.sizes, bank.sizes)
    inst = np.array([[0, 1, 2, 5], [0, 1, 2, 5]])
    lut = category_lut(inst, {5: 2}, 4)  # cell 5 is a WBC: no WBC clusters, it borrows RBC's
    present = np.unique(inst)
    a = bank.choose(lut, present, seed=7, style=None)
    assert np.array_equal(a, bank.choose(lut, present, seed=7, style=None))
    assert a[0] == 0 and a[3] == -1 and a[4] == -1 and set(a[[1, 2, 5]]) <= {0, 1, 2}
    draws = {tuple(bank.choose(lut, present, seed=s, style=None)[[1, 2, 5]]) for s in range(20)}
    assert len(draws) > 5  # seeds really choose styles
    fixed = bank.choose(lut, present, seed=None, style=2)
    assert fixed[[1, 2, 5]].tolist() == [2, 2, 2] and fixed[0] == 0  # background has 1 cluster: 2 % 1
    table = bank.feature_table(lut, fixed)
    assert np.allclose(table[5], bank.centers[1, 2]) and np.allclose(table[0], bank.centers[0, 0])
    with pytest.raises(ConfigError, match="style 3 out of range"):
        bank.choose(lut, present, seed=None, style=3)
    with pytest.raises(DataError, match="not a readable style cluster file"):
        StyleBank.from_bytes(b"garbage")
