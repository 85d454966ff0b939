"""Training checkpoints are hash-checked; a corrupt latest one is passed over for the previous good one."""

from __future__ import annotations

import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402
from _p2p_data import make_crops_dataset  # noqa: E402

from rbcray.config import replace  # noqa: E402
from rbcray.errors import DataError  # noqa: E402
from rbcray.models.pix2pixhd.checkpoint import STATE_HASH_FILE, load_state  # noqa: E402
from rbcray.models.pix2pixhd.model import Pix2PixHDConfig  # noqa: E402
from rbcray.train.pix2pixhd import Pix2PixHDTrainConfig, checkpoint_folders, load_latest_state, train  # noqa: E402

torch.set_num_threads(1)

TINY = Pix2PixHDTrainConfig(
    model=Pix2PixHDConfig(ngf=4, ndf=4, nef=4, n_down_global=3, n_blocks_global=1, n_blocks_local=1, n_down_E=3),
    crop_size=(64, 64), stage1_epochs=2, stage2_epochs=1, freeze_global_epochs=1, vgg_loss=False,
    samples_per_epoch=2, batch_size=2, style_clusters=2, checkpoint_every=1, keep_checkpoints=2,
)


@pytest.fixture(scope="module")
def crops(chula_root, tmp_path_factory):
    return make_crops_dataset(chula_root, tmp_path_factory.mktemp("ckpt") / "crops")


def _flip_one_byte(path) -> None:
    """A silent corruption (bit rot, a bad copy) that still leaves a readable zip: one byte of
    tensor data changed in the middle of the file."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flipped byte", "truncated"])
def test_corrupt_latest_checkpoint_resumes_from_the_previous_one(crops, tmp_path, damage) -> None:
    out = str(tmp_path / "run")
    first = replace(TINY, stage1_epochs=1, stage2_epochs=1)  # 2 of the 3 epochs, then "the worker dies"
    train(first, crops, out, log=lambda m: None, export=False)
    folders = checkpoint_folders(out)
    assert [f.rsplit("/", 1)[-1] for f in folders] == ["epoch_0002", "epoch_0001"]
    latest = tmp_path / "run" / "checkpoints" / "epoch_0002"
    assert (latest / STATE_HASH_FILE).read_text().split()[0] == __import__("hashlib").sha256(
        (latest / "state.pt").read_bytes()).hexdigest()
    if damage == "truncated":
        (latest / "state.pt").write_bytes((latest / "state.pt").read_bytes()[:5000])
    else:
        _flip_one_byte(latest / "state.pt")
    with pytest.raises(DataError, match="epoch_0002/state.pt: corrupt"):
        load_state(latest)
    logs: list[str] = []
    res = train(TINY, crops, out, log=logs.append)  # the re-run resumes from epoch 1, not 2
    warned = [m for m in logs if m.startswith("warning:")]
    assert len(warned) == 1 and "epoch_0002/state.pt" in warned[0] and "previous checkpoint" in warned[0], logs
    assert any("resuming from" in m and "epoch_0001" in m for m in logs), logs
    assert res["epochs"] == 3
    state = load_state(checkpoint_folders(out)[0])
    assert state["epoch"] == 3 and json.loads(state["resumes"]) == [1]
    manifest = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    assert manifest["epoch"] == 3 and manifest["resumed_at_epochs"] == [1]


def test_every_checkpoint_corrupt_is_an_error_not_a_fresh_start(crops, tmp_path) -> None:
    out = str(tmp_path / "run")
    train(replace(TINY, stage1_epochs=1, stage2_epochs=1), crops, out, log=lambda m: None, export=False)
    for f in (tmp_path / "run" / "checkpoints").iterdir():
        _flip_one_byte(f / "state.pt")
    with pytest.raises(DataError, match="no intact checkpoint \\(2 corrupt"):
        load_latest_state(out, log=lambda m: None)
    with pytest.raises(DataError, match="no intact checkpoint"):
        train(TINY, crops, out, log=lambda m: None)
