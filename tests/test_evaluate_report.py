"""Reports from constructed trial results (no training): contrasts, learning curve, splits and
provenance in report.json, --allow-overlap said in table.md."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rbcray.evaluate.config import sweep_from_dict
from rbcray.evaluate.report import OutputWriter, summarise_all, write_reports
from rbcray.evaluate.train import TrialResult

SIZES = (2, 4, 8)


def cfg(**over):
    d = {
        "name": "constructed",
        "datasets": [{"name": "chula", "real": "unused", "synthetic": "unused"}],
        "models": [{"label": "FCN-8s", "model": "fcn8s", "dataset": "chula", "params": {"width": 4, "fc_channels": 16}}],
        "regimes": ["RD", "RD+aug", "RD+SD", "RD+SD+aug"],
        "n_real": 4, "total": 12, "rd_subsets": [0, 1, 2], "bootstrap": 200,
        "learning_curve": {"model": "FCN-8s", "sizes": list(SIZES)},
    }
    d.update(over)
    return sweep_from_dict(d)


def results(c, n_test: int = 30):
    """Dice per test image: RD at n real images scores 0.5 + 0.05 log2(n); synthetic data adds
    what doubling the real images adds; aug adds half of that; subsets shift everything a little."""
    rng = np.random.default_rng(0)
    hard = rng.normal(0, 0.05, n_test)
    out = []
    for t in c.trials():
        n = t["n_real"]
        base = 0.5 + 0.05 * np.log2(n)
        bonus = {"RD": 0.0, "RD+aug": 0.025, "RD+SD": 0.05, "RD+SD+aug": 0.05}[t["regime"]]
        vals = base + bonus + hard + 0.01 * (t["subset"] - 1) + rng.normal(0, 0.002, n_test)
        out.append(TrialResult(model=t["model"], regime=t["regime"], seed=t["seed"], metric="dice",
                               value=float(vals.mean()), records=[{"dice": float(v)} for v in vals],
                               test_names=[f"t{i}" for i in range(n_test)], subset=t["subset"], n_real=n))
    return out


def test_contrasts_and_worth_from_constructed_results():
    c = cfg()
    s = summarise_all(c, results(c))
    by = {(x.a, x.b): x for x in s.contrasts["FCN-8s"]}
    assert by[("RD+SD", "RD+aug")].diff == pytest.approx(0.025, abs=1e-3)
    assert by[("RD+SD", "RD+aug")].ci_low > 0 and by[("RD+SD+aug", "RD+aug")].ci_low > 0
    assert by[("RD+aug", "RD")].diff == pytest.approx(0.025, abs=1e-3)
    assert [r.n_subsets for r in s.rows] == [3] * 4
    # RD+SD at n does what RD does at 2n: worth n real images (the largest size is censored)
    assert [w.n_real for w in s.worth] == list(SIZES)
    for w in s.worth[:2]:
        assert w.worth == pytest.approx(w.n_real, rel=0.1) and w.ci_low <= w.n_real <= w.ci_high
    assert s.worth[2].censored == "above"


def test_reports_hold_splits_provenance_and_overlap_flag(tmp_path):
    c = cfg(allow_overlap=True)
    info = {"chula": {"splits": {"test": ["a"], "val": ["b"], "rd_subsets": {"0": ["c"]},
                                 "split_file": {"roles": {"train": ["c"], "val": ["b"], "test": ["a"]}}},
                      "provenance": {"real": "derived", "synthetic": {
                          "uri": "s", "inputs": {"generator": {"dataset": "chula", "stems": ["a"], "split": "all",
                                                               "n_images": 1}},
                          "unrecorded": [], "checked_against": "x", "allow_overlap": True,
                          "overlaps": ["generator was built from test image(s) a"]}}}}
    paths = write_reports(OutputWriter(str(tmp_path)), c, results(c), {"chula": "derived masks"}, plan_info=info)
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["allow_overlap"] is True and rep["splits"]["chula"]["test"] == ["a"]
    assert rep["provenance"]["chula"]["synthetic"]["overlaps"]
    assert {(x["a"], x["b"]) for x in rep["contrasts"]["FCN-8s"]} >= {("RD+SD", "RD+aug"), ("RD+SD+aug", "RD+aug")}
    assert len(rep["learning_curve"]["worth"]) == 3 and "curve.png" in paths
    md = (tmp_path / "table.md").read_text()
    assert md.count("--allow-overlap") >= 2 and "RD+SD − RD+aug" in md and "SD worth" in md
    assert "generator was built from test image(s) a" in md


def test_partial_keeps_complete_cells_only():
    from rbcray.distributed.sweep import complete_part

    c = cfg()
    res = [r for r in results(c) if not (r.regime == "RD+SD+aug" and r.subset == 2) and not (r.n_real == 8 and r.regime == "RD")]
    part, note = complete_part(c, res)
    assert part.model_regimes(part.models[0]) == ("RD", "RD+aug", "RD+SD")
    assert part.learning_curve is None and "RD+SD+aug" in note and "learning curve incomplete" in note
    s = summarise_all(part, res)
    assert [r.regime for r in s.rows] == ["RD", "RD+aug", "RD+SD"] and not s.worth


def test_downstream_rows_per_family_are_paired_and_reach_realism(tmp_path):
    """Two synthetic sources over the same real data: one row per family, the second one's
    difference to the first is paired (same draws) and lands in realism.md and report.json."""
    c = sweep_from_dict({
        "name": "families",
        "datasets": [{"name": "chula", "real": "same", "synthetic": "p2p-shards"},
                     {"name": "chula-unet", "real": "same", "synthetic": "unet-shards"},
                     {"name": "other", "real": "elsewhere", "synthetic": "p2p-shards"}],
        "models": [{"label": "FCN-8s", "model": "fcn8s", "dataset": "chula"},
                   {"label": "FCN-8s (unet)", "model": "fcn8s", "dataset": "chula-unet", "regimes": ["RD+SD"]},
                   {"label": "FCN-8s (other data)", "model": "fcn8s", "dataset": "other", "regimes": ["RD+SD"]}],
        "regimes": ["RD", "RD+aug", "RD+SD"], "n_real": 4, "total": 12, "bootstrap": 300,
    })
    rng = np.random.default_rng(1)
    hard = rng.normal(0, 0.1, 40)  # per-image difficulty, shared by every model: pairing removes it
    gain = {("FCN-8s", "RD"): 0.0, ("FCN-8s", "RD+aug"): 0.01, ("FCN-8s", "RD+SD"): 0.05,
            ("FCN-8s (unet)", "RD+SD"): 0.03, ("FCN-8s (other data)", "RD+SD"): 0.2}
    res = []
    for t in c.trials():
        vals = 0.6 + gain[(t["model"], t["regime"])] + hard + rng.normal(0, 0.002, 40)
        res.append(TrialResult(model=t["model"], regime=t["regime"], seed=t["seed"], metric="dice",
                               value=float(vals.mean()), records=[{"dice": float(v)} for v in vals],
                               test_names=[f"t{i}" for i in range(40)], subset=t["subset"], n_real=4))
    s = summarise_all(c, res)
    assert [r["label"] for r in s.families] == ["FCN-8s", "FCN-8s (unet)"]  # other data: not comparable
    unet = s.families[1]
    first = unet["vs"]["first family (FCN-8s)"]
    assert first["diff"] == pytest.approx(-0.02, abs=2e-3)
    # paired: the shared per-image difficulty (std 0.1 / sqrt(40) ~ .016) cancels out of the interval
    assert first["ci_high"] < 0 and first["ci_high"] - first["ci_low"] < 0.01
    assert unet["vs"]["RD"]["diff"] == pytest.approx(0.03, abs=2e-3) and unet["vs"]["RD"]["ci_low"] > 0
    assert unet["family"] == "chula-unet"  # no manifest to read a family name from
    realism = {"p2p": {"source": "p2p-shards"}, "unet-wgangp": {"source": "unet-shards"}, "_setup": {}}
    write_reports(OutputWriter(str(tmp_path)), c, res, {"chula": "derived"}, realism=realism, realism_md="## Image realism\n")
    rep = json.loads((tmp_path / "report.json").read_text())
    assert set(rep["realism"]["unet-wgangp"]["downstream"]) == {"FCN-8s (unet)"}
    assert len(rep["families"]) == 2
    md = (tmp_path / "realism.md").read_text()
    assert "Downstream, per generator family" in md and "| FCN-8s (unet) | Dice | chula-unet |" in md
    assert "Downstream, per generator family" in (tmp_path / "table.md").read_text()
