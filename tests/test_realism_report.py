"""``rbcray evaluate``'s realism report on constructed data: config validation, report shape,
encoder provenance, and a bad source scoring worse than real vs real."""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_realism_metrics import disc_sample

from rbcray.data.splits import Splits
from rbcray.errors import ConfigError, DataError
from rbcray.evaluate.config import sweep_from_dict
from rbcray.evaluate.data import Sample
from rbcray.evaluate.realism import realism_markdown, realism_report, realism_sources, source_family

torch.set_num_threads(1)

FCN = {"label": "FCN", "model": "fcn8s", "dataset": "chula", "params": {"width": 4, "fc_channels": 16}}
FAST = {"max_images": 12, "epochs": 5, "encoder_steps": 120, "encoder_crop": 48, "n_boot": 30, "n_perm": 30, "kid_subsets": 10,
        "max_crops_per_image": 9}


def sweep(realism: dict, datasets: list[dict] | None = None):
    ds = datasets or [{"name": "chula", "real": "R", "synthetic": "S"}]
    return sweep_from_dict({"datasets": ds, "models": [FCN], "realism": realism})


@pytest.mark.parametrize("realism, datasets, msg", [
    ({"compare": {"real_vs_real": "x"}}, None, "label 'real_vs_real' is reserved"),
    ({"compare": {"a": ""}}, None, "realism.compare.a: expected a path"),
    ({"dataset": "nope"}, None, "realism.dataset 'nope': unknown dataset"),
    ({"compare": {"a": "x"}}, [{"name": "chula", "real": "R", "synthetic": "S"}, {"name": "b", "real": "B"}], "needs realism.dataset"),
    ({"crops_per_image": 4}, None, "unknown config key(s) 'crops_per_image'"),
    ({"crop_factor": 1.0}, None, "crop_factor must be >= 1.5"),
    ({"max_images": 6}, None, "max_images must be >= 8"),
])
def test_bad_realism_configs_are_one_line_errors(realism, datasets, msg) -> None:
    with pytest.raises(ConfigError) as e:
        sweep(realism, datasets)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_which_sources_are_compared(tmp_path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "_manifest.json").write_text(json.dumps({"family": "unet-wgangp"}))
    assert source_family(str(shards)) == "unet-wgangp" and source_family(str(tmp_path)) is None
    assert realism_sources(sweep({}, [{"name": "chula", "real": "R", "synthetic": str(shards)}])) == {"unet-wgangp": str(shards)}
    assert realism_sources(sweep({"compare": {"p": "P", "u": "U"}})) == {"p": "P", "u": "U"}
    assert realism_sources(sweep({"enabled": False})) == {}
    two = [{"name": "b", "real": "B"}, {"name": "chula", "real": "R", "synthetic": "S"}]
    assert sweep({}, two).realism_dataset().name == "chula"  # the first dataset with synthetic data


@dataclass
class FakeReal:
    """A real source of constructed disc images (the plan's ``real``)."""

    n: int

    @property
    def names(self) -> list[str]:
        return [f"r{i}" for i in range(self.n)]

    dataset_name = "constructed"

    def load(self, i: int, scale: float = 1.0) -> Sample:
        s = disc_sample(100 + i)
        return Sample(f"r{i}", "real", s.image, s.instances)


def _setup(n_held: int = 12):
    real = FakeReal(8 + n_held)
    test_idx = tuple(range(8, 8 + n_held))
    plan = SimpleNamespace(name="chula", scale=1.0, real=real, pool=tuple(range(8)), val_idx=(), test_idx=test_idx,
                           splits=Splits(dataset="constructed", roles={"train": tuple(real.names[:8]),
                                                                       "test": tuple(real.names[i] for i in test_idx)}))
    bad = []
    for i in range(12):  # a "generator" that ignores its masks and tints the cells blue
        s = disc_sample(300 + i, shift=12)
        img = s.image.astype(int)
        img[..., 2] = np.clip(img[..., 2] + 80, 0, 255)
        bad.append(Sample(f"synthetic-{i}", "synthetic", img.astype(np.uint8), s.instances))
    bundle = SimpleNamespace(name="chula", val=(), test=tuple(real.load(i) for i in test_idx), synthetic=tuple(bad))
    return plan, bundle


def test_report_bad_source_against_real_vs_real_and_encoder_record(tmp_path) -> None:
    plan, bundle = _setup()
    cfg = sweep(FAST)
    sources = {"bad": {"uri": "S", "family": "unet-wgangp", "count": 12, "overlaps": []}}
    r = realism_report(cfg, plan, bundle, sources, log=lambda m: None)
    assert set(r) == {"real_vs_real", "bad", "_setup"}
    rr, b = r["real_vs_real"], r["bad"]
    assert b["n_images"] == rr["n_images"] == 6 and b["family"] == "unet-wgangp"
    assert b["c2st"]["auc"] > 0.85 and b["c2st"]["auc"] > rr["c2st"]["auc"] + 0.2 and b["c2st"]["p_value"] < 0.05
    assert b["kid"]["kid"] > rr["kid"]["kid"] + 3 * rr["kid"]["std"]
    assert b["mask_fidelity"]["dice"] < rr["mask_fidelity"]["dice"] - 0.3
    assert b["colour_inside_cells"]["mean"][2] > rr["colour_inside_cells"]["mean"][2] + 40
    enc = r["_setup"]["encoder"]
    assert enc["source"] == "trained in this evaluation" and enc["provenance"]["stems"] == [f"r{i}" for i in range(8)]
    assert enc["provenance"]["split"] == "train"
    md = realism_markdown(r)
    assert "| real_vs_real |" in md and "| bad |" in md and "trained in this evaluation" in md and "[" in md

    # a configured encoder file is used as is -- unless it learned from a held-out image
    from rbcray.evaluate.encoder import EncoderConfig, RealEncoder

    ok = RealEncoder.train([disc_sample(i) for i in range(3)], EncoderConfig(width=8, crop=48, steps=2),
                           provenance={"dataset": "constructed", "stems": ["r0", "r1"]})
    ok.save(str(tmp_path / "ok.pt"))
    leaky = RealEncoder(ok.net, ok.cfg, {"dataset": "constructed", "stems": ["r0", "r9"]})
    leaky.save(str(tmp_path / "leaky.pt"))
    small = dict(FAST, n_boot=10, n_perm=10, kid_subsets=2, epochs=1)
    r2 = realism_report(sweep(small | {"encoder": str(tmp_path / "ok.pt")}), plan, bundle, sources, log=lambda m: None)
    assert r2["_setup"]["encoder"]["source"] == "file" and r2["_setup"]["encoder"]["path"].endswith("ok.pt")
    with pytest.raises(DataError, match=r"realism.encoder .*leaky.pt.*r9"):
        realism_report(sweep(small | {"encoder": str(tmp_path / "leaky.pt")}), plan, bundle, sources, log=lambda m: None)


def test_too_few_held_out_images_is_a_note() -> None:
    plan, bundle = _setup(n_held=3)
    r = realism_report(sweep(FAST), plan, bundle, {"bad": {"uri": "S", "family": None, "count": 12, "overlaps": []}})
    assert set(r) == {"_setup"} and "needs >= 4 held-out" in r["_setup"]["note"]
    assert "Not computed" in realism_markdown(r)


def test_demo_evaluate_compares_both_families(tmp_path) -> None:
    """The demo's sweep config names both families' samples in realism.compare, keyed by family."""
    from rbcray.data.demo_steps import splits_json
    from rbcray.demo import DemoContext
    from rbcray.evaluate.demo_step import demo_sweep

    ctx = DemoContext(out=tmp_path, log=lambda m: None)
    (tmp_path / "annotate" / "dataset").mkdir(parents=True)
    (tmp_path / "annotate" / "dataset" / "dataset.json").write_text("{}")
    splits_json(ctx).parent.mkdir(parents=True, exist_ok=True)
    splits_json(ctx).write_text("{}")
    for name, fam in (("shards", "pix2pixhd"), ("unet-shards", "unet-wgangp")):
        (tmp_path / "generate" / name).mkdir(parents=True)
        (tmp_path / "generate" / name / "_manifest.json").write_text(json.dumps({"family": fam}))
    cfg = demo_sweep(ctx, tmp_path / "tune")
    assert cfg.realism.dataset == "chula" and cfg.realism_dataset().synthetic == str(tmp_path / "generate" / "shards")
    assert cfg.realism.compare == {"pix2pixhd": str(tmp_path / "generate" / "shards"),
                                   "unet-wgangp": str(tmp_path / "generate" / "unet-shards")}
    # one downstream RD+SD row per family: the FCN and the detector again on the unet-wgangp shards
    fam = {m.label: m for m in cfg.models if m.dataset == "chula-unet-wgangp"}
    assert set(fam) == {"FCN-8s (unet-wgangp)", "Faster R-CNN (unet-wgangp)"}
    assert all(cfg.model_regimes(m) == ("RD+SD",) for m in fam.values())
    assert cfg.dataset("chula-unet-wgangp").synthetic == str(tmp_path / "generate" / "unet-shards")
    from rbcray.evaluate.family_rows import data_key

    assert data_key(cfg, "chula-unet-wgangp") == "chula"  # paired with the pix2pixHD rows
