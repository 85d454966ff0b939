"""pix2pixHD training without Ray: two stages, resume, final model, inference API, CLI and its errors."""

from __future__ import annotations

import json
import os
import shutil

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from _p2p_data import TINY, make_dataset  # noqa: E402

from rbcray.cli import main  # noqa: E402
from rbcray.data.formats import read_instances  # noqa: E402
from rbcray.errors import DataError  # noqa: E402
from rbcray.io import decode_png, read_image  # noqa: E402
from rbcray.models.pix2pixhd.checkpoint import load_state  # noqa: E402
from rbcray.models.pix2pixhd.inference import Pix2PixHDTranslator  # noqa: E402
from rbcray.train.pix2pixhd import Pix2PixHDTrainConfig, latest_checkpoint, train  # noqa: E402

torch.set_num_threads(1)

TINY_YAML = """
model: {ngf: 4, ndf: 4, nef: 4, n_down_global: 3, n_blocks_global: 1, n_blocks_local: 1, n_down_E: 3}
crop_size: [64, 64]
stage1_epochs: 1
stage2_epochs: 1
freeze_global_epochs: 1
samples_per_epoch: 4
batch_size: 2
style_clusters: 3
"""


@pytest.fixture(scope="module")
def real_ds(chula_root, tmp_path_factory):
    return make_dataset(chula_root, tmp_path_factory.mktemp("p2p") / "ds", ("1", "2", "3"))


class Stop(Exception):
    pass


def test_two_stages_stop_resume_model_and_inference(tmp_path, real_ds, capsys) -> None:
    out = str(tmp_path / "run")

    def stop_after_first(epoch: int, metrics: dict) -> None:
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        train(TINY, real_ds, out, on_epoch=stop_after_first)
    assert latest_checkpoint(out).endswith("checkpoints/epoch_0001")
    assert not (tmp_path / "run" / "model").exists()
    first = load_state(latest_checkpoint(out))
    assert first["epoch"] == 1 and first["stage"] == 1
    assert json.loads(first["stats"])["n_samples"] == 3 and json.loads(first["config"])["crop_size"] == [64, 64]

    logs: list[str] = []
    summary = train(TINY, real_ds, out, log=logs.append)
    assert any("resuming" in m and "epoch 1/2" in m for m in logs)
    hist = summary["history"]
    assert [h["epoch"] for h in hist] == [1, 2] and [h["stage"] for h in hist] == [1, 2]
    assert hist[0] == json.loads(first["history"])[0]  # the first epoch was not trained again
    for key in ("G_GAN", "G_FM", "D_real", "D_fake", "L1", "img_s", "lr"):
        assert np.isfinite(hist[1][key])
    manifest = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    assert manifest["epoch"] == 2 and manifest["stage"] == 2 and manifest["resumed_at_epochs"] == [1]
    assert set(manifest["files"]) == {"generator.pt", "styles.npz", "config.json", "stats.json"}
    grid = decode_png((tmp_path / "run" / "samples" / "epoch_0002.png").read_bytes())
    assert grid.shape == (3 * 64 + 2 * 4, 3 * 64 + 2 * 4, 3)  # 3 samples x (mask | real | generated)

    logs.clear()
    again = train(TINY, real_ds, out, log=logs.append)  # finished: nothing is trained or rewritten
    assert again["history"] == hist and any("already" in m for m in logs)

    tr = Pix2PixHDTranslator.load(out, device="cpu")
    a = read_instances(real_ds / "instances" / "c1.png")
    b = a[:100, :150]
    imgs = tr.translate([a, b, a], None, seeds=[1, 2, 1])
    assert [i.shape for i in imgs] == [(480, 640, 3), (100, 150, 3), (480, 640, 3)] and imgs[0].dtype == np.uint8
    assert np.array_equal(imgs[0], imgs[2])
    assert np.array_equal(tr.translate([a], [None], seeds=[1])[0], imgs[0])  # batch composition is irrelevant
    with_styles = tr.translate_with_styles([a, a], None, seeds=[1, 5])
    assert not np.array_equal(with_styles[0][1], with_styles[1][1])  # other seed, other styles
    assert not np.array_equal(with_styles[0][0], with_styles[1][0])
    pair_seeds = tr.translate([b, b, b], None, seeds=[(7, 1), (7, 2), (7, 1)])  # (run seed, sample id)
    assert np.array_equal(pair_seeds[0], pair_seeds[2]) and not np.array_equal(pair_seeds[0], pair_seeds[1])
    fixed = tr.translate([a, a], None, seeds=[1, 5], style=2)
    assert np.array_equal(fixed[0], fixed[1])

    png = tmp_path / "styles.png"
    assert main(["styles", "--checkpoint", out, "--mask", str(real_ds / "masks" / "c2.png"), "--out", str(png)]) == 0
    g = read_image(png)
    assert g.shape == (2 * 480 + 4, 2 * 640 + 4, 3)  # mask + 3 styles on a 2 x 2 grid
    assert "3 styles" in capsys.readouterr().out


def _cli_error(argv: list[str], capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    return err


def test_cli_bad_inputs(tmp_path, real_ds, capsys, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_YAML)
    base = ["train", "--data", str(real_ds), "--config", str(cfg), "--no-ray", "--threads", "1"]

    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_YAML + "learning_rat: 0.1\n")
    err = _cli_error(["train", "--data", str(real_ds), "--out", str(tmp_path / "o1"), "--config", str(bad), "--no-ray"], capsys)
    assert "bad.yaml: unknown config key(s) 'learning_rat'" in err

    err = _cli_error(base + ["--out", str(tmp_path / "o2")], capsys)
    assert "VGG19 weights for the perceptual loss not found" in err and "--no-vgg-loss" in err
    assert not (tmp_path / "o2").exists()

    mism = tmp_path / "mismatch"
    shutil.copytree(real_ds, mism)
    img = read_image(mism / "images" / "c2.png")
    cv2.imwrite(str(mism / "images" / "c2.png"), cv2.resize(img, (320, 240)))
    err = _cli_error(base + ["--no-vgg-loss", "--data", str(mism), "--out", str(tmp_path / "o3")], capsys)
    assert "c2.png: image size 320x240 does not match its instance map" in err

    # a finished run whose generator file is damaged / tampered with
    out = tmp_path / "run"
    assert main(base + ["--no-vgg-loss", "--out", str(out)]) == 0
    styles = ["styles", "--checkpoint", str(out), "--mask", str(real_ds / "instances" / "c1.png"), "--out", str(tmp_path / "s.png")]
    gen = out / "model" / "generator.pt"
    gen.write_bytes(gen.read_bytes()[:1000])
    assert "generator.pt: corrupt (sha256 differs from model.json)" in _cli_error(styles, capsys)
    manifest = json.loads((out / "model" / "model.json").read_text())
    import hashlib

    manifest["files"]["generator.pt"] = hashlib.sha256(gen.read_bytes()).hexdigest()
    (out / "model" / "model.json").write_text(json.dumps(manifest))
    assert "generator.pt: corrupt or unreadable checkpoint" in _cli_error(styles, capsys)
    assert not (tmp_path / "s.png").exists()

    # a damaged latest training checkpoint is named and passed over: the run resumes from the one before
    ck = latest_checkpoint(str(out))
    with open(os.path.join(ck, "state.pt"), "r+b") as f:
        f.seek(100)
        f.write(b"\x00" * 64)
    capsys.readouterr()
    assert main(base + ["--no-vgg-loss", "--out", str(out), "--epochs", "3"]) == 0
    printed = capsys.readouterr().out
    assert f"warning: {ck}/state.pt: corrupt checkpoint (sha256 differs from state.sha256)" in printed
    assert "resuming from" in printed and "epoch_0001 (epoch 1/3)" in printed

    err = _cli_error(["styles", "--checkpoint", str(tmp_path / "nothing"), "--mask", str(real_ds / "instances" / "c1.png"),
                      "--out", str(tmp_path / "s.png")], capsys)
    assert "no trained model here" in err
    with pytest.raises(DataError, match="crop_size 700x700"):
        train(Pix2PixHDTrainConfig(crop_size=(700, 700), vgg_loss=False), real_ds, str(tmp_path / "o4"))
