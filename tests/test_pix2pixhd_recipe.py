"""The paper's recipe (generator: global): one G through both stages, at half then full resolution;
the reference's initialisation, VGG input and style sampling; the packaged paper config."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from _p2p_data import make_crops_dataset  # noqa: E402

from rbcray.cli.train_cmds import resolve_config  # noqa: E402
from rbcray.config import replace  # noqa: E402
from rbcray.data.dataset import Dataset  # noqa: E402
from rbcray.models.pix2pixhd.inference import Pix2PixHDTranslator  # noqa: E402
from rbcray.models.pix2pixhd.losses import VGGLoss  # noqa: E402
from rbcray.models.pix2pixhd.model import Pix2PixHD, Pix2PixHDConfig, build_discriminator  # noqa: E402
from rbcray.models.pix2pixhd.networks import GlobalGenerator, LocalEnhancer  # noqa: E402
from rbcray.models.pix2pixhd.styles import StyleBank  # noqa: E402
from rbcray.train.pix2pixhd import Pix2PixHDTrainConfig, train  # noqa: E402
from rbcray.train.pix2pixhd_loop import Trainer  # noqa: E402

torch.set_num_threads(1)

SMALL = Pix2PixHDConfig(generator="global", ngf=8, ndf=8, nef=4, n_down_global=2, n_blocks_global=1, n_down_E=2)
CFG = Pix2PixHDTrainConfig(model=SMALL, crop_size=None, stage1_epochs=1, stage2_epochs=1, vgg_loss=False,
                           samples_per_epoch=2, batch_size=2, style_clusters=2, flip=False)


@pytest.fixture(scope="module")
def crops(chula_root, tmp_path_factory):
    return make_crops_dataset(chula_root, tmp_path_factory.mktemp("recipe") / "crops", size=64)


def _sizes(trainer: Trainer, epoch: int) -> set[tuple[int, int]]:
    return {tuple(real.shape[-2:]) for _, _, real in trainer.loader(epoch)}


def test_global_recipe_same_G_through_both_stages_at_doubling_resolution(crops) -> None:
    tr = Trainer(CFG, Dataset.open(crops), device="cpu")
    g = tr.model.G
    assert isinstance(g, GlobalGenerator) and tr.cfg.total_epochs == 2
    before = [p.detach().clone() for p in g.parameters()]
    assert _sizes(tr, 0) == {(32, 32)}
    tr.train_epoch()
    assert tr.model.stage == 1 and tr.model.G is g
    assert _sizes(tr, 1) == {(64, 64)}  # stage 2: twice the resolution
    mid = [p.detach().clone() for p in g.parameters()]
    tr.train_epoch()
    assert tr.model.stage == 2 and tr.model.G is g and tr.model.global_generator is g
    assert not isinstance(tr.model.G, LocalEnhancer)
    # the one G learned in both stages (and was not frozen in stage 2)
    assert any(not torch.equal(a, b) for a, b in zip(before, mid))
    assert any(not torch.equal(a, b) for a, b in zip(mid, g.parameters()))
    assert [h["stage"] for h in tr.history] == [1, 2]


def test_global_recipe_loss_falls_on_a_fixed_batch(crops) -> None:
    cfg = replace(CFG, lr=1e-3)
    tr = Trainer(cfg, Dataset.open(crops), device="cpu")
    for stage_epoch in (0, 1):
        tr.prepare_epoch(stage_epoch)
        inst, classes, real = next(iter(tr.loader(stage_epoch)))
        l1 = []
        for _ in range(25):
            fake, lg = tr.phase_Gmain(inst, classes, real)
            tr.phase_Dmain(inst, classes, real, fake)
            l1.append(float(lg["L1"]))
        assert np.mean(l1[-5:]) < 0.8 * np.mean(l1[:5]), (stage_epoch, l1)
        if stage_epoch == 0:
            tr.epoch = 1  # on to stage 2 with the same trainer


def test_global_model_exports_and_translates_at_full_resolution(crops, tmp_path) -> None:
    summary = train(CFG, crops, str(tmp_path / "run"), log=lambda m: None)
    tr = Pix2PixHDTranslator.load(summary["model"], device="cpu")
    assert isinstance(tr.G, GlobalGenerator) and tr.config["model"]["generator"] == "global"
    inst = Dataset.open(crops).load_instances("crop1")
    img = tr.translate([inst], None, [(0, 3)])[0]
    assert img.shape == (64, 64, 3)
    assert np.array_equal(img, tr.translate([inst], None, [(0, 3)])[0])


def test_reference_initialisation() -> None:
    torch.manual_seed(0)
    cfg = Pix2PixHDConfig(ngf=16, n_down_global=2, n_blocks_global=2)
    m = Pix2PixHD(cfg, stage=2)  # global+local: the enhancer's new layers are initialised too
    d = build_discriminator(cfg)
    for net in (m.G, m.E, d):
        w = torch.cat([mod.weight.detach().flatten() for mod in net.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))])
        assert abs(float(w.mean())) < 0.002 and abs(float(w.std()) - 0.02) < 0.001
    assert isinstance(m.G, LocalEnhancer)
    front = m.G.front[1].weight.detach()
    assert abs(float(front.std()) - 0.02) < 0.006


def test_vgg_sees_images_as_the_reference_feeds_them() -> None:
    torch.manual_seed(0)
    x, y = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    raw, norm = VGGLoss(None), VGGLoss(None, imagenet_norm=True)
    norm.load_state_dict(raw.state_dict())
    # the reference: [-1, 1] straight in; the option: ImageNet-normalised [0, 1]
    assert torch.equal(raw._prep(x), x)
    assert torch.allclose(norm._prep(x), ((x + 1) / 2 - norm.mean) / norm.std)
    assert float(raw(x, y)) != pytest.approx(float(norm(x, y)))


def test_style_clusters_uniform_per_class_by_default() -> None:
    # one class with a big (90 regions) and a small (10 regions) cluster
    bank = StyleBank(np.zeros((2, 2, 3), np.float32), np.array([[90, 10], [90, 10]]))
    lut, present = np.array([0, 1]), np.array([0, 1])
    uni = np.array([bank.choose(lut, present, (1, i), None)[1] for i in range(2000)])
    prop = np.array([bank.choose(lut, present, (1, i), None, "proportional")[1] for i in range(2000)])
    assert abs(uni.mean() - 0.5) < 0.05
    assert abs(prop.mean() - 0.1) < 0.03


def test_paper_config_is_the_papers_recipe_at_native_resolution(chula_root, tmp_path) -> None:
    cfg = resolve_config("paper")
    m = cfg.model
    assert m.generator == "global" and m.stages == 2
    assert (m.ngf, m.ndf, m.nef) == (16, 16, 16)
    assert (cfg.stage1_epochs, cfg.total_stage2) == (120, 120)
    assert cfg.load_size is None and cfg.crop_size is None and tuple(cfg.stage1_size) == (320, 240)
    assert cfg.style_sampling == "uniform" and cfg.vgg_imagenet_norm is False
    demo = resolve_config("demo")
    assert demo.model.generator == "global+local"
    from _p2p_data import make_dataset

    ds = Dataset.open(make_dataset(chula_root, tmp_path / "ds", ("1",)))
    tr = Trainer(replace(cfg, vgg_loss=False), ds, device="cpu")
    s1, s2 = tr.crop_spec(1), tr.crop_spec(2)
    assert s1.load_size is None and s1.crop_size is None and tuple(s1.out_size) == (320, 240)
    assert s2.out_size is None and (ds.samples[0]["width"], ds.samples[0]["height"]) == (640, 480)
