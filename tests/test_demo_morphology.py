"""The demo's morphology step feeds generate's --morphology options (and nothing without it)."""

from __future__ import annotations

from rbcray.config import from_dict
from rbcray.demo import STEPS, DemoContext
from rbcray.generate.config import GenerateConfig
from rbcray.generate.demo_step import demo_morphology
from rbcray.train.demo_morphology import SHARE, TARGET, THRESHOLD, morphology_dirs


def test_generate_uses_the_morphology_step_outputs(tmp_path) -> None:
    said: list[str] = []
    ctx = DemoContext(out=tmp_path, log=said.append)
    assert demo_morphology(ctx) == {} and "no rare cells" in said[0]
    dirs = morphology_dirs(ctx)
    dirs["classifier"].mkdir(parents=True)
    (dirs["classifier"] / "model.json").write_text("{}")
    assert demo_morphology(ctx) == {}  # the UNIT folder is missing too
    dirs["unit"].mkdir(parents=True)
    (dirs["unit"] / "unit.json").write_text("{}")
    opts = demo_morphology(ctx)
    assert opts == {"morphology": f"{TARGET}:{SHARE}", "morphology_model": str(dirs["unit"]),
                    "morphology_classifier": str(dirs["classifier"]), "morphology_threshold": THRESHOLD}
    cfg = from_dict(GenerateConfig, {"checkpoint": "c", "shapes": "s", "stats": "t", "out": "o", "num_samples": 1, **opts})
    assert cfg.morphology == f"{TARGET}:{SHARE}"
    names = [n for n, _ in STEPS]
    assert names.index("train") < names.index("morphology") < names.index("generate")
