"""``rbcray evaluate`` end to end: bad configs fail before training; a tiny sweep runs through Ray
Tune, writes its table locally and to S3 (loopback server), and a re-run resumes."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import yaml
from eval_fixtures import make_chula_dataset, write_shards

from rbcray import storage
from rbcray.cli import main


@pytest.fixture(scope="module")
def data(tmp_path_factory, chula_root) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sweepdata")
    return {
        "real": make_chula_dataset(chula_root, root / "chula", 6),
        "shards": write_shards(chula_root, root / "shards", 4, per_shard=2),
    }


def config(data: dict[str, Path], **over) -> dict:
    cfg = {
        "name": "tiny",
        "datasets": [{"name": "chula", "real": str(data["real"]), "synthetic": str(data["shards"]), "scale": 0.25, "n_test": 2}],
        "models": [{"label": "FCN-8s", "model": "fcn8s", "dataset": "chula", "params": {"width": 4, "fc_channels": 16},
                    "train": {"epochs": 2, "steps_per_epoch": 2, "batch_size": 2, "crop": 64}}],
        "regimes": ["RD", "RD+SD"],
        "n_real": 2, "total": 4, "bootstrap": 50,
        "resources": {"cpu": 0.5},
        "realism": {"max_images": 8, "epochs": 1, "max_crops_per_image": 2, "encoder_steps": 2, "encoder_crop": 32, "n_boot": 10, "n_perm": 10, "kid_subsets": 2},
    }
    cfg.update(over)
    return cfg


def write(tmp_path: Path, cfg: dict, name: str = "sweep.yaml") -> str:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


def model(**over) -> dict:
    m = {"label": "FCN-8s", "model": "fcn8s", "dataset": "chula", "params": {"width": 4, "fc_channels": 16},
         "train": {"epochs": 1, "crop": 64}}
    m.update(over)
    return m


BAD = {
    "unknown model": (lambda d, t: config(d, models=[model(model="fcn9s")]), "unknown model 'fcn9s'"),
    "unknown regime": (lambda d, t: config(d, regimes=["RD", "RD+GAN"]), "unknown regime 'RD+GAN'"),
    "unknown key": (lambda d, t: config(d, seedz=[1]), "unknown config key(s) 'seedz'"),
    "bad model param": (lambda d, t: config(d, models=[model(params={"widht": 4})]), "unknown config key(s) 'widht'"),
    "counts larger than the data": (lambda d, t: config(d, n_real=5, total=6), "but the dataset holds only 6 images"),
    "too few synthetic": (lambda d, t: config(d, total=20), "need 18 synthetic samples but"),
    "missing shards": (lambda d, t: config(d, datasets=[{**config(d)["datasets"][0], "synthetic": str(t / "none")}]),
                       "synthetic shard folder not found"),
    "no synthetic source": (lambda d, t: config(d, datasets=[{**config(d)["datasets"][0], "synthetic": None}]),
                            "needs synthetic data but dataset 'chula' has no 'synthetic' source"),
    "masks needed": (lambda d, t: config(d, datasets=[{"name": "chula", "real": "bccd-txl-pbc"}], regimes=["RD"]),
                     "needs instance masks but dataset 'chula'"),
    "crop too large": (lambda d, t: config(d, models=[model(train={"crop": 256})]), "smaller than the training crop 256"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_configs_fail_before_training(case, data, tmp_path, capsys):
    make, expected = BAD[case]
    out = tmp_path / "out"
    rc = main(["evaluate", "--config", write(tmp_path, make(data, tmp_path)), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("rbcray evaluate: error:") and "\n" not in err and expected in err, err
    assert not out.exists()  # nothing trained, nothing written


def test_incomplete_shards_are_refused(data, tmp_path, chula_root, capsys):
    shards = write_shards(chula_root, tmp_path / "partial", 4, manifest=False)
    cfg = config(data, datasets=[{**config(data)["datasets"][0], "synthetic": str(shards)}])
    assert main(["evaluate", "--config", write(tmp_path, cfg), "--out", str(tmp_path / "o")]) == 2
    assert "no _manifest.json" in capsys.readouterr().err


def test_check_only(data, tmp_path, capsys):
    assert main(["evaluate", "--config", write(tmp_path, config(data)), "--out", str(tmp_path / "o"), "--check"]) == 0
    assert "config OK: 2 trials" in capsys.readouterr().out
    assert not (tmp_path / "o").exists()


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(text.splitlines()))


def split_config(data: dict[str, Path], tmp_path: Path, **over) -> dict:
    """The tiny sweep on a split file: 2 RD subsets, validation-based selection, a learning curve."""
    from rbcray.data.splits import make_splits, save_splits

    stems = sorted(p.stem for p in (data["real"] / "images").iterdir())
    save_splits(make_splits(stems, dataset="chula", val=0.2, test=0.35, seed=0), tmp_path / "splits.json")
    cfg = config(data, rd_subsets=[0, 1], learning_curve={"model": "FCN-8s", "sizes": [1, 2]}, **over)
    cfg["datasets"][0].update(splits=str(tmp_path / "splits.json"), n_test=None, n_val=1)
    cfg["models"][0]["train"]["val_every"] = 1
    return cfg


@pytest.mark.slow
def test_tiny_sweep_end_to_end_and_resume(ray_session, data, tmp_path, capsys):
    out = tmp_path / "out"
    cfg_path = write(tmp_path, split_config(data, tmp_path))
    assert main(["evaluate", "--config", cfg_path, "--out", str(out)]) == 0
    first = capsys.readouterr().out
    # 2 regimes x 2 subsets, then the curve's RD and RD+SD at 1 real image x 2 subsets
    assert "running 8 trials on Ray Tune" in first
    text = (out / "table.csv").read_text()
    assert text.splitlines()[0] == "model,regime,metric,mean,ci_low,ci_high,n_test"
    rows = read_csv(text)
    assert [(r["model"], r["regime"], r["metric"], r["n_test"]) for r in rows] == [
        ("FCN-8s", "RD", "dice", "2"), ("FCN-8s", "RD+SD", "dice", "2")]
    for r in rows:
        assert 0 <= float(r["ci_low"]) <= float(r["mean"]) <= float(r["ci_high"]) <= 1
    md = (out / "table.md").read_text()
    assert "| RD+SD |" in md and "DERIVED" in md and "Image realism" in md
    assert (out / "table.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "report.json").read_text())
    assert {"table.md", "table.csv", "table.png", "curve.png"} <= set(report["files"])
    sp = report["splits"]["chula"]
    roles = sp["split_file"]["roles"]
    assert not set(roles["train"]) & (set(roles["val"]) | set(roles["test"])) and not set(roles["val"]) & set(roles["test"])
    assert sorted(sp["test"]) == sorted(roles["test"]) and set(sp["rd_subsets"]["1"]) <= set(roles["train"])
    syn = report["provenance"]["chula"]["synthetic"]
    assert syn["inputs"]["manifest"]["generator"]["stems"] and not syn["allow_overlap"] and not syn["overlaps"]
    assert [(c["a"], c["b"]) for c in report["contrasts"]["FCN-8s"]] == [("RD+SD", "RD")]
    assert [w["n_real"] for w in report["learning_curve"]["worth"]] == [1, 2]
    assert "Splits and leakage" in md and "no overlap" in md
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 8 and all(len(r["records"]) == 2 for r in results)
    assert all(r["selected_epoch"] is not None and len(r["val"]) == 2 for r in results)
    # the partial report of a finished sweep is the same table
    part = tmp_path / "part"
    assert main(["evaluate", "--config", cfg_path, "--out", str(part), "--storage", str(out / "tune"), "--partial"]) == 0
    assert (part / "table.csv").read_text() == text and "Partial: 8 of 8 trials" in (part / "table.md").read_text()
    # re-running the same sweep resumes it: both trials are done, the table comes out the same
    assert main(["evaluate", "--config", cfg_path, "--out", str(out)]) == 0
    assert "resuming the sweep" in capsys.readouterr().out
    assert (out / "table.csv").read_text() == text
    # the same storage with a different config is refused, before training
    changed = write(tmp_path, split_config(data, tmp_path, bootstrap=60), "changed.yaml")
    assert main(["evaluate", "--config", changed, "--out", str(out)]) == 2
    assert "different config" in capsys.readouterr().err


def test_tiny_sweep_to_s3(ray_session, s3_server, data, tmp_path, monkeypatch):
    """Real dataset and synthetic shards read from S3 (the shards by Ray Data); table, Tune
    results and checkpoints written to S3."""
    monkeypatch.setenv("RBCRAY_CACHE_DIR", str(tmp_path / "cache"))
    bucket = s3_server()
    shards, real = f"s3://{bucket}/generated", f"s3://{bucket}/chula"
    for f in sorted(data["shards"].iterdir()):
        storage.write_bytes(f"{shards}/{f.name}", f.read_bytes())
    for f in sorted(p for p in data["real"].rglob("*") if p.is_file()):
        storage.write_bytes(f"{real}/{f.relative_to(data['real']).as_posix()}", f.read_bytes())
    uri = f"s3://{bucket}/eval"
    cfg = config(data, regimes=["RD+SD"], realism={"enabled": False}, keep_weights=True,
                 datasets=[{**config(data)["datasets"][0], "real": real, "synthetic": shards}])
    assert main(["evaluate", "--config", write(tmp_path, cfg), "--out", uri]) == 0
    names = storage.listdir(uri)
    assert {"table.md", "table.csv", "table.png", "report.json", "tune"} <= set(names)
    rows = read_csv(storage.read_bytes(f"{uri}/table.csv").decode())
    assert [r["regime"] for r in rows] == ["RD+SD"]
    assert f"{shards}: generated Parquet shards" in storage.read_bytes(f"{uri}/table.md").decode()
    assert "tiny" in storage.listdir(f"{uri}/tune")  # Tune's experiment (results, checkpoints) on S3
    trial_dir = next(n for n in storage.listdir(f"{uri}/tune/tiny") if n.startswith("FCN-8s-RD-SD-n2-k0-s0_"))
    ckpts = [n for n in storage.listdir(f"{uri}/tune/tiny/{trial_dir}") if n.startswith("checkpoint_")]
    assert {"trial.json", "model.pt"} <= set(storage.listdir(f"{uri}/tune/tiny/{trial_dir}/{ckpts[-1]}"))


def trial_workers() -> list[int]:
    """PIDs of Tune function-trainable actors started by this test process's own Ray instance."""
    parent: dict[int, int] = {}
    title: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                title[int(d.name)] = (d / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except (OSError, IndexError, ValueError):
                continue
    me = os.getpid()

    def mine(pid: int) -> bool:
        while pid > 1:
            pid = parent.get(pid, 0)
            if pid == me:
                return True
        return False

    return [p for p, t in title.items() if t.startswith("ray::ImplicitFunc") and mine(p)]


def test_killed_trial_resumes_from_its_checkpoint(ray_session, data, tmp_path):
    """Kill a trial's worker after its first epoch checkpoint: Tune restarts it from that
    checkpoint and the result equals an uninterrupted run's, exactly."""
    import signal
    import threading
    import time

    train = {"epochs": 12, "steps_per_epoch": 4, "batch_size": 2, "crop": 64, "checkpoint_every": 1}
    cfg = config(data, regimes=["RD"], realism={"enabled": False},
                 models=[model(train=train)])
    killed: list[int] = []
    out = tmp_path / "killed"

    def killer() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            if any((out / "tune" / "tiny").glob("*/checkpoint_000000")):
                for pid in trial_workers():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                return
            time.sleep(0.02)

    t = threading.Thread(target=killer)
    t.start()
    assert main(["evaluate", "--config", write(tmp_path, cfg), "--out", str(out)]) == 0
    t.join()
    assert killed, "the trial finished before it could be killed"
    assert list((out / "tune" / "tiny").glob("*/error.txt"))  # Tune saw the failure and retried
    straight = tmp_path / "straight"
    assert main(["evaluate", "--config", write(tmp_path, cfg, "s.yaml"), "--out", str(straight)]) == 0
    a = json.loads((out / "results.json").read_text())[0]
    b = json.loads((straight / "results.json").read_text())[0]
    assert a["losses"] == b["losses"] and a["value"] == b["value"] and len(a["losses"]) == 12
