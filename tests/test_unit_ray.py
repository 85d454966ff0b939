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


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A toy annotated dataset (normal and target cells told apart by look), its splits and a classifier."""
    from test_morphology_classifier import toy_dataset

    from rbcray.cli import main
    from rbcray.data.dataset import Dataset
    from rbcray.data.splits import make_splits, save_splits

    d = tmp_path_factory.mktemp("unit-ray")
    root = toy_dataset(d / "toy", 12)
    sp = save_splits(make_splits(Dataset.open(root).stems, dataset="toy", val=0.25, test=0.25, seed=0), d / "s.json")
    assert main(["morphology", "train", str(root), "--out", str(d / "clf"), "--splits", str(sp), "--split", "train", "--epochs", "1", "--batch-size", "16", "--threads", "1"]) == 0
    return {"root": str(root), "splits": str(sp), "clf": str(d / "clf")}


@pytest.mark.slow
def test_two_ray_workers_survive_a_lost_worker(ray_session, tmp_path) -> None:
    from faults import kill_once

    from rbcray.distributed.train_unit import train_unit_distributed

    a, b = crops(12, 0), crops(10, 1)
    marker = tmp_path / "killed"
    model, hist = train_unit_distributed(a, b, TINY, str(tmp_path / "run"), workers=2, cpus_per_worker=1, max_failures=1,
                                         fault_hook=kill_once((1, 4), marker), log=lambda m: None)
    assert marker.exists()  # worker 1 really died after iteration 4 (checkpoints at 2, 4, 6)
    state = latest_run_state(str(tmp_path / "run"))[1]
    assert state["iteration"] == hist[-1]["iteration"] == 6
    assert state["resumes"] in ([4], [2])  # restarted from the newest checkpoint Ray had when the worker died
    assert not model.training
    # two workers average their gradients over twice the cells: not the one-process weights
    alone, _ = train_unit(a, b, TINY)
    assert not all(torch.equal(p, q) for p, q in zip(params(alone), params(model), strict=True))


@pytest.mark.slow
def test_cli_ray_to_s3_writes_the_translator_and_a_rerun_resumes(ray_session, s3_server, toy, capsys) -> None:
    from rbcray import storage
    from rbcray.cli import main

    out = f"s3://{s3_server()}/runs/unit-target"
    args = ["morphology", "unit", toy["root"], "--classifier", toy["clf"], "--splits", toy["splits"], "--out", out, "--target", "target",
            "--iterations", "4", "--round-iterations", "2", "--dim", "4", "--threads", "1", "--ray"]
    assert main(args) == 0
    names = set(storage.listdir(out))
    assert {"unit.pt", "unit.json", "figure.png", "smear.png", "scores.json", "checkpoint_iter_0000002", "checkpoint_iter_0000004"} <= names
    model, cfg, meta = load_unit(out)
    assert cfg.model.dim == 4 and cfg.round_iterations == 2 and meta["summary"]["iterations"] == 4
    assert meta["summary"]["trainer"] == {"ray": True, "workers": 1}
    assert "accept09_translated=" in capsys.readouterr().out
    before = load_run_state(storage.join(out, "checkpoint_iter_0000004"))
    # the same command again: the run is complete, nothing is trained, the same weights are written
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "already trained (4 iterations)" in err and "UNIT iteration" not in err
    again, _, meta2 = load_unit(out)
    assert meta2["summary"]["iterations"] == 4 and set(storage.listdir(out)) == names
    for k, v in before["model"].items():
        assert torch.equal(again.state_dict()[k], v)
    # more iterations on the same folder continue from iteration 4
    longer = [*args]
    longer[longer.index("--iterations") + 1] = "6"
    assert main(longer) == 0
    assert "resuming at iteration 4/6" in capsys.readouterr().err
    assert load_unit(out)[2]["summary"]["iterations"] == 6
