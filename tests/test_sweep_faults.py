"""An evaluation sweep whose trial keeps dying: the sweep ends in one line, and running it again
resumes it (the finished trial is not re-run, the killed one continues from its last epoch
checkpoint) and writes the complete report, equal to an uninterrupted sweep's."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from eval_fixtures import make_chula_dataset, write_shards

from rbcray.errors import RbcrayError
from rbcray.evaluate.config import sweep_from_dict


@pytest.fixture(scope="module")
def data(tmp_path_factory, chula_root) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sweepfault")
    return {"real": make_chula_dataset(chula_root, root / "chula", 6), "shards": write_shards(chula_root, root / "shards", 4, per_shard=2)}


def _cfg(data: dict[str, Path]):
    return sweep_from_dict({
        "name": "faults",
        "datasets": [{"name": "chula", "real": str(data["real"]), "synthetic": str(data["shards"]), "scale": 0.25, "n_test": 2}],
        "models": [{"label": "FCN-8s", "model": "fcn8s", "dataset": "chula", "params": {"width": 4, "fc_channels": 16},
                    "train": {"epochs": 8, "steps_per_epoch": 2, "batch_size": 2, "crop": 64, "checkpoint_every": 1}}],
        "regimes": ["RD", "RD+SD"], "n_real": 2, "total": 4, "bootstrap": 50, "resources": {"cpu": 0.5},
        "realism": {"enabled": False},
    })


def _kill_rd_sd():
    """A hook under which every attempt of the RD+SD trial dies after its first new epoch
    checkpoint (Tune's retries run out). A closure, so Ray pickles it by value."""

    def hook(label: str, epoch: int) -> None:
        import os

        if " / RD+SD / " in label and epoch >= 1:
            os._exit(1)

    return hook


def _recorder(path: str):
    def hook(label: str, epoch: int) -> None:
        with open(path, "a") as f:
            f.write(json.dumps([label, epoch]) + "\n")

    return hook


@pytest.mark.slow
def test_killed_trial_then_rerun_resumes_the_sweep(ray_session, data, tmp_path) -> None:
    from rbcray.distributed.sweep import run_sweep

    out = tmp_path / "out"
    quiet = lambda m: None  # noqa: E731
    with pytest.raises(RbcrayError, match=r"1 of 2 trials failed \(first: FCN-8s / RD\+SD .*run the same command again to resume"):
        run_sweep(_cfg(data), str(out), log=quiet, fault_hook=_kill_rd_sd())
    assert not (out / "table.csv").exists() and not (out / "results.json").exists()  # no half report
    calls = tmp_path / "calls.jsonl"
    run_sweep(_cfg(data), str(out), log=quiet, fault_hook=_recorder(str(calls)))
    seen = [json.loads(line) for line in calls.read_text().splitlines()]
    # only the killed trial ran again, and from its checkpoint (epochs 0 and 1 were not redone)
    assert seen and all(" / RD+SD / " in label for label, _ in seen) and min(e for _, e in seen) >= 2
    rows = list(csv.DictReader((out / "table.csv").read_text().splitlines()))
    assert [(r["model"], r["regime"]) for r in rows] == [("FCN-8s", "RD"), ("FCN-8s", "RD+SD")]
    resumed = {r["regime"]: r for r in json.loads((out / "results.json").read_text())}
    straight = tmp_path / "straight"
    run_sweep(_cfg(data), str(straight), log=quiet)
    clean = {r["regime"]: r for r in json.loads((straight / "results.json").read_text())}
    assert set(resumed) == set(clean) == {"RD", "RD+SD"}
    for regime in clean:  # the same training curve and test records as an uninterrupted sweep
        assert resumed[regime]["losses"] == clean[regime]["losses"] and resumed[regime]["value"] == clean[regime]["value"]
        assert resumed[regime]["records"] == clean[regime]["records"]
    assert (out / "table.csv").read_text() == (straight / "table.csv").read_text()
