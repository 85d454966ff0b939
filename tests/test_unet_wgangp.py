"""The unet-wgangp family: its parts on constructed cases, training/resume/export, the shared
inference API, the CLI, and both families through the same generation engine."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from _p2p_data import make_crops_dataset  # noqa: E402

from rbcray.cli import main  # noqa: E402
from rbcray.config import replace  # noqa: E402
from rbcray.data.formats import read_instances  # noqa: E402
from rbcray.errors import ConfigError, DataError  # noqa: E402
from rbcray.generate.verify import verify_output  # noqa: E402
from rbcray.io import decode_png  # noqa: E402
from rbcray.models.pix2pixhd.checkpoint import load_state  # noqa: E402
from rbcray.models.registry import (  # noqa: E402
    create_model,
    family_of_config,
    get_family,
    list_families,
    load_translator,
    open_model,
)
from rbcray.models.translator import Translator  # noqa: E402
from rbcray.models.unet_wgangp.config import UNetWGANGPConfig, UNetWGANGPTrainConfig  # noqa: E402
from rbcray.models.unet_wgangp.inference import UNetTranslator  # noqa: E402
from rbcray.models.unet_wgangp.losses import gradient_penalty, r1_penalty  # noqa: E402
from rbcray.models.unet_wgangp.networks import BatchRenorm2d  # noqa: E402
from rbcray.train.diffaug import diff_augment, parse_policy  # noqa: E402
from rbcray.train.pix2pixhd import latest_checkpoint  # noqa: E402
from rbcray.train.runner import train  # noqa: E402

torch.set_num_threads(1)

ARCH = UNetWGANGPConfig(ngf=4, ndf=4, n_down=3, max_mult=4, n_layers_D=2)
TINY = UNetWGANGPTrainConfig(
    model=ARCH, crop_size=(64, 64), batch_size=2, samples_per_epoch=4, epochs=2, n_critic=2, lambda_l1=1.0,
    r1_gamma=0.1, diffaug="color,translation,cutout", ema_decay=0.9, grid_samples=2,
)


# ----------------------------------------------------------------------------- parts
def test_registry_lists_both_families_and_maps_configs() -> None:
    assert {"pix2pixhd", "unet-wgangp"} <= set(list_families())
    assert family_of_config(TINY).name == "unet-wgangp"
    from rbcray.train.pix2pixhd import Pix2PixHDTrainConfig

    assert family_of_config(Pix2PixHDTrainConfig()).name == "pix2pixhd"
    with pytest.raises(ConfigError, match="unknown model family 'stylegan'"):
        get_family("stylegan")


def test_gradient_penalty_and_r1_on_a_linear_critic() -> None:
    # D(label, x) = <w, x>: its gradient is w everywhere, so the penalty is (||w|| - 1)^2 exactly
    w = torch.randn(1, 3, 8, 8)

    def critic(label: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return (x * w).flatten(1).sum(1)

    label, real, fake = torch.zeros(4, 5, 8, 8), torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    expect = (w.norm() - 1) ** 2
    assert torch.allclose(gradient_penalty(critic, label, real, fake), expect, rtol=1e-5)
    assert torch.allclose(r1_penalty(critic, label, real), w.norm() ** 2, rtol=1e-5)
    # the interpolation is per sample: with e = 1 the point is the real image itself
    seen = []

    def spy(label: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        seen.append(x.detach().clone())
        return critic(label, x)

    gradient_penalty(spy, label, real, fake, eps=torch.tensor([1.0, 0.0, 0.5, 1.0]).view(4, 1, 1, 1))
    x = seen[0]
    assert torch.equal(x[0], real[0]) and torch.equal(x[1], fake[1]) and torch.allclose(x[2], (real[2] + fake[2]) / 2)


def test_batch_renorm_eval_is_per_sample_and_train_normalises() -> None:
    torch.manual_seed(0)
    bn = BatchRenorm2d(3, momentum=0.5)
    x = torch.randn(8, 3, 5, 5) * 4 + 2
    y = bn.train()(x)
    assert y.mean(dim=(0, 2, 3)).abs().max() < 2.5  # r, d pull towards the (still initial) running stats
    for _ in range(30):
        bn(x)
    y = bn(x)
    assert y.mean(dim=(0, 2, 3)).abs().max() < 1e-3 and (y.std(dim=(0, 2, 3)) - 1).abs().max() < 0.05
    bn.eval()
    assert torch.allclose(bn(x[:1]), bn(x)[:1])  # one sample alone == the same sample in a batch


def test_unet_any_size_and_critic_layer_norm_is_per_sample() -> None:
    torch.manual_seed(0)
    G = create_model("unet_wgangp_generator", cfg=ARCH).eval()
    D = create_model("unet_wgangp_critic", cfg=ARCH)
    x = torch.randn(3, ARCH.label_nc + ARCH.z_nc, 37, 51)
    y = G(x)
    assert y.shape == (3, 3, 37, 51) and y.abs().max() <= 1
    assert torch.allclose(G(x[1:2]), y[1:2], atol=1e-6)
    s = D(x[:, : ARCH.label_nc], y)
    assert s.shape == (3,) and torch.allclose(D(x[1:2, : ARCH.label_nc], y[1:2]), s[1:2], atol=1e-5)


def test_diffaug_keeps_pairs_aligned() -> None:
    torch.manual_seed(1)
    label = torch.rand(4, 2, 16, 16)
    image = label[:, :1].repeat(1, 3, 1, 1)  # the image is a copy of label channel 0
    la, ia = diff_augment(label, image, parse_policy("translation,cutout"))
    assert not torch.equal(la, label)  # something moved or was cut
    assert torch.equal(ia, la[:, :1].repeat(1, 3, 1, 1))  # ... and the pair moved together
    lc, ic = diff_augment(label, image, parse_policy("color"))
    assert torch.equal(lc, label) and not torch.equal(ic, image)  # colour touches the image only
    with pytest.raises(ConfigError, match="unknown transform.*'rotate'"):
        parse_policy("color,rotate")
    assert diff_augment(label, image, ()) == (label, image)


# ----------------------------------------------------------------------------- training + inference
@pytest.fixture(scope="module")
def crops(chula_root, tmp_path_factory):
    return make_crops_dataset(chula_root, tmp_path_factory.mktemp("unet") / "crops")


class Stop(Exception):
    pass


def test_train_stop_resume_export_and_translate(crops, tmp_path) -> None:
    out = str(tmp_path / "run")

    def stop(epoch: int, metrics: dict) -> None:
        raise Stop

    with pytest.raises(Stop):
        train(TINY, crops, out, on_epoch=stop, log=lambda m: None)
    first = load_state(latest_checkpoint(out))
    assert first["format"] == "rbcray-unet-wgangp-state" and first["epoch"] == 1 and first["step"] == 2
    logs: list[str] = []
    summary = train(TINY, crops, out, log=logs.append)
    assert any("resuming" in m for m in logs) and any(m.startswith("epoch 2/2 steps=4 D_loss=") for m in logs)
    h = summary["history"]
    assert [e["epoch"] for e in h] == [1, 2]
    for k in ("D_loss", "D_wdist", "D_gp", "D_r1", "G_adv", "G_L1"):
        assert np.isfinite(h[1][k]), k
    manifest = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    assert manifest["format"] == "rbcray-unet-wgangp" and manifest["weights"] == "ema" and manifest["resumed_at_epochs"] == [1]
    assert set(manifest["files"]) == {"generator.pt", "config.json", "stats.json"}
    grid = decode_png((tmp_path / "run" / "samples" / "epoch_0002.png").read_bytes())
    assert grid.shape == (2 * 64 + 4, 3 * 64 + 2 * 4, 3)

    fam, _, _ = open_model(out)
    assert fam.name == "unet-wgangp"
    tr = load_translator(out, device="cpu")  # the family-neutral entry point
    assert isinstance(tr, UNetTranslator) and isinstance(tr, Translator) and tr.num_styles == 0
    a = read_instances(crops / "instances" / "crop1.png")
    b = a[:40, :50]
    imgs = tr.translate([a, b, a], None, seeds=[(1, 0), (1, 1), (1, 0)])
    assert [i.shape for i in imgs] == [(64, 64, 3), (40, 50, 3), (64, 64, 3)] and imgs[0].dtype == np.uint8
    assert np.array_equal(imgs[0], imgs[2]) and np.array_equal(tr.translate([a], None, [(1, 0)])[0], imgs[0])
    assert not np.array_equal(tr.translate([a], None, [(1, 5)])[0], imgs[0])  # the seed draws the noise
    (img, styles), = tr.translate_with_styles([a], [None], [3])
    assert (styles == -1).all() and len(styles) == a.max() + 1
    with pytest.raises(Exception, match="no style clusters"):
        tr.translate([a], None, [1], style=0)
    with pytest.raises(DataError, match="2-D integer array"):
        tr.translate([a.astype(float)], None, [1])


def test_cli_train_unet_and_bad_flags(crops, tmp_path, capsys) -> None:
    cfg = tmp_path / "tiny.json"
    from rbcray.config import to_dict

    cfg.write_text(json.dumps(to_dict(replace(TINY, epochs=1))))
    base = ["train", "--model", "unet-wgangp", "--data", str(crops), "--config", str(cfg), "--no-ray", "--threads", "1"]
    assert main(base + ["--out", str(tmp_path / "run")]) == 0
    assert "trained U-Net WGAN-GP" in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "model" / "model.json").read_text())["epoch"] == 1
    for extra, msg in ((["--stage1-epochs", "3"], "unknown config key(s) 'stage1_epochs'"),
                       (["--no-vgg-loss"], "unknown config key(s) 'vgg_loss'")):
        capsys.readouterr()
        assert main(base + ["--out", str(tmp_path / "o2"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and "\n" not in err and not (tmp_path / "o2").exists()
    assert main(["train", "--model", "gan9000", "--data", str(crops), "--out", str(tmp_path / "o3")]) == 2
    assert "unknown model family 'gan9000'" in capsys.readouterr().err
    # a pix2pixHD config given to the unet family, and resuming a run of the other family, are refused
    assert main(["train", "--model", "pix2pixhd", "--data", str(crops), "--config", str(cfg), "--out", str(tmp_path / "o4"),
                 "--no-ray"]) == 2
    assert "unknown config key(s)" in capsys.readouterr().err
    # packaged presets exist and load for both families
    from rbcray.cli.train_cmds import resolve_config

    for fam in ("pix2pixhd", "unet-wgangp"):
        for preset in ("demo", "paper"):
            assert family_of_config(resolve_config(preset, fam)).name == fam
    assert resolve_config("paper", "unet-wgangp").n_critic == 5


def test_both_families_generate_through_the_same_engine(inputs, tmp_path) -> None:
    """The session's tiny pix2pixHD and a tiny unet-wgangp trained on the same annotated images go
    through the same ``rbcray generate``; both outputs verify."""
    stats = json.loads((Path(inputs["checkpoint"]) / "model" / "stats.json").read_text())
    unet = str(tmp_path / "unet")
    train(replace(TINY, epochs=1), stats["dataset"], unet, log=lambda m: None)
    outs = {}
    for name, ck in (("pix2pixhd", inputs["checkpoint"]), ("unet-wgangp", unet)):
        out = tmp_path / f"gen-{name}"
        argv = ["generate", "--checkpoint", ck, "--shapes", inputs["shapes"], "--stats", inputs["stats"], "--num-samples", "4",
                "--out", str(out), "--width", "128", "--height", "96", "--shard-size", "2", "--local", "--no-progress"]
        assert main(argv) == 0
        assert verify_output(str(out))["problems"] == []
        from rbcray.evaluate.realism import source_family

        assert json.loads((out / "_manifest.json").read_text())["family"] == name == source_family(str(out))
        outs[name] = pd.concat(pd.read_parquet(p) for p in sorted(out.glob("train-*.parquet")))
    p, u = outs["pix2pixhd"], outs["unet-wgangp"]
    assert p["instance_mask"].tolist() == u["instance_mask"].tolist()  # same masks (same seed), other images
    from rbcray.generate.shards import read_constants

    shas = [read_constants(str(sorted((tmp_path / f"gen-{n}").glob("train-*.parquet"))[0]))["checkpoint_sha256"] for n in outs]
    assert shas[0] != shas[1]
    for df in (p, u):
        img = decode_png(df["image"].iloc[0]["bytes"])
        assert img.shape == (96, 128, 3) and img.std() > 1
    assert all((np.asarray(s) == -1).all() for s in u["styles"])
    assert not any((np.asarray(s) == -1).any() for s in p["styles"])


def test_ray_train_two_workers_same_layout(ray_session, crops, tmp_path) -> None:
    """``rbcray train --model unet-wgangp`` on Ray Train: two workers with hand-synchronised
    gradients end with one model; checkpoints and model folder as with pix2pixHD."""
    from rbcray.distributed.train import train_distributed

    out = str(tmp_path / "run")
    cfg = replace(TINY, samples_per_epoch=8, epochs=2)
    res = train_distributed(cfg, crops, out, workers=2, cpus_per_worker=1, max_failures=0)
    assert res["metrics"]["epoch"] == 2 and res["metrics"]["images"] == 8  # both ranks' crops counted
    state = load_state(latest_checkpoint(out))
    assert state["epoch"] == 2 and state["step"] == 4  # 8 crops / (2 workers x batch 2) per epoch
    manifest = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    assert manifest["format"] == "rbcray-unet-wgangp" and manifest["epoch"] == 2
    inst = read_instances(crops / "instances" / "crop2.png")
    a, b = load_translator(out, device="cpu").translate([inst, inst], None, seeds=[3, 3])
    assert a.shape == (64, 64, 3) and np.array_equal(a, b)


def test_val_scoring_keeps_the_best_model_cli(crops, tmp_path, capsys) -> None:
    """``rbcray encoder`` then ``rbcray train --val-data --val-encoder``: scores every epoch, the best
    model is a loadable model folder under OUT/best, scores in OUT/val.json."""
    from rbcray.config import to_dict

    enc = tmp_path / "enc.pt"
    assert main(["encoder", "--data", str(crops), "--out", str(enc), "--steps", "20", "--crop", "48"]) == 0
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(to_dict(replace(TINY, epochs=2))))
    out = tmp_path / "run"
    assert main(["train", "--model", "unet-wgangp", "--data", str(crops), "--config", str(cfg), "--no-ray", "--threads", "1",
                 "--out", str(out), "--val-data", str(crops), "--val-encoder", str(enc), "--val-every", "1"]) == 0
    hist = json.loads((out / "val.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2] and hist[0]["best"]
    for h in hist:
        assert 0 <= h["dice"] <= 1 and h["dice_ci"][0] <= h["dice"] <= h["dice_ci"][1] and np.isfinite(h["kid"])
    best = max(hist, key=lambda h: h["dice"])
    m = json.loads((out / "best" / "model" / "model.json").read_text())
    assert m["epoch"] == best["epoch"] and m["format"] == "rbcray-unet-wgangp"
    assert load_translator(str(out / "best"), device="cpu").translate([read_instances(crops / "instances" / "crop1.png")],
                                                                      None, [1])[0].shape == (64, 64, 3)
    capsys.readouterr()
    assert main(["train", "--model", "unet-wgangp", "--data", str(crops), "--config", str(cfg), "--no-ray",
                 "--out", str(tmp_path / "o2"), "--val-data", str(crops)]) == 2
    assert "--val-data and --val-encoder go together" in capsys.readouterr().err


def test_quality_gate_is_deterministic_and_fills_the_count(inputs, tmp_path, capsys) -> None:
    """``--quality-encoder`` scores every row; ``--min-quality`` replaces the low ones by further
    candidates, the same whatever the shard size, and the manifest reports the yield."""
    stats = json.loads((Path(inputs["checkpoint"]) / "model" / "stats.json").read_text())
    enc = tmp_path / "enc.pt"
    assert main(["encoder", "--data", stats["dataset"], "--out", str(enc), "--steps", "30", "--crop", "64"]) == 0

    def run(name: str, *extra: str) -> tuple[pd.DataFrame, dict]:
        out = tmp_path / name
        assert main(["generate", "--checkpoint", inputs["checkpoint"], "--shapes", inputs["shapes"], "--stats", inputs["stats"],
                     "--num-samples", "6", "--out", str(out), "--width", "96", "--height", "64", "--local", "--no-progress",
                     "--quality-encoder", str(enc), *extra]) == 0
        assert verify_output(str(out))["problems"] == []
        df = pd.concat(pd.read_parquet(p) for p in sorted(out.glob("train-*.parquet"))).set_index("sample_id")
        return df, json.loads((out / "_manifest.json").read_text())["quality"]

    scored, q0 = run("scored", "--shard-size", "6")
    assert scored["quality"].between(0, 1).all() and (scored["attempts"] == 1).all() and q0["yield"] == 1.0
    t = float(np.median(scored["quality"]))
    gated, q1 = run("gated", "--shard-size", "2", "--min-quality", str(t), "--max-attempts", "4")
    again, q2 = run("gated-again", "--shard-size", "4", "--min-quality", str(t), "--max-attempts", "4")
    assert len(gated) == 6 and gated["image"].tolist() == again["image"].tolist() and q1 == {**q2}
    low = scored["quality"] < t
    assert low.any() and (gated.loc[~low, "image"] == scored.loc[~low, "image"]).all()  # accepted ones stay
    assert (gated.loc[low, "attempts"] > 1).all()
    kept_low = gated["quality"] < t
    assert (gated.loc[kept_low, "attempts"] == 5).all()  # only after every candidate failed
    assert q1["candidates"] == int(gated["attempts"].sum()) and q1["yield"] == pytest.approx((6 - kept_low.sum()) / q1["candidates"])
    assert q1["below_min_quality"] == int(kept_low.sum())
    capsys.readouterr()
    assert main(["generate", "--checkpoint", inputs["checkpoint"], "--shapes", inputs["shapes"], "--stats", inputs["stats"],
                 "--num-samples", "2", "--out", str(tmp_path / "x"), "--min-quality", "0.5", "--local"]) == 2
    assert "--min-quality needs --quality-encoder" in capsys.readouterr().err


def test_unet_trains_on_one_split_role_and_records_it(crops, tmp_path) -> None:
    from rbcray.data.splits import Splits

    splits = Splits(dataset="chula-crops", roles={"train": ("crop1",), "val": ("crop2",), "test": ()})
    out = str(tmp_path / "run")
    train(replace(TINY, epochs=1), crops, out, splits=splits, role="train", log=lambda m: None)
    prov = json.loads((tmp_path / "run" / "model" / "model.json").read_text())["provenance"]
    assert prov["split"] == "train" and prov["stems"] == ["crop1"] and prov["splits_sha256"] == splits.sha256()
    with pytest.raises(DataError, match="was trained on other images"):
        train(replace(TINY, epochs=2), crops, out, log=lambda m: None)  # the whole folder now: refused
