"""UNIT training in rounds: a restored run continues exactly; Ray Train trains, survives a lost
worker and resumes from its run folder (rbcray.distributed.train_unit)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from rbcray.data.cells import CellCrops  # noqa: E402
from rbcray.errors import DataError  # noqa: E402
from rbcray.models.unit.networks import UNITConfig  # noqa: E402
from rbcray.train.unit import (  # noqa: E402
    UNITRun,
    UNITTrainConfig,
    latest_run_state,
    load_run_state,
    load_unit,
    save_run_state,
    train_unit,
)

torch.set_num_threads(1)

TINY = UNITTrainConfig(model=UNITConfig(dim=4, n_res=1, dis_dim=4, dis_layers=1), target=4, batch_size=2,
                       iterations=6, round_iterations=2, max_seconds=600.0)


def crops(n: int, seed: int, size: int = 16) -> CellCrops:
    """``n`` synthetic cell crops: a dark disc of random radius and tone on a light background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    out = np.full((n, 4, size, size), 230, np.uint8)
    for i in range(n):
        disc = np.hypot(yy, xx) < rng.uniform(3, 6)
        out[i, :3, disc] = rng.integers(90, 180, 3)
        out[i, 3] = disc * 255
    return CellCrops(out, np.zeros(n, int), np.zeros(n, int), np.arange(n), ("s",))


def params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_restored_run_continues_exactly(tmp_path) -> None:
    a, b = crops(12, 0), crops(10, 1)
    whole = UNITRun(a, b, TINY)
    while not whole.done:
        whole.run_round()
    first = UNITRun(a, b, TINY)
    first.run_round()
    first.run_round()  # 4 of 6 iterations, then the process "stops"
    save_run_state(str(tmp_path / "ck"), first.state_dict())
    again = UNITRun(a, b, TINY)
    again.load_state_dict(load_run_state(str(tmp_path / "ck")))
    assert again.iteration == 4 and again.resumes == [4]
    while not again.done:
        again.run_round()
    assert again.iteration == whole.iteration == 6
    for p, q in zip(params(whole.model), params(again.model), strict=True):
        assert torch.equal(p, q)
    for o1, o2 in ((whole.model.opt_gen, again.model.opt_gen), (whole.model.opt_dis, again.model.opt_dis)):
        s1, s2 = o1.state_dict()["state"], o2.state_dict()["state"]
        assert all(torch.equal(s1[k]["exp_avg_sq"], s2[k]["exp_avg_sq"]) for k in s1)
    # the in-process path is the same rounds: same weights as the uninterrupted run
    model, hist = train_unit(a, b, TINY)
    assert hist[-1]["iteration"] == 6
    for p, q in zip(params(whole.model), params(model), strict=True):
        assert torch.equal(p, q)
    # a different rank draws other batches: different weights
    other = UNITRun(a, b, TINY, rank=1)
    while not other.done:
        other.run_round()
    assert not all(torch.equal(p, q) for p, q in zip(params(whole.model), params(other.model), strict=True))


def test_state_refuses_another_config_and_corruption(tmp_path) -> None:
    from rbcray.config import replace

    a, b = crops(12, 0), crops(10, 1)
    run = UNITRun(a, b, TINY)
    run.run_round()
    folder = str(tmp_path / "checkpoint_iter_0000002")
    save_run_state(folder, run.state_dict())
    longer = UNITRun(a, b, replace(TINY, iterations=10))  # only the stopping rule differs: fine
    longer.load_state_dict(load_run_state(folder))
    assert longer.iteration == 2
    with pytest.raises(DataError, match="different config.*batch_size"):
        UNITRun(a, b, replace(TINY, batch_size=3)).load_state_dict(load_run_state(folder))
    found = latest_run_state(str(tmp_path))
    assert found is not None and found[1]["iteration"] == 2
    with open(os.path.join(folder, "state.pt"), "r+b") as f:
        f.seek(100)
        f.write(b"\0" * 16)
    with pytest.raises(DataError, match="corrupt"):
        load_run_state(folder)
    said: list[str] = []
    with pytest.raises(DataError, match="no intact UNIT checkpoint"):
        latest_run_state(str(tmp_path), said.append)
    assert "corrupt" in said[0]


def test_too_few_cells_is_a_data_error() -> None:
    with pytest.raises(DataError, match="at least batch_size"):
        UNITRun(crops(1, 0), crops(10, 1), TINY)
