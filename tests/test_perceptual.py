"""The perceptual loss from the real-image encoder (no downloaded weights): the loss itself, its leak
check, and both families training with it from the CLI."""

from __future__ import annotations

import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402
from _p2p_data import TINY as P2P_TINY  # noqa: E402
from _p2p_data import make_crops_dataset  # noqa: E402

from rbcray.cli import main  # noqa: E402
from rbcray.config import replace, to_dict  # noqa: E402
from rbcray.errors import DataError  # noqa: E402
from rbcray.evaluate.encoder import SegNet  # noqa: E402
from rbcray.models.unet_wgangp.config import UNetWGANGPConfig, UNetWGANGPTrainConfig  # noqa: E402
from rbcray.train.perceptual import EncoderPerceptualLoss, check_encoder_images  # noqa: E402

torch.set_num_threads(1)

UNET_TINY = UNetWGANGPTrainConfig(
    model=UNetWGANGPConfig(ngf=4, ndf=4, n_down=3, max_mult=4, n_layers_D=2), crop_size=(64, 64), batch_size=2,
    samples_per_epoch=4, epochs=1, n_critic=1, lambda_l1=1.0, ema_decay=0.9, grid_samples=2,
)


def test_loss_is_zero_on_equal_images_and_moves_only_the_fake() -> None:
    torch.manual_seed(0)
    net = SegNet(4)
    loss = EncoderPerceptualLoss(net)
    loss.train()  # must stay in eval: the encoder's BatchNorm statistics are frozen
    assert not loss.net.training and not any(p.requires_grad for p in loss.parameters())
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    assert float(loss(real.clone(), real)) == 0.0
    fake = (real + 0.3 * torch.randn_like(real)).requires_grad_(True)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    value = loss(fake, real)
    value.backward()
    assert float(value.detach()) > 0 and fake.grad is not None and float(fake.grad.abs().sum()) > 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BN running stats untouched


def test_encoder_from_other_images_is_refused() -> None:
    ours = {"dataset": "chula", "stems": ["1", "2", "3"]}
    check_encoder_images("enc.pt", {"dataset": "chula", "stems": ["1", "3"]}, ours)  # a subset: fine
    with pytest.raises(DataError, match=r"enc.pt: encoder learned from image\(s\) 7 that this run does not train on"):
        check_encoder_images("enc.pt", {"dataset": "chula", "stems": ["1", "7"]}, ours)
    with pytest.raises(DataError, match="dataset 'bccd'"):
        check_encoder_images("enc.pt", {"dataset": "bccd", "stems": ["1"]}, ours)
    with pytest.raises(DataError, match="records no training images"):
        check_encoder_images("enc.pt", {}, ours)


@pytest.fixture(scope="module")
def crops(chula_root, tmp_path_factory):
    return make_crops_dataset(chula_root, tmp_path_factory.mktemp("perc") / "crops")


@pytest.mark.parametrize("family,cfg,key", [("unet-wgangp", UNET_TINY, "G_perc"),
                                            ("pix2pixhd", replace(P2P_TINY, stage2_epochs=0), "G_PERC")])
def test_both_families_train_with_the_encoder_loss_cli(crops, tmp_path, capsys, family, cfg, key) -> None:
    enc = tmp_path / "enc.pt"
    assert main(["encoder", "--data", str(crops), "--out", str(enc), "--steps", "5", "--crop", "48"]) == 0
    cfg_file = tmp_path / "tiny.json"
    cfg_file.write_text(json.dumps(to_dict(cfg)))
    base = ["train", "--model", family, "--data", str(crops), "--config", str(cfg_file), "--no-ray", "--threads", "1"]
    out = tmp_path / "run"
    assert main(base + ["--out", str(out), "--perceptual-encoder", str(enc)]) == 0
    log = capsys.readouterr()
    assert f"{key}=" in log.out + log.err
    model = json.loads((out / "model" / "model.json").read_text())
    assert model["format"].startswith("rbcray-")
    # an encoder that learned from an image this run does not train on is refused before any work
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"format": "rbcray-splits", "format_version": 1, "dataset": "chula-crops", "seed": 0,
                                  "roles": {"train": ["crop1"], "val": ["crop2"], "test": []}}))
    bad = tmp_path / "bad"
    assert main(base + ["--out", str(bad), "--perceptual-encoder", str(enc), "--splits", str(splits), "--split", "train"]) == 2
    err = capsys.readouterr().err.strip()
    assert "encoder learned from image(s) crop2 that this run does not train on" in err and "\n" not in err
    assert not bad.exists()
    assert main(base + ["--out", str(bad), "--perceptual-encoder", str(tmp_path / "none.pt")]) == 2
    assert "none.pt: file not found" in capsys.readouterr().err and not bad.exists()
