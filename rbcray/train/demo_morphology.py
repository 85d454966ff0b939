"""Demo step ``morphology``: one rare red-cell class (target cells) at demo scale (issue 14).

On the train role of the demo's annotated Chula subset (derived instances carrying the Chula
point labels), exactly as a user would from the CLI:

1. ``rbcray morphology train``: the cell classifier, the pseudo-labeller (:data:`CLF_EPOCHS`);
2. ``rbcray morphology unit``: UNIT normal -> :data:`TARGET` for :data:`UNIT_MINUTES` of wall
   time, scored on val cells that neither model saw; it writes ``figure.png`` (real normal /
   translated / real target cells of val images), ``smear.png`` (a val smear before and after
   blending) and the acceptance table per threshold.

The generate step then turns :data:`SHARE` of each synthetic smear's RBCs into target cells with
these two folders and keeps only translations the classifier scores p(target) >= :data:`THRESHOLD`
(Gupta et al.'s t), so the demo's shards and COCO carry the class. At this budget UNIT makes
noisy blobs and the filter rejects most of them: the demo shows the machinery and the filter at
work, not useful target cells (docs/morphology.md has the measured figures).
"""

from __future__ import annotations

import json
from typing import Any

from rbcray.demo import DemoContext
from rbcray.errors import DataError

TARGET = "target"
SHARE = 0.1
THRESHOLD = 0.9
CLF_EPOCHS = 12
UNIT_MINUTES = 0.5
#: val cells of each group scored after UNIT training (bounded for time)
MAX_EVAL = 300


def morphology_dirs(ctx: DemoContext) -> dict[str, Any]:
    """Where the step leaves the classifier and the UNIT folder (read by the generate step)."""
    d = ctx.out / "morphology"
    return {"classifier": d / "classifier", "unit": d / f"unit-{TARGET}"}


def morphology_step(ctx: DemoContext) -> dict[str, Any]:
    from rbcray.cli import main as cli
    from rbcray.data.demo_steps import annotated_dir, splits_json

    data, splits = annotated_dir(ctx), splits_json(ctx)
    for p in (data / "dataset.json", splits):
        if not p.is_file():
            raise DataError(f"{p}: missing; run 'rbcray demo' from the start")
    ctx.stage_dir("morphology")
    dirs = morphology_dirs(ctx)
    common = ["--splits", str(splits), "--threads", "2"]
    if cli(["morphology", "train", str(data), "--split", "train", "--out", str(dirs["classifier"]),
            "--epochs", str(CLF_EPOCHS), *common]) != 0:
        raise DataError("the demo's morphology classifier did not train")
    if cli(["morphology", "unit", str(data), "--classifier", str(dirs["classifier"]), "--split", "train",
            "--target", TARGET, "--out", str(dirs["unit"]), "--minutes", str(UNIT_MINUTES),
            "--threshold", str(THRESHOLD), "--max-eval", str(MAX_EVAL), *common]) != 0:
        raise DataError(f"the demo's UNIT normal -> {TARGET} did not train")
    summary = json.loads((dirs["unit"] / "scores.json").read_text())
    at = next(r for r in summary["acceptance"] if abs(r["t"] - THRESHOLD) < 1e-9)
    return {
        "classifier": str(dirs["classifier"]),
        "unit": f"{dirs['unit']} ({summary['iterations']} iterations)",
        f"kept at t={THRESHOLD}": f"translated {at['translated']:.3f}, real normal {at['real_normal']:.3f}, "
                                   f"real {TARGET} {at['real_target']:.3f} (val cells)",
        "figure": str(dirs["unit"] / "figure.png"),
        "smear": str(dirs["unit"] / "smear.png"),
    }
