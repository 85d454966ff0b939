"""pix2pixHD on Ray Train: two DDP workers learn, survive a lost worker, stop/resume with checkpoints in S3."""

from __future__ import annotations

import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from _p2p_data import make_crops_dataset  # noqa: E402
from faults import kill_once  # noqa: E402

from rbcray import storage  # noqa: E402
from rbcray.cli import main  # noqa: E402
from rbcray.config import replace, to_dict  # noqa: E402
from rbcray.data.formats import read_instances  # noqa: E402
from rbcray.distributed.train import train_distributed  # noqa: E402
from rbcray.errors import RbcrayError  # noqa: E402
from rbcray.models.pix2pixhd.checkpoint import load_state  # noqa: E402
from rbcray.models.pix2pixhd.inference import Pix2PixHDTranslator  # noqa: E402
from rbcray.models.pix2pixhd.model import Pix2PixHDConfig  # noqa: E402
from rbcray.train.pix2pixhd import Pix2PixHDTrainConfig, latest_checkpoint  # noqa: E402
from rbcray.train.pix2pixhd_data import collate  # noqa: E402
from rbcray.train.pix2pixhd_loop import Trainer, open_dataset  # noqa: E402

torch.set_num_threads(1)

# Global generator only, whole 64x64 crops, no flips: every step sees the same two real crops.
TINY = Pix2PixHDTrainConfig(
    model=Pix2PixHDConfig(ngf=4, ndf=4, nef=4, n_down_global=3, n_blocks_global=1, n_local_enhancers=0, n_down_E=3),
    crop_size=None, flip=False, stage1_epochs=6, stage2_epochs=0, vgg_loss=False, lr=1e-3, decay_fraction=0.0,
    samples_per_epoch=16, batch_size=1, style_clusters=3, checkpoint_every=2, grid_samples=2,
)


@pytest.fixture(scope="module")
def crops(chula_root, tmp_path_factory):
    return make_crops_dataset(chula_root, tmp_path_factory.mktemp("p2p-ray") / "crops")


def reconstruction_l1(trainer: Trainer) -> float:
    """Mean |G(E(real)) - real| over the two crops."""
    inst, classes, real = collate([trainer.loader(0).dataset[i] for i in range(2)])
    with torch.no_grad():
        fake = trainer.model(inst, classes, real)
    return float((fake - real).abs().mean())


def test_two_workers_learn_and_recover_from_a_lost_worker(ray_session, crops, tmp_path, monkeypatch) -> None:
    out = str(tmp_path / "run")
    marker = tmp_path / "killed-once"
    before = reconstruction_l1(Trainer(TINY, open_dataset(crops), device="cpu"))
    # worker 1 dies after epoch 3 (checkpoints: 2, 4, 6)
    res = train_distributed(TINY, crops, out, workers=2, cpus_per_worker=1, max_failures=1, fault_hook=kill_once((1, 3), marker))
    assert marker.exists()  # the worker really died
    state = load_state(latest_checkpoint(out))
    assert state["epoch"] == 6 and json.loads(state["resumes"]) == [2]  # restarted from the epoch-2 checkpoint
    assert res["metrics"]["epoch"] == 6 and res["metrics"]["images"] == 16  # both ranks' crops counted
    trained = Trainer(TINY, open_dataset(crops), device="cpu")
    trained.load_state_dict(state)
    after = reconstruction_l1(trained)
    assert after < 0.8 * before, (before, after)
    manifest = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    assert manifest["epoch"] == 6 and manifest["resumed_at_epochs"] == [2]
    assert sorted(os.listdir(tmp_path / "run" / "samples"))[-1] == "epoch_0006.png"


def test_stop_and_rerun_resumes_from_s3(ray_session, s3_server, crops, tmp_path, monkeypatch) -> None:
    out = f"s3://{s3_server()}/runs/p2p"
    cfg = replace(TINY, stage1_epochs=3, checkpoint_every=1)
    cfg_file = tmp_path / "tiny.json"
    cfg_file.write_text(json.dumps(to_dict(cfg)))
    argv = ["train", "--data", str(crops), "--out", out, "--config", str(cfg_file), "--workers", "1", "--no-vgg-loss"]
    # the run stops after epoch 1 and may not restart: the CLI says how to continue
    with pytest.raises(RbcrayError, match="failed after 0 restart.*re-run the same command to resume"):
        train_distributed(cfg, crops, out, workers=1, max_failures=0, fault_hook=kill_once((0, 1), tmp_path / "stopped"))
    assert storage.exists(storage.join(out, "checkpoint_epoch_0001", "state.pt"))
    assert not storage.exists(storage.join(out, "model", "model.json"))
    assert main(argv) == 0  # the same command again: resumes at epoch 1 from the S3 checkpoint
    manifest = json.loads(storage.read_bytes(storage.join(out, "model", "model.json")))
    assert manifest["epoch"] == 3 and manifest["resumed_at_epochs"] == [1]
    tr = Pix2PixHDTranslator.load(out, device="cpu")
    inst = read_instances(crops / "instances" / "crop1.png")
    a, b = tr.translate([inst, inst], None, seeds=[3, 3])
    assert a.shape == (64, 64, 3) and np.array_equal(a, b)
