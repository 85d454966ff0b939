"""pix2pixHD's few-image options (issue 13): DiffAugment, R1 and the EMA generator, on a tiny model."""

from __future__ import annotations

import copy
import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402
from _p2p_data import TINY, make_dataset  # noqa: E402

from rbcray.config import replace  # noqa: E402
from rbcray.errors import ConfigError  # noqa: E402
from rbcray.models.pix2pixhd.checkpoint import load_torch_bytes, read_model  # noqa: E402
from rbcray.models.pix2pixhd.inference import Pix2PixHDTranslator  # noqa: E402
from rbcray.train.pix2pixhd import Pix2PixHDTrainConfig  # noqa: E402
from rbcray.train.pix2pixhd_export import export_model  # noqa: E402
from rbcray.train.pix2pixhd_loop import Trainer, open_dataset, paired_augment  # noqa: E402

torch.set_num_threads(1)



@pytest.fixture(scope="module")
def ds(chula_root, tmp_path_factory):
    return open_dataset(make_dataset(chula_root, tmp_path_factory.mktemp("p2pfew") / "ds", ("1", "2", "3")))


def batch(tr: Trainer):
    return next(iter(tr.loader(0)))


def test_config_defaults_off_and_validation() -> None:
    assert (TINY.diffaug, TINY.r1_gamma, TINY.ema_decay) == ("", 0.0, 0.0)  # the paper's recipe unchanged
    with pytest.raises(ConfigError, match="unknown transform.*'rotate'"):
        replace(TINY, diffaug="color,rotate")
    with pytest.raises(ConfigError, match="ema_decay must be in"):
        replace(TINY, ema_decay=1.0)
    with pytest.raises(ConfigError, match="r1_gamma must be >= 0"):
        replace(TINY, r1_gamma=-1.0)


def test_paired_augment_gives_a_fake_and_its_real_the_same_transform() -> None:
    torch.manual_seed(0)
    label = torch.rand(3, 5, 16, 16).repeat(2, 1, 1, 1)
    img = torch.rand(3, 3, 16, 16).repeat(2, 1, 1, 1)  # "fake" == "real": the halves must stay equal
    lab2, pair = paired_augment(label, img, ("color", "translation", "cutout"))
    assert torch.equal(lab2[:3], lab2[3:]) and torch.equal(pair[:3], pair[3:]) and not torch.equal(pair, img)


def test_diffaug_and_r1_change_the_discriminator_update(ds) -> None:
    def d_step(cfg: Pix2PixHDTrainConfig):
        tr = Trainer(cfg, ds, device="cpu")
        tr.prepare_epoch(0)
        inst, classes, real = batch(tr)
        torch.manual_seed(1)
        fake, _ = tr.phase_Gmain(inst, classes, real)
        losses = tr.phase_Dmain(inst, classes, real, fake)
        return losses, [p.detach().clone() for p in tr.D.parameters()]

    base, d0 = d_step(TINY)
    aug, d1 = d_step(replace(TINY, diffaug="translation,cutout"))
    r1, d2 = d_step(replace(TINY, r1_gamma=10.0))
    assert "D_r1" not in base and "D_r1" not in aug
    assert float(aug["D_real"].detach()) != pytest.approx(float(base["D_real"].detach()))  # D saw transformed pairs
    assert float(r1["D_r1"]) > 0 and float(r1["D_real"]) == pytest.approx(float(base["D_real"]))  # same pass, extra term
    assert any(not torch.allclose(a, b) for a, b in zip(d0, d2))  # the penalty moved D's weights


def test_ema_average_and_export_loads_it(ds, tmp_path) -> None:
    cfg = replace(TINY, ema_decay=0.9)
    tr = Trainer(cfg, ds, device="cpu")
    assert tr.ema is not None and tr.inference_model is tr.ema
    tr.prepare_epoch(0)
    inst, classes, real = batch(tr)
    before = [p.detach().clone() for p in tr.model.parameters()]
    tr.phase_Gmain(inst, classes, real)
    for e, b, p in zip(tr.ema.parameters(), before, tr.model.parameters()):
        assert torch.allclose(e, b + 0.1 * (p.detach() - b), atol=1e-6)  # ema = 0.9 old + 0.1 new
    tr.epoch = 1
    tr.train_epoch()  # stage 2: the average restarts with the new local enhancer
    assert tr.ema.stage == 2 and tr.model.stage == 2
    assert any(not torch.equal(a, b) for a, b in zip(tr.ema.G.state_dict().values(), tr.model.G.state_dict().values()))

    state = copy.deepcopy(tr.state_dict())
    again = Trainer(cfg, ds, device="cpu")
    again.load_state_dict(state)
    for k, v in tr.ema.G.state_dict().items():
        assert torch.equal(again.ema.G.state_dict()[k], v)

    uri = export_model(tr, str(tmp_path / "run"), log=lambda m: None)
    manifest, files = read_model(uri)
    assert manifest["weights"] == "ema"
    g = load_torch_bytes(files["generator.pt"], "generator.pt")["G"]
    for k, v in tr.ema.G.state_dict().items():
        assert torch.equal(g[k], v)
    loaded = Pix2PixHDTranslator.load(str(tmp_path / "run"), device="cpu")
    for k, v in tr.ema.G.state_dict().items():
        assert torch.equal(loaded.G.state_dict()[k], v)
    assert json.loads(files["config.json"])["ema_decay"] == 0.9
